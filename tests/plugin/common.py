"""Shared set-up for the X-REPLICATE plugin tests: a private Dovecot (the
tests/fixture one) loading the plugin from $TWINBOX_PLUGIN_DIR (built against the
Dovecot version the fixture defaults to: $TWINBOX_DOVECOT_VERSION; a 2.4 run can also
find it in $TWINBOX_PLUGIN_DIR_24)."""
import itertools
import os
import unittest

from tests.fixture.dovecot import Dovecot, default_version, plugin_dir_for
from tests.plugin.xrclient import Client, Report

PLUGIN_ENV = "TWINBOX_PLUGIN_DIR"
IMAP_PLUGIN = "lib95_imap_xreplicate_plugin.so"
MAIL_PLUGIN = "lib90_xreplicate_plugin.so"

_users = itertools.count(1)
# Users exist from the start: Dovecot's passwd-file reload after add_user() is
# keyed on mtime and can miss a rewrite within the same second.
USERS_PER_CLASS = 40


def plugin_dir(version=None):
    """The plugin built against `version` (default: the fixture's default version)."""
    d = plugin_dir_for(version or default_version())
    if not d:
        raise unittest.SkipTest("%s not set (path of the built plugin)" % PLUGIN_ENV)
    if not os.path.exists(os.path.join(d, IMAP_PLUGIN)):
        raise unittest.SkipTest("%s not found in %s" % (IMAP_PLUGIN, d))
    return d


def make_maildir_folders(dovecot, user, names):
    """Creates Maildir++ folders straight on disk, fast (2,000 in well under a
    second). Only before the user's first login: Dovecot then builds its mailbox
    list index from the directories; later ones it would not notice."""
    md = dovecot.mail_dir(user)
    for sub in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(md, sub), exist_ok=True)
    for name in names:
        for sub in ("cur", "new", "tmp"):
            os.makedirs(os.path.join(md, "." + name, sub))
    if dovecot.privileged:
        for root, dirs, files in os.walk(dovecot.home(user)):
            os.lchown(root, dovecot.uid, dovecot.gid)
            for n in files:
                os.lchown(os.path.join(root, n), dovecot.uid, dovecot.gid)


def message(subject, body="hello"):
    return ("From: a@example.org\r\nTo: b@example.org\r\nSubject: %s\r\n"
            "Message-ID: <%s@example.org>\r\n\r\n%s\r\n" % (subject, subject, body)).encode()


class PluginTestCase(unittest.TestCase):
    """One Dovecot per test class; every test gets a fresh user."""
    extra_conf = ""
    plugin_settings = {}

    @classmethod
    def setUpClass(cls):
        pdir = plugin_dir()
        mail_plugins = []
        if os.path.exists(os.path.join(pdir, MAIL_PLUGIN)):
            mail_plugins = ["notify", "xreplicate"]
        cls.free_users = ["u%d" % next(_users) for _ in range(USERS_PER_CLASS)]
        cls.dovecot = Dovecot(users={u: "pw" for u in cls.free_users},
                              plugin_dir=pdir, extra_mail_plugins=mail_plugins,
                              extra_imap_plugins=["imap_xreplicate"],
                              extra_conf=cls.extra_conf, compress=False,
                              plugin_settings=cls.plugin_settings)
        cls.dovecot.start()

    @classmethod
    def tearDownClass(cls):
        cls.dovecot.stop()

    def setUp(self):
        self.user = self.free_users.pop(0)
        self.clients = []
        self.c = self.connect()

    def tearDown(self):
        for c in self.clients:
            c.close()
        with open(self.dovecot.log_file, errors="replace") as f:
            mine = [l for l in f if "(%s)" % self.user in l]
        errors = [l for l in mine if "Panic" in l or "Fatal" in l or
                  ("xreplicate" in l and "Error" in l)]
        self.assertEqual(errors, [], "errors in the Dovecot log")

    def connect(self):
        c = Client.connect(self.dovecot.imap_port, self.user, "pw")
        self.clients.append(c)
        return c

    def ok(self, line, c=None, literal=None):
        status, text, untagged = (c or self.c).command(line, literal=literal)
        self.assertEqual(status, "OK", "%s -> %s %s" % (line, status, text))
        return untagged

    def position(self, c=None):
        rep = Report(self.ok("XREPLICATE POSITION", c))
        self.assertIsNotNone(rep.position)
        return rep

    def changes(self, token, c=None):
        rep = Report(self.ok("XREPLICATE CHANGES " + token, c))
        self.assertIsNotNone(rep.position)
        return rep

    def append(self, box, subject, flags="", c=None):
        untagged = self.ok("APPEND %s (%s)" % (box, flags), c, literal=message(subject))
        return untagged

    def doveadm(self, *args, input=None):
        p = self.dovecot.doveadm(*args, input=input)
        self.assertEqual(p.returncode, 0, "doveadm %s: %s" % (args, p.stderr))
        return p

    def guid(self, rep, name):
        st = rep.status(name)
        self.assertIsNotNone(st, "no STATUS for %s" % name)
        return st["guid"]
