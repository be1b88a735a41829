"""Acceptance for twinbox's use of X-REPLICATE (man twinbox-xreplicate.7) against two real
Dovecot instances loading the plugin from $TWINBOX_PLUGIN_DIR; every result is checked
with the independent imaplib client (tests/fixture/imapcheck.py).

What twinbox is meant to do: on an account whose server advertises X-REPLICATE and whose
config does not say `xreplicate = no`, discovery is one XREPLICATE CHANGES (POSITION on a
first run) instead of LIST-STATUS, and only mailboxes whose numbers moved are SELECTed.
A position the server cannot serve (RESYNC, [XREPLICATE-BADTOKEN], capability gone)
gives one warning line with "X-REPLICATE" and "falling back", and a correct result.

Every test skips when $TWINBOX_PLUGIN_DIR is unset or holds no built plugin.
"""
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
import unittest

from tests.fixture import imapcheck as ic
from tests.fixture.dovecot import Dovecot, stop_all
from tests.fixture.dovecot import available as dovecot_available
from tests.fixture.relay import Relay
from tests.integration import test_sync as ts
from tests.plugin.common import MAIL_PLUGIN, message, plugin_dir
from tests.plugin.xrclient import Client, Report, uidset

FALLBACK_RE = re.compile(r"X-REPLICATE.*falling back|falling back.*X-REPLICATE")

# Forces Dovecot to rotate a mailbox's transaction log on (almost) every write, so that
# history older than the last couple of commits is gone (see test_watch_fuzz.TestExpired).
ROTATE_ALWAYS = """
mail_index_log_rotate_min_size = 1
mail_index_log_rotate_max_size = 1
mail_index_log_rotate_min_age = 0
mail_index_log2_max_age = 0
"""


def make_dovecot(with_plugin, version=None, **kw):
    """A fixture Dovecot with the X-REPLICATE plugin loaded, or certainly without it
    (TWINBOX_FIXTURE_XREPLICATE=1 would otherwise load it into every instance); version
    None is the fixture's default."""
    if with_plugin:
        pdir = plugin_dir(version)
        mail_plugins = ["notify", "xreplicate"] \
            if os.path.exists(os.path.join(pdir, MAIL_PLUGIN)) else []
        return Dovecot(plugin_dir=pdir, extra_mail_plugins=mail_plugins,
                       extra_imap_plugins=["imap_xreplicate"], version=version, **kw)
    saved = os.environ.pop("TWINBOX_FIXTURE_XREPLICATE", None)
    try:
        return Dovecot(version=version, **kw)
    finally:
        if saved is not None:
            os.environ["TWINBOX_FIXTURE_XREPLICATE"] = saved


def advertises_xreplicate(dv, user="alice"):
    c = dv.client(user)
    try:
        typ, data = c.capability()  # after login: plugins add theirs there only
        return typ == "OK" and b"X-REPLICATE" in (data[0] or b"").upper().split()
    finally:
        c.logout()


# ---- reading the client->server byte stream --------------------------------------------

_LIT_RE = re.compile(rb"\{(\d+)\+?\}$")


class Command:
    """One client command as sent: tag, NAME (UID commands as 'UID FETCH'), and its
    first argument decoded (quoted string, atom or literal)."""

    def __init__(self, first_line, literals):
        self.line = first_line
        words = first_line.split(b" ", 3)
        self.tag = words[0].decode(errors="replace")
        name = words[1].upper().decode(errors="replace") if len(words) > 1 else ""
        rest = b" ".join(words[2:])
        if name == "UID" and len(words) > 2:
            name = "UID " + words[2].upper().decode(errors="replace")
            rest = b" ".join(words[3:])
        self.name = name
        self.arg = self._first_arg(rest, literals)

    @staticmethod
    def _first_arg(rest, literals):
        if rest.startswith(b'"'):
            out, i = bytearray(), 1
            while i < len(rest) and rest[i:i + 1] != b'"':
                if rest[i:i + 1] == b"\\":
                    i += 1
                out += rest[i:i + 1]
                i += 1
            return out.decode(errors="replace")
        if _LIT_RE.match(rest.split(b" ", 1)[0]) and literals:
            return literals[0].decode(errors="replace")
        return rest.split(b" ", 1)[0].decode(errors="replace")

    def __repr__(self):
        return "%s %s %s" % (self.tag, self.name, self.arg)


def client_commands(stream):
    """The commands in one connection's client->server bytes: lines joined across
    literals ({n} and {n+}), literal contents skipped (APPENDed messages never look
    like commands). Continuation lines (DONE, SASL) come out as commands too."""
    out = []
    pos = 0
    while pos < len(stream):
        eol = stream.find(b"\r\n", pos)
        if eol < 0:
            break
        first = stream[pos:eol]
        pos = eol + 2
        literals = []
        line = first
        while True:
            m = _LIT_RE.search(line)
            if not m:
                break
            n = int(m.group(1))
            literals.append(stream[pos:pos + n])
            pos += n
            eol = stream.find(b"\r\n", pos)
            if eol < 0:
                pos = len(stream)
                break
            line = stream[pos:eol]
            pos = eol + 2
        out.append(Command(first, literals))
    return out


def relay_commands(relay):
    return [c for stream in relay.captured("c2s") for c in client_commands(stream)]


def count(cmds, *names):
    return sum(1 for c in cmds if c.name in names)


def selected(cmds):
    return [c.arg for c in cmds if c.name in ("SELECT", "EXAMINE")]


# ---- set-up shared by the twinbox tests ----------------------------------------------

class XrBase(ts.SyncBase):
    """Two Dovecots (a: '.' separator, b: '/'), with the plugin where PLUGIN says, and
    twinbox accounts with `xreplicate = no` where XREPLICATE says no. VERSION chooses
    each side's Dovecot ("2.3", "2.4"; None: the fixture's default), PLUGIN_SETTINGS
    the plugin's settings."""
    PLUGIN = {"a": True, "b": True}
    XREPLICATE = {"a": True, "b": True}
    EXTRA_CONF = {"a": "", "b": ""}
    PLUGIN_SETTINGS = {"a": {}, "b": {}}
    VERSION = {"a": None, "b": None}
    USERS = {"alice": "secret"}

    def setUp(self):
        for side in "ab":
            v = self.VERSION[side]
            if v is not None and not dovecot_available(v):
                self.skipTest("Dovecot %s is not installed" % v)
            plugin_dir(v)  # skips without a built plugin, whatever the variant
        self.xrep = dict(self.XREPLICATE)
        # Cleanups run last-in first-out, also when setUp fails half-way: relays, then
        # both Dovecots (by the fixture, by pid), then the temp dir.
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)
        self.a = make_dovecot(self.PLUGIN["a"], users=dict(self.USERS),
                              extra_conf=self.EXTRA_CONF["a"], version=self.VERSION["a"],
                              plugin_settings=self.PLUGIN_SETTINGS["a"])
        self.b = make_dovecot(self.PLUGIN["b"], users=dict(self.USERS), separator=self.sep_b,
                              extra_conf=self.EXTRA_CONF["b"], version=self.VERSION["b"],
                              plugin_settings=self.PLUGIN_SETTINGS["b"])
        self.addCleanup(stop_all, self.a, self.b)
        self.a.start()
        self.b.start()
        self.cfg = os.path.join(self.tmp.name, "config")
        self.state = os.path.join(self.tmp.name, "p.db")
        self.write_config()

    def tearDown(self):
        pass  # see the cleanups registered in setUp and relay()

    def write_config(self, a_port=None, b_port=None, compress="yes"):
        super().write_config(a_port, b_port, compress)
        with open(self.cfg) as f:
            text = f.read()
        for side in ("a", "b"):
            if not self.xrep[side]:
                head = "[account %s]\n" % side
                text = text.replace(head, head + "xreplicate = no\n", 1)
        with open(self.cfg, "w") as f:
            f.write(text)

    def relay(self, dv, **kw):
        r = Relay(dv.imap_port, **kw)
        self.addCleanup(r.stop)
        return r

    def xrep_meta(self):
        """The state's meta rows whose key starts with 'xrep' (the stored positions)."""
        if not os.path.exists(self.state):
            return {}
        db = sqlite3.connect(self.state)
        try:
            return dict(db.execute("SELECT key, value FROM meta WHERE key LIKE 'xrep%'"))
        except sqlite3.OperationalError:
            return {}
        finally:
            db.close()

    def token_key(self, side):
        """The meta key of side's stored position ('xrep.token.a' today), or None."""
        keys = list(self.xrep_meta())
        mine = [k for k in keys if k.endswith("." + side)] or \
            [k for k in keys if k.endswith(side)]
        return mine[0] if len(mine) == 1 else None

    def set_meta(self, key, value):
        db = sqlite3.connect(self.state)
        try:
            with db:
                db.execute("UPDATE meta SET value=? WHERE key=?", (value, key))
        finally:
            db.close()

    def fallback_lines(self, r):
        return [l for l in r.err.splitlines() if FALLBACK_RE.search(l)]

    def ids_flags(self, dv, box):
        return {m["message_id"]: set(m["flags"]) for m in self.fetch(dv, box)}

    def fetch(self, dv, box):
        c = dv.client("alice")
        try:
            return ic.fetch_all(c, box)
        finally:
            c.logout()

    def uid_of(self, dv, box, msgid):
        for m in self.fetch(dv, box):
            if m["message_id"] == msgid:
                return m["uid"]
        self.fail("%s not in %s" % (msgid, box))

    def assertNoDuplicates(self, snap, what=""):
        for name, rows in snap.items():
            ids = [r[0] for r in rows]
            self.assertEqual(len(ids), len(set(ids)), "%sduplicate in %s" % (what, name))


# ---- 1. randomized, three variants ---------------------------------------------------

class _RandomXr(XrBase, ts.RandomizedTest):
    """test_sync's randomized rounds (same operations, same seed), fewer rounds; after
    them, a check that X-REPLICATE was used exactly where it should be."""
    ROUNDS = 12

    def sync(self, *args, code=0):
        r = super().sync(*args, code=code)
        self.runs.append(r)
        return r

    def test_random_two_sided_changes(self):
        self.runs = []
        for side, dv in (("a", self.a), ("b", self.b)):
            self.assertEqual(advertises_xreplicate(dv), self.PLUGIN[side],
                             "capability X-REPLICATE on %s" % side)
        super().test_random_two_sided_changes()
        self.assertNoDuplicates(self.assertSame())
        # Nothing in these rounds makes a position unusable: no run may fall back, and
        # where twinbox reports which sides used X-REPLICATE, it is the expected ones.
        for i, r in enumerate(self.runs):
            self.assertEqual(self.fallback_lines(r), [], "run %d fell back: %r" % (i, r))
            m = re.search(r"X-REPLICATE a (yes|no) b (yes|no)", r.out)
            if m and i > 0:
                self.assertEqual(m.groups(), tuple(
                    "yes" if self.PLUGIN[k] and self.xrep[k] else "no" for k in "ab"),
                    "run %d: %s" % (i, r.out))
        meta = self.xrep_meta()
        for side in ("a", "b"):
            used = self.PLUGIN[side] and self.xrep[side]
            keys = [k for k in meta if k.endswith(side)]
            if used:
                self.assertTrue(keys, "no X-REPLICATE position stored for %s: %r"
                                % (side, meta))
            else:
                self.assertFalse(keys, "an X-REPLICATE position stored for %s: %r"
                                 % (side, meta))


class RandomXrBothTest(_RandomXr):
    PLUGIN = {"a": True, "b": True}


class RandomXrOneSideTest(_RandomXr):
    PLUGIN = {"a": True, "b": False}


class RandomXrDisabledTest(_RandomXr):
    PLUGIN = {"a": True, "b": True}
    XREPLICATE = {"a": False, "b": False}


del _RandomXr  # not a test of its own


# ---- 2. a hundred mailboxes, three changed -------------------------------------------

class ChangedMailboxesTest(XrBase):
    N_BOXES = 100

    def change_three(self, boxes, seed):
        """On a: an append in boxes[0], a flag change in boxes[1], an expunge in
        boxes[2]; returns what b must show afterwards."""
        new = ic.load_messages(self.a, "alice", boxes[0], 1, size=800, seed=seed, start=50)[0]
        msgs = self.fetch(self.a, boxes[1])
        flagged = msgs[0]["message_id"]
        self.store(self.a, boxes[1], flagged, "+FLAGS", "\\Flagged")
        gone = self.fetch(self.a, boxes[2])[1]["message_id"]
        self.expunge(self.a, boxes[2], gone)
        return new, flagged, gone

    def check_three(self, boxes, new, flagged, gone):
        self.assertIn(new, self.ids_flags(self.b, boxes[0]))
        self.assertIn("\\Flagged", self.ids_flags(self.b, boxes[1])[flagged])
        self.assertNotIn(gone, self.ids_flags(self.b, boxes[2]))

    def measured_sync(self, relays):
        for r in relays:
            r.reset_counters()
            r.clear_captured()
        res = self.sync()
        for r in relays:
            self.assertTrue(r.wait_idle(), "a connection stayed open")
            self.assertIsNone(r.error)
        self.summaries.append(res.out.strip())
        out = []
        for r in relays:
            cmds = relay_commands(r)
            st = r.stats()
            out.append({"turns": st["turns"], "c2s": st["bytes_c2s"], "s2c": st["bytes_s2c"],
                        "cmds": cmds, "xrep": count(cmds, "XREPLICATE"),
                        "list": count(cmds, "LIST", "LSUB"), "status": count(cmds, "STATUS"),
                        "select": selected(cmds)})
        return res, out

    def test_three_of_hundred_mailboxes(self):
        names = ["Box%03d" % i for i in range(self.N_BOXES)]
        c = self.a.client("alice")
        try:
            for i, n in enumerate(names):
                ic.load_messages(self.a, "alice", n, 3, size=800, seed=i, client=c)
        finally:
            c.logout()
        ra, rb = self.relay(self.a, capture="c2s"), self.relay(self.b, capture="c2s")
        relays = (ra, rb)
        table = {}
        results = {}
        self.summaries = []
        # Without X-REPLICATE first (the comparison), then with it on the same accounts.
        for mode, boxes in (("no", names[10:40:10]), ("yes", names[40:70:10])):
            self.xrep = {"a": mode == "yes", "b": mode == "yes"}
            self.write_config(ra.port, rb.port, compress="no")
            self.sync()  # "yes": the first run takes the positions (XREPLICATE POSITION)
            _, noop = self.measured_sync(relays)
            expect = self.change_three(boxes, seed=len(table))
            r, changed = self.measured_sync(relays)
            snap = self.assertSame()
            self.assertNoDuplicates(snap)
            self.check_three(boxes, *expect)
            table[mode] = (noop, changed)
            results[mode] = (boxes, r)

        lines = ["", "X-REPLICATE: %d mailboxes x 3 messages, changes in 3 on side a; "
                 "per server: turns, bytes client->server + server->client" % self.N_BOXES,
                 "%-26s %-30s %-30s %s" % ("", "server a", "server b", "commands a | b")]
        for mode in ("no", "yes"):
            for what, row in zip(("no-op sync", "3-mailbox sync"), table[mode]):
                lines.append("%-26s %-30s %-30s %s" % (
                    "xreplicate=%s %s" % (mode, what),
                    *["%3d turns %6d + %6d B" % (s["turns"], s["c2s"], s["s2c"])
                      for s in row],
                    " | ".join("XREP %d LIST %d SELECT %d" %
                               (s["xrep"], s["list"], len(s["select"])) for s in row)))
        lines += ["twinbox: " + l for l in self.summaries]
        print("\n".join(lines), file=sys.stderr)

        # Without X-REPLICATE: no XREPLICATE command at all (LIST-STATUS discovery).
        for row in table["no"]:
            for s in row:
                self.assertEqual(s["xrep"], 0, s["cmds"])
        # With it: one XREPLICATE per server and no LIST, in both syncs; the no-op
        # selects nothing, the other only the three changed mailboxes, once per side.
        boxes = set(results["yes"][0])
        noop, changed = table["yes"]
        for what, s in zip(("no-op a", "no-op b", "3-mailbox a", "3-mailbox b"),
                           noop + changed):
            self.assertEqual([c.arg.upper() for c in s["cmds"] if c.name == "XREPLICATE"],
                             ["CHANGES"], "%s: %r" % (what, s["cmds"]))
        for side, s in zip("ab", noop):
            self.assertEqual(s["xrep"], 1, "no-op sync, server %s: %r" % (side, s["cmds"]))
            self.assertEqual(s["list"], 0, "no-op sync, server %s: %r" % (side, s["cmds"]))
            self.assertEqual(s["select"], [], "no-op sync, server %s" % side)
        union = set()
        for side, s in zip("ab", changed):
            what = "3-mailbox sync, server %s: %r" % (side, s["cmds"])
            self.assertEqual(s["xrep"], 1, what)
            self.assertEqual(s["list"], 0, what)
            self.assertLessEqual(set(s["select"]), boxes, what)
            union |= set(s["select"])
        self.assertEqual(union, boxes)
        # A mailbox written to is SELECTed again by the pass that checks the writes settled
        # (with or without X-REPLICATE); the mailboxes whose delta came from X-REPLICATE
        # are not SELECTed for reading, so there are fewer SELECTs than without it.
        self.assertLess(sum(len(s["select"]) for s in changed),
                        sum(len(s["select"]) for s in table["no"][1]),
                        "SELECTs with X-REPLICATE a, b: %r, %r"
                        % (changed[0]["select"], changed[1]["select"]))


# ---- 3. deliveries and changes outside IMAP ---------------------------------------------

class OutsideImapTest(XrBase):

    def doveadm(self, *args, input=None):
        p = self.a.doveadm(*args, input=input)
        self.assertEqual(p.returncode, 0, "doveadm %s: %s" % (args, p.stderr))
        return p

    def lda(self, msg):
        argv = self.a._as_user() + [self.a.install.lda, "-c", self.a.conf, "-d", "alice",
                                    "-f", "sender@example.org"]
        p = subprocess.run(argv, input=msg, capture_output=True, timeout=60, cwd=self.a.tmp)
        self.assertEqual(p.returncode, 0, "dovecot-lda: %s" % p.stderr)

    def test_doveadm_and_lda(self):
        old_in = ic.load_messages(self.a, "alice", "INBOX", 3, seed=1)
        old_box = ic.load_messages(self.a, "alice", "Inbound", 3, seed=2)
        self.sync()
        self.sync()  # the second run works from a stored position (CHANGES)

        self.doveadm("save", "-u", "alice", "-m", "Inbound", input=message("saved1"))
        lda = os.path.exists(self.a.install.lda)
        if lda:
            self.lda(message("lda1"))
        uid = self.uid_of(self.a, "Inbound", old_box[0])
        self.doveadm("flags", "add", "-u", "alice", "\\Flagged", "mailbox", "Inbound",
                     "uid", str(uid))
        uid = self.uid_of(self.a, "INBOX", old_in[1])
        self.doveadm("flags", "add", "-u", "alice", "$Label1", "mailbox", "INBOX",
                     "uid", str(uid))
        self.sync()
        snap = self.assertSame()
        self.assertNoDuplicates(snap)
        inbound, inbox = self.ids_flags(self.b, "Inbound"), self.ids_flags(self.b, "INBOX")
        self.assertIn("<saved1@example.org>", inbound)
        self.assertIn("\\Flagged", inbound[old_box[0]])
        self.assertIn("$Label1", inbox[old_in[1]])
        if lda:
            self.assertIn("<lda1@example.org>", inbox)

        # Second round on the new position: flags on the delivered message, a flag
        # removed, an expunge, all by doveadm.
        uid = self.uid_of(self.a, "Inbound", "<saved1@example.org>")
        self.doveadm("flags", "add", "-u", "alice", "\\Seen \\Answered", "mailbox",
                     "Inbound", "uid", str(uid))
        uid = self.uid_of(self.a, "Inbound", old_box[0])
        self.doveadm("flags", "remove", "-u", "alice", "\\Flagged", "mailbox", "Inbound",
                     "uid", str(uid))
        uid = self.uid_of(self.a, "INBOX", old_in[0])
        self.doveadm("expunge", "-u", "alice", "mailbox", "INBOX", "uid", str(uid))
        self.doveadm("save", "-u", "alice", "-m", "INBOX", input=message("saved2"))
        self.sync()
        snap = self.assertSame()
        self.assertNoDuplicates(snap)
        inbound, inbox = self.ids_flags(self.b, "Inbound"), self.ids_flags(self.b, "INBOX")
        self.assertEqual(inbound["<saved1@example.org>"], {"\\Seen", "\\Answered"})
        self.assertNotIn("\\Flagged", inbound[old_box[0]])
        self.assertNotIn(old_in[0], inbox)
        self.assertIn("<saved2@example.org>", inbox)
        r = self.sync()
        self.assertIn("copied a->b 0, b->a 0, flag updates 0, expunged 0", r.out)


# ---- 4. renaming a big mailbox moves no message -------------------------------------

class RenameBigMailboxTest(XrBase):
    COUNT = 1000

    def test_rename_thousand_messages(self):
        ic.load_messages(self.a, "alice", "Big", self.COUNT, size=2000, seed=4)
        ra, rb = self.relay(self.a), self.relay(self.b)
        self.write_config(ra.port, rb.port, compress="no")
        self.sync()
        self.sync()  # from a stored position
        total = sum(m["size"] for m in self.fetch(self.a, "Big"))
        c = self.a.client("alice")
        try:
            self.assertEqual(c.rename("Big", "Huge")[0], "OK")
        finally:
            c.logout()
        for r in (ra, rb):
            r.reset_counters()
        res = self.sync()
        self.assertTrue(rb.wait_idle())
        sb = rb.stats()
        print("\nrename of %d messages (%d bytes): server b %d turns, %d+%d bytes; "
              "server a %d turns, %d+%d bytes" % (
                  self.COUNT, total, sb["turns"], sb["bytes_c2s"], sb["bytes_s2c"],
                  ra.stats()["turns"], ra.stats()["bytes_c2s"], ra.stats()["bytes_s2c"]),
              file=sys.stderr)
        self.assertIn("copied a->b 0, b->a 0", res.out)
        self.assertIn("renamed 1", res.out)
        snap = self.assertSame()
        self.assertNotIn("Big", snap)
        self.assertEqual(len(snap["Huge"]), self.COUNT)
        self.assertLess(sb["bytes_c2s"] + sb["bytes_s2c"], total // 10,
                        "bodies went through the relay of side b")


class RenameAndRecreateTest(XrBase):
    """Renamed away and a new mailbox created under the old name before the next run: only
    the GUIDs tell the two apart. The old one is renamed on the other side too (no bodies
    move), the new one is created there with its own messages, and nothing is doubled."""

    def test_rename_then_new_mailbox_with_the_old_name(self):
        ic.load_messages(self.a, "alice", "Proj", 5, seed=7)
        self.sync()
        self.sync()  # from a stored position
        c = self.a.client("alice")
        try:
            self.assertEqual(c.rename("Proj", "Done")[0], "OK")
            self.assertEqual(c.create("Proj")[0], "OK")
        finally:
            c.logout()
        ic.load_messages(self.a, "alice", "Proj", 1, seed=8, start=100)
        res = self.sync()
        self.assertIn("renamed 1", res.out)
        self.assertIn("copied a->b 1, b->a 0", res.out)
        snap = self.assertSame()
        self.assertNoDuplicates(snap)
        self.assertEqual(len(snap["Done"]), 5)
        self.assertEqual(len(snap["Proj"]), 1)
        self.assertIn("copied a->b 0, b->a 0, flag updates 0, expunged 0", self.sync().out)


# ---- 5. history gone: the fallback ---------------------------------------------------

class _HistoryBase(XrBase):
    USERS = {"alice": "secret", "bob": "secret"}

    def seed_and_settle(self):
        ic.load_messages(self.a, "alice", "INBOX", 5, seed=1)
        ic.load_messages(self.a, "alice", "One", 5, seed=2)
        ic.load_messages(self.a, "alice", "Two", 5, seed=3)
        ic.load_messages(self.a, "alice", "Quiet", 3, seed=4)
        self.sync()
        self.sync()

    def change_a(self, seed):
        """Changes on a in three mailboxes (several commits each); returns a checker.
        Each call needs its own seed (the new messages' identities)."""
        new = ic.load_messages(self.a, "alice", "INBOX", 2, seed=seed, start=100)
        one = [m["message_id"] for m in self.fetch(self.a, "One")]
        for i in range(4):
            self.store(self.a, "One", one[0], "+FLAGS" if i % 2 == 0 else "-FLAGS", "\\Seen")
        self.store(self.a, "One", one[1], "+FLAGS", "$Done")
        two = [m["message_id"] for m in self.fetch(self.a, "Two")]
        self.expunge(self.a, "Two", two[2])
        self.store(self.a, "INBOX", new[0], "+FLAGS", "\\Flagged")

        def check():
            inbox, f_one = self.ids_flags(self.b, "INBOX"), self.ids_flags(self.b, "One")
            for m in new:
                self.assertIn(m, inbox)
            self.assertIn("\\Flagged", inbox[new[0]])
            self.assertNotIn("\\Seen", f_one[one[0]])
            self.assertIn("$Done", f_one[one[1]])
            self.assertNotIn(two[2], self.ids_flags(self.b, "Two"))
        return check

    def server_answer(self, dv, token, user="alice"):
        """What the server says to CHANGES token: (status, text, Report)."""
        c = Client.connect(dv.imap_port, user, self.USERS[user])
        try:
            status, text, untagged = c.command("XREPLICATE CHANGES " + token)
            return status, text, Report(untagged)
        finally:
            c.close()

    def position_of(self, dv, user):
        c = Client.connect(dv.imap_port, user, self.USERS[user])
        try:
            status, text, untagged = c.command("XREPLICATE POSITION")
            self.assertEqual(status, "OK", text)
            return Report(untagged).position
        finally:
            c.close()

    def sync_and_check(self, check, expect_fallback):
        """Syncs; the result must be correct (check()), then a second run must change
        nothing and warn no more. The warning of the first run is checked last (so a
        missing warning does not hide a wrong result): exactly one line when
        expect_fallback, none when False, not checked when None."""
        r = self.sync()
        snap = self.assertSame()
        self.assertNoDuplicates(snap)
        check()
        r2 = self.sync()
        self.assertIn("copied a->b 0, b->a 0, flag updates 0, expunged 0", r2.out)
        self.assertEqual(self.assertSame(), snap)
        if expect_fallback is not None:
            self.assertFallback(r, expect_fallback)
        self.assertEqual(self.fallback_lines(r2), [], "warned again on the next run: %r" % r2)
        return r

    def assertFallback(self, r, expected):
        lines = self.fallback_lines(r)
        if expected:
            self.assertEqual(len(lines), 1,
                             "expected one 'X-REPLICATE ... falling back' line: %r" % r)
        else:
            self.assertEqual(lines, [], r)

    def resync_then_sync(self, token, check):
        """Confirms the server cannot serve the stored position for the changed mailboxes
        (the set-up works), then syncs and checks the result and the fallback line."""
        resync = []
        if token:
            status, text, rep = self.server_answer(self.a, token)
            self.assertEqual(status, "OK", text)
            resync = [t[3] for t in rep.of("RESYNC")]
            print("\nserver a: RESYNC for %r" % resync, file=sys.stderr)
            self.assertLessEqual({"INBOX", "One", "Two"}, set(resync))
        self.sync_and_check(check, expect_fallback=bool(resync))


class HistoryRotatedTest(_HistoryBase):
    """(a) side a rotates its transaction logs on every write, and the old logs
    (dovecot.index.log.2) are deleted: the server answers RESYNC for those mailboxes."""
    EXTRA_CONF = {"a": ROTATE_ALWAYS, "b": ""}

    def test_rotated_and_deleted_logs(self):
        self.seed_and_settle()
        key = self.token_key("a")
        token = self.xrep_meta().get(key) if key else None
        check = self.change_a(11)
        gone = []
        for root, _dirs, files in os.walk(self.a.mail_dir("alice")):
            if "dovecot.index.log.2" in files:
                os.unlink(os.path.join(root, "dovecot.index.log.2"))
                gone.append(root)
        self.assertTrue(gone, "no dovecot.index.log.2 to delete")
        self.resync_then_sync(token, check)


class HistoryLostLogsTest(_HistoryBase):
    """(a') every transaction log file of side a deleted: Dovecot rebuilds the index
    and its MODSEQs restart, below what twinbox holds."""

    def test_all_logs_deleted(self):
        self.seed_and_settle()
        time.sleep(1.1)  # the rebuilt logs must be born in a later second (see plugin)
        check = self.change_a(12)
        for root, _dirs, files in os.walk(self.a.mail_dir("alice")):
            for f in files:
                if f.startswith("dovecot.index.log"):
                    os.unlink(os.path.join(root, f))
        key = self.token_key("a")
        token = self.xrep_meta().get(key) if key else None
        self.resync_then_sync(token, check)


class HistoryLostLogsNoXrTest(HistoryLostLogsTest):
    """The same with `xreplicate = no` on both accounts: tells an X-REPLICATE fault
    from one of the QRESYNC path (no warning expected here: no position is used)."""
    XREPLICATE = {"a": False, "b": False}


class BadTokenTest(_HistoryBase):
    """(b) the stored position is damaged, or another user's: [XREPLICATE-BADTOKEN]."""

    def _token_or_skip(self):
        key = self.token_key("a")
        if not key:
            raise unittest.SkipTest("no X-REPLICATE position in the state db (keys %r)"
                                    % list(self.xrep_meta()))
        return key, self.xrep_meta()[key]

    def test_corrupt_token(self):
        self.seed_and_settle()
        key, token = self._token_or_skip()
        check = self.change_a(13)
        i = len(token) // 2
        bad = token[:i] + ("A" if token[i] != "A" else "B") + token[i + 1:]
        status, text, _ = self.server_answer(self.a, bad)
        self.assertIn(status, ("BAD", "NO"), text)
        self.assertIn("XREPLICATE-BADTOKEN", text)
        self.set_meta(key, bad)
        self.sync_and_check(check, expect_fallback=True)

    def test_another_users_token(self):
        self.seed_and_settle()
        key, _token = self._token_or_skip()
        check = self.change_a(14)
        bobs = self.position_of(self.a, "bob")
        status, text, _ = self.server_answer(self.a, bobs)
        self.assertEqual(status, "NO", text)
        self.assertIn("XREPLICATE-BADTOKEN", text)
        self.set_meta(key, bobs)
        self.sync_and_check(check, expect_fallback=True)


class CapabilityGoneTest(_HistoryBase):
    """(c) side a restarted without the plugin, then with it again."""

    def restart_a(self, with_plugin):
        self.a.stop(remove=False)
        self.a.extra_imap_plugins = ["imap_xreplicate"] if with_plugin else []
        self.a._write_conf()
        self.a._chown_tree()
        self.a.start()
        self.assertEqual(advertises_xreplicate(self.a), with_plugin)

    def test_capability_gone_and_back(self):
        self.seed_and_settle()
        had_position = bool(self.token_key("a"))
        self.restart_a(False)
        check = self.change_a(15)
        gone = self.sync_and_check(check, expect_fallback=None)
        # back: the position stored before (if still kept) is older than the state
        self.restart_a(True)
        check = self.change_a(16)
        ic.load_messages(self.b, "alice", "Quiet", 1, seed=7, start=40)
        self.sync_and_check(check, expect_fallback=None)
        self.assertEqual(len(self.snap(self.a)["Quiet"]), 4)
        if had_position:
            self.assertFallback(gone, True)


# ---- 6. WATCH: a change is pushed within a second -----------------------------------

class WatchLatencyTest(unittest.TestCase):
    BOUND = 1.0     # seconds from the APPEND's tagged OK to the APPENDED line
    OVERALL = 5.0   # seconds: the most we wait for it at all
    ROUNDS = 3

    def setUp(self):
        self.dv = make_dovecot(True, users={"alice": "secret"}, compress=False)
        self.dv.start()
        self.clients = []

    def tearDown(self):
        for c in self.clients:
            c.close()
        self.dv.stop()

    def connect(self):
        c = Client.connect(self.dv.imap_port, "alice", "secret")
        self.clients.append(c)
        return c

    def ok(self, c, line, literal=None):
        status, text, untagged = c.command(line, literal=literal)
        self.assertEqual(status, "OK", "%s -> %s %s" % (line, status, text))
        return untagged

    def wait_appended(self, c):
        """Reads the stream (1 s per read, OVERALL in all) up to an APPENDED line;
        returns (time it arrived, the batch's responses up to its POSITION)."""
        deadline = time.monotonic() + self.OVERALL
        lines, seen = [], None
        while time.monotonic() < deadline:
            try:
                resp = c.read_response(timeout=min(1.0, max(0.01,
                                                         deadline - time.monotonic())))
            except TimeoutError:
                continue
            if resp.startswith(b"* XREPLICATE APPENDED") and seen is None:
                seen = time.monotonic()
            lines.append(resp)
            if seen is not None and resp.startswith(b"* XREPLICATE POSITION"):
                return seen, Report(lines)
        self.fail("no APPENDED line within %.0f s: %r" % (self.OVERALL, lines))

    def test_watch_pushes_append_within_a_second(self):
        c, other = self.connect(), self.connect()
        self.ok(other, "APPEND INBOX ()", literal=message("w0"))
        rep = Report(self.ok(c, "XREPLICATE POSITION"))
        guid = rep.status("INBOX")["guid"]
        tag = c.next_tag()
        c.send("%s XREPLICATE WATCH %s\r\n" % (tag, rep.position))
        while True:
            resp = c.read_response(timeout=self.OVERALL)
            self.assertFalse(resp.startswith(tag.encode()), resp)
            if resp.startswith(b"+"):
                self.assertIn(b"watching", resp)
                break
        latencies = []
        for i in range(1, self.ROUNDS + 1):
            self.ok(other, "APPEND INBOX ()", literal=message("w%d" % i))
            committed = time.monotonic()
            arrived, batch = self.wait_appended(c)
            latencies.append(arrived - committed)
            self.assertEqual([uidset(t[2]) for t in batch.of("APPENDED", guid)], [[i + 1]])
            if i < self.ROUNDS:
                time.sleep(0.3)
        print("\nWATCH: APPENDED arrived %s s after the APPEND's OK"
              % ", ".join("%.3f" % l for l in latencies), file=sys.stderr)
        c.send("DONE\r\n")
        status, text, _ = c.collect(tag)
        self.assertEqual(status, "OK", text)
        self.ok(c, "NOOP")
        for l in latencies:
            self.assertLess(l, self.BOUND, "latencies %r" % latencies)


if __name__ == "__main__":
    unittest.main()
