"""The fixtures of servers other than Dovecot: GNU mailutils imap4d (mbox and maildir),
hoodiecrow, and the Gmail-like and Microsoft-365-like relays in front of a fixture
Dovecot. Each one: its namespace and separator, a mailbox created, a message appended
with \\Flagged (and a keyword where PERMANENTFLAGS allows one) and fetched back, and
`twinbox probe` through the config section the fixture writes. The relays must refuse
what they no longer advertise.

Install the servers first (as root): `. tests/deps.sh; . tests/servers/imap4d.sh;
. tests/servers/hoodiecrow.sh; tb_ensure_imap4d && tb_ensure_hoodiecrow`; a server that
is not installed skips its tests.
"""
import os
import re
import tempfile
import unittest

from tests.fixture.dovecot import Dovecot
from tests.fixture.hoodiecrow import Hoodiecrow
from tests.fixture.imap4d import Imap4d
from tests.fixture.mimic import gmail_like, m365_like
from tests.integration.common import TestCase, twinbox

MSG = (b"From: Bob <bob@example.test>\r\nTo: Alice <alice@example.test>\r\n"
       b"Subject: fixture check\r\nMessage-ID: <fixture-check@example.test>\r\n"
       b"Date: Mon, 02 Mar 2026 10:00:00 +0000\r\n\r\nHello from the fixture test.\r\n")


def raw(c, command, literal=None):
    """Sends one command (bytes after the tag; literal: its data, sent right after the
    line, so the line should end in a non-synchronizing {n+} marker) through an imaplib
    client; returns (untagged lines, tagged line) as bytes."""
    tag = c._new_tag()
    c.send(tag + b" " + command + b"\r\n"
           + (literal + b"\r\n" if literal is not None else b""))
    untagged = []
    while True:
        line = c._get_line()
        if line.startswith(tag + b" "):
            return untagged, line
        untagged.append(line)


def status_word(tagged):
    return tagged.split(b" ", 2)[1].upper()


class _ServerChecks:
    """Checks every fixture passes; subclasses set make() and what they expect."""
    prefix = ""
    separator = "/"
    flags_kept_on_append = True   # imap4d maildir drops APPEND's flags
    keywords = True               # PERMANENTFLAGS has \*
    name = None

    @classmethod
    def make(cls):
        raise NotImplementedError

    @classmethod
    def setUpClass(cls):
        try:
            cls.srv = cls.make()
        except RuntimeError as e:
            if "not installed" in str(e):
                raise unittest.SkipTest(str(e))
            raise

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    def client(self):
        c = self.srv.client()
        self.addCleanup(self._logout, c)
        return c

    @staticmethod
    def _logout(c):
        try:
            c.logout()
        except Exception:
            pass

    def test_interface(self):
        s = self.srv
        self.assertEqual(s.name, self.name)
        self.assertEqual(s.host, "127.0.0.1")
        self.assertEqual((s.prefix, s.separator), (self.prefix, self.separator))
        self.assertEqual(s.users, {"alice": "secret"})
        self.assertEqual(s.password("alice"), "secret")
        self.assertEqual(s.mailbox("INBOX"), "INBOX")
        self.assertEqual(s.mailbox("Work/Sub"), self.prefix + "Work" + self.separator + "Sub")
        cfg = s.account_config("x")
        self.assertTrue(cfg.startswith("[account x]\ntype = imap\nhost = 127.0.0.1\n"
                                       "port = %d\nuser = %s\npassword = secret\n"
                                       "starttls = no\n" % (s.port, s.login("alice"))), cfg)
        self.assertTrue(cfg.endswith("\n\n"), cfg)
        self.assertIsInstance(s.log_tail(), str)

    def test_namespace(self):
        c = self.client()
        typ, data = c.namespace()
        self.assertEqual(typ, "OK", data)
        want = '(("%s" "%s"))' % (self.prefix, self.separator)
        self.assertTrue(data[0].decode().startswith(want), data)

    def test_fresh_inbox_exists(self):
        c = self.client()
        typ, data = c.status("INBOX", "(MESSAGES UIDNEXT UIDVALIDITY)")
        self.assertEqual(typ, "OK", data)
        self.assertRegex(data[0].decode(), r"MESSAGES \d+ UIDNEXT \d+ UIDVALIDITY \d+")
        typ, data = c.list()
        self.assertEqual(typ, "OK", data)
        self.assertTrue(any(re.search(rb'"?INBOX"?$', l or b"") for l in data), data)

    def test_create_append_fetch(self):
        c = self.client()
        box = self.srv.mailbox("Work")
        typ, data = c.create(box)
        self.assertEqual(typ, "OK", data)
        typ, data = c.list('""', box)
        self.assertEqual(typ, "OK", data)
        self.assertTrue(any(l and l.rstrip(b'"').endswith(box.encode()) for l in data), data)
        typ, data = c.select(box)
        self.assertEqual(typ, "OK", data)
        perm = c.untagged_responses.get("PERMANENTFLAGS", [b""])[-1]
        self.assertEqual(b"\\*" in perm, self.keywords, perm)
        flags = "(\\Flagged $Fixture)" if self.keywords else "(\\Flagged)"
        # Not into the selected mailbox: imap4d's mbox session that SELECTed it empty
        # would see only the first message appended and lose the flags.
        self.assertEqual(c.select("INBOX")[0], "OK")
        if not self.keywords:
            # A server without keywords refuses one in APPEND (imap4d: BAD).
            with self.assertRaises(c.error):
                c.append(box, "(\\Flagged $Fixture)", None, MSG)
        typ, data = c.append(box, flags, None, MSG)
        self.assertEqual(typ, "OK", data)
        self.assertEqual(c.select(box)[0], "OK")
        typ, data = c.fetch("1:*", "(UID FLAGS BODY.PEEK[])")
        self.assertEqual(typ, "OK", data)
        got = [d for d in data if isinstance(d, tuple)]
        self.assertEqual(len(got), 1, data)
        meta, body = got[0]
        self.assertRegex(meta, rb"\bUID \d+\b")
        self.assertIn(b"Message-ID: <fixture-check@example.test>", body)
        self.assertIn(b"Hello from the fixture test.", body)
        if self.flags_kept_on_append:
            self.assertIn(b"\\Flagged", meta)
        else:
            self.assertNotIn(b"\\Flagged", meta)
            typ, data = c.store("1", "+FLAGS", "(\\Flagged)")
            self.assertEqual(typ, "OK", data)
            typ, data = c.fetch("1", "(FLAGS)")
            meta = data[0]
            self.assertIn(b"\\Flagged", meta)
        if self.keywords:
            self.assertIn(b"$Fixture", meta)

    def test_probe(self):
        with tempfile.TemporaryDirectory() as d:
            cfg = os.path.join(d, "config")
            with open(cfg, "w") as f:
                f.write(self.srv.account_config("a"))
            os.chmod(cfg, 0o600)
            r = twinbox("-c", cfg, "probe", "a", env={"TWINBOX_PASSWORD": ""})
        self.assertEqual(r.code, 0, "%r\n%s" % (r, self.srv.log_tail()))
        self.assertIn('namespace: "%s" separator "%s"' % (self.prefix, self.separator), r.out)
        self.assertIn("compress: no", r.out)
        self.assertRegex(r.out, r"\n  INBOX ")


class Imap4dMboxTest(_ServerChecks, TestCase):
    name = "imap4d-mbox"
    keywords = False

    @classmethod
    def make(cls):
        return Imap4d(mail_format="mbox").start()

    def test_login_name_and_quirks(self):
        self.assertEqual(self.srv.login("alice"), "alice@twinbox.test")
        c = self.client()
        caps = set(c.capabilities)
        self.assertIn("IMAP4REV1", caps)
        for absent in ("UIDPLUS", "CONDSTORE", "QRESYNC", "ENABLE", "LIST-STATUS"):
            self.assertNotIn(absent, caps)
        # mbox: a mailbox is a file, so nothing nests under one.
        box = self.srv.mailbox("Flat")
        self.assertEqual(c.create(box)[0], "OK")
        self.assertEqual(c.create(self.srv.mailbox("Flat/Sub"))[0], "NO")


class Imap4dMaildirTest(_ServerChecks, TestCase):
    name = "imap4d-maildir"
    keywords = False
    flags_kept_on_append = False

    @classmethod
    def make(cls):
        return Imap4d(mail_format="maildir").start()

    def test_nested_mailboxes(self):
        c = self.client()
        self.assertEqual(c.create(self.srv.mailbox("Deep"))[0], "OK")
        self.assertEqual(c.create(self.srv.mailbox("Deep/Sub"))[0], "OK")
        typ, data = c.list('""', "Deep/*")
        self.assertTrue(any(l.endswith(b"Deep/Sub") for l in data), data)


class HoodiecrowTest(_ServerChecks, TestCase):
    name = "hoodiecrow"

    @classmethod
    def make(cls):
        return Hoodiecrow().start()

    def test_capabilities_and_condstore(self):
        c = self.client()
        typ, data = c.capability()
        caps = set(data[0].decode().upper().split())
        for want in ("IMAP4REV1", "ENABLE", "CONDSTORE", "IDLE", "NAMESPACE", "UIDPLUS",
                     "MOVE", "LITERAL+", "SPECIAL-USE", "ID", "UNSELECT"):
            self.assertIn(want, caps)
        for absent in ("QRESYNC", "LIST-STATUS", "LIST-EXTENDED", "COMPRESS=DEFLATE"):
            self.assertNotIn(absent, caps)
        untagged, tagged = raw(c, b"ENABLE CONDSTORE")
        self.assertEqual(status_word(tagged), b"OK", tagged)
        box = self.srv.mailbox("Never")
        self.assertEqual(c.create(box)[0], "OK")
        untagged, tagged = raw(c, b"STATUS %s (UIDNEXT HIGHESTMODSEQ)" % box.encode())
        self.assertEqual(status_word(tagged), b"OK", tagged)
        self.assertIn(b"HIGHESTMODSEQ NIL", b"".join(untagged))


class _RelayChecks(_ServerChecks):
    present = ()
    absent = ()
    relay = None

    @classmethod
    def make(cls):
        cls.dv = Dovecot(separator="/").start()
        try:
            return cls.relay(cls.dv)
        except Exception:
            cls.dv.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            cls.srv.stop()
        finally:
            cls.dv.stop()

    def caps_after_login(self, c):
        typ, data = c.capability()
        return set(data[0].decode().upper().split())

    def test_capabilities(self):
        c = self.client()
        before, after = set(c.capabilities), self.caps_after_login(c)
        for want in self.present:
            self.assertIn(want, after)
        for gone in self.absent:
            self.assertNotIn(gone, before)
            self.assertNotIn(gone, after)

    def assertRefused(self, c, command, literal=None):
        untagged, tagged = raw(c, command, literal)
        self.assertEqual(status_word(tagged), b"BAD", (command, untagged, tagged))
        return untagged

    def test_common_refusals(self):
        c = self.client()
        self.assertRefused(c, b"COMPRESS DEFLATE")
        self.assertRefused(c, b'LIST "" "*" RETURN (STATUS (MESSAGES))')
        self.assertRefused(c, b'LIST (SUBSCRIBED) "" "*"')
        self.assertRefused(c, b'LIST "" ("INBOX" "Work")')
        untagged, tagged = raw(c, b'LIST "" "*"')
        self.assertEqual(status_word(tagged), b"OK", tagged)
        self.assertEqual(c.select("INBOX")[0], "OK")
        self.assertRefused(c, b"UID SEARCH RETURN (COUNT) ALL")
        self.assertRefused(c, b"UID SORT (DATE) UTF-8 ALL")
        self.assertRefused(c, b"UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED)")
        untagged, tagged = raw(c, b"UID EXPUNGE 1:*")   # UIDPLUS is kept
        self.assertEqual(status_word(tagged), b"OK", tagged)


class GmailLikeTest(_RelayChecks, TestCase):
    name = "gmail-like"
    relay = staticmethod(gmail_like)
    present = ("IMAP4REV1", "CONDSTORE", "ENABLE", "UIDPLUS", "MOVE", "SPECIAL-USE", "ID",
               "IDLE", "NAMESPACE", "UNSELECT", "LITERAL-", "APPENDLIMIT=35651584")
    absent = ("QRESYNC", "LIST-STATUS", "LIST-EXTENDED", "LITERAL+", "COMPRESS=DEFLATE",
              "ESEARCH", "STARTTLS", "NOTIFY", "SORT")

    def test_enable_qresync_not_enabled(self):
        c = self.client()
        untagged, tagged = raw(c, b"ENABLE QRESYNC")
        self.assertEqual(status_word(tagged), b"OK", tagged)
        self.assertEqual([l for l in untagged if l.upper().startswith(b"* ENABLED")],
                         [b"* ENABLED"])
        untagged, tagged = raw(c, b"ENABLE CONDSTORE")
        self.assertIn(b"* ENABLED CONDSTORE", untagged)
        untagged, tagged = raw(c, b"SELECT INBOX")
        self.assertTrue(any(b"[HIGHESTMODSEQ " in l for l in untagged), untagged)
        self.assertRefused(c, b"SELECT INBOX (QRESYNC (1 1))")
        untagged, tagged = raw(c, b"SELECT INBOX (CONDSTORE)")
        self.assertEqual(status_word(tagged), b"OK", tagged)
        self.assertFalse(any(b"[CLOSED]" in l for l in untagged), untagged)
        untagged, tagged = raw(c, b"UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1)")
        self.assertEqual(status_word(tagged), b"OK", tagged)

    def test_literal_minus(self):
        c = self.client()
        box = self.srv.mailbox("Lit").encode()
        self.assertEqual(c.create(box.decode())[0], "OK")
        small = MSG
        untagged, tagged = raw(c, b"APPEND %s {%d+}" % (box, len(small)), small)
        self.assertEqual(status_word(tagged), b"OK", tagged)
        big = MSG + b"x" * 5000 + b"\r\n"
        self.assertRefused(c, b"APPEND %s {%d+}" % (box, len(big)), big)
        typ, data = c.status(box.decode(), "(MESSAGES)")
        self.assertIn(b"MESSAGES 1", data[0])


class M365LikeTest(_RelayChecks, TestCase):
    name = "m365-like"
    relay = staticmethod(m365_like)
    present = ("IMAP4REV1", "LITERAL+", "UIDPLUS", "MOVE", "IDLE", "NAMESPACE", "ID",
               "UNSELECT", "CHILDREN", "SPECIAL-USE")
    absent = ("CONDSTORE", "QRESYNC", "ENABLE", "COMPRESS=DEFLATE", "LIST-STATUS",
              "LIST-EXTENDED", "ESEARCH", "STARTTLS", "NOTIFY")

    def test_no_condstore(self):
        c = self.client()
        self.assertRefused(c, b"ENABLE CONDSTORE")
        self.assertRefused(c, b"ENABLE QRESYNC")
        self.assertRefused(c, b"SELECT INBOX (CONDSTORE)")
        self.assertRefused(c, b"STATUS INBOX (UIDNEXT HIGHESTMODSEQ)")
        box = self.srv.mailbox("Plain").encode()
        self.assertEqual(c.create(box.decode())[0], "OK")
        untagged, tagged = raw(c, b"APPEND %s (\\Seen) {%d+}" % (box, len(MSG)), MSG)
        self.assertEqual(status_word(tagged), b"OK", tagged)   # LITERAL+ is kept
        untagged, tagged = raw(c, b"SELECT %s" % box)
        self.assertEqual(status_word(tagged), b"OK", tagged)
        self.assertFalse(any(b"MODSEQ" in l for l in untagged), untagged)
        self.assertRefused(c, b"UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1)")
        self.assertRefused(c, b"UID FETCH 1:* (FLAGS MODSEQ)")
        self.assertRefused(c, b"UID STORE 1 (UNCHANGEDSINCE 1) +FLAGS (\\Flagged)")
        self.assertRefused(c, b"UID SEARCH MODSEQ 1")
        untagged, tagged = raw(c, b"UID STORE 1:* +FLAGS (\\Flagged)")
        self.assertEqual(status_word(tagged), b"OK", tagged)
        self.assertTrue(untagged and not any(b"MODSEQ" in l for l in untagged), untagged)


if __name__ == "__main__":
    unittest.main()
