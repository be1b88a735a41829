"""Both accounts keep changing while `twinbox sync` runs back to back; once the activity
stops, two quiet syncs must leave them identical (checked with tests/fixture/imapcheck.py).

A few short runs of tests/stress/concurrent.py per X-REPLICATE mode (plugin on both
servers, on one, on neither), with fixed seeds; the script itself runs longer and more of
them. A failure prints what differs (UID, MODSEQ and flags per side), the state's rows for
that mailbox and the directory holding the -vv logs of the last syncs.

RaceTest replays the two races those runs found, deterministically (a proxy holds one of
twinbox's commands while another client acts): a copy expunged before the settling pass
read it back, and an expunge undone between twinbox's STORE \\Deleted and its UID EXPUNGE.
"""
import importlib.util
import os
import re
import shutil
import tempfile
import threading
import time
import unittest

from tests.fixture import imapcheck as ic
from tests.fixture.dovecot import stop_all
from tests.fixture.evil import DEFAULT_REMOVED_CAPS, Evil
from tests.integration.common import ROOT, binary, twinbox
from tests.plugin.common import plugin_dir

_SCRIPT = os.path.join(ROOT, "tests", "stress", "concurrent.py")


def _load_script():
    spec = importlib.util.spec_from_file_location("twinbox_stress_concurrent", _SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


cc = _load_script()


class _Concurrent(unittest.TestCase):
    MODE = None
    RUNS = 3
    SEED = 4242
    DURATION = 15.0   # seconds of activity per run; a run takes about 10 s more
    RATE = 6.0        # operations per second per side, over CLIENTS connections
    CLIENTS = 2
    LATENCY = 0.01    # one-way, between twinbox and the servers: runs overlap the activity

    def setUp(self):
        if not os.path.exists(binary("twinbox")):
            self.skipTest("twinbox not built in %s" % os.path.dirname(binary("twinbox")))
        self.pdir = plugin_dir() if any(cc.MODES[self.MODE]) else None

    def test_converges_after_concurrent_activity(self):
        lines, bad = [], []
        for i in range(self.RUNS):
            seed = self.SEED * 100 + i
            r = cc.run_once(self.MODE, seed=seed, duration=self.DURATION, rate=self.RATE,
                            clients=self.CLIENTS, plugin_dir=self.pdir, latency=self.LATENCY)
            lines.append("run %d mode=%s seed=%d: %s" % (i + 1, self.MODE, seed, r.line()))
            lines.extend(r.report)
            if not r.converged:
                bad.append(i + 1)
            # the activity must really have run on both sides, and syncs alongside it
            self.assertTrue(r.error or r.syncs > 4, "\n".join(lines))
            for side in "ab":
                ops = sum(sum(c.values()) for name, c in r.ops.items()
                          if name.startswith("activity-" + side))
                self.assertTrue(r.error or ops > 10, "few operations on %s\n%s"
                                % (side, "\n".join(lines)))
        self.assertEqual(bad, [], "runs that did not converge:\n" + "\n".join(lines))


class ConcurrentPluginBothTest(_Concurrent):
    MODE = "both"


class ConcurrentPluginOneSideTest(_Concurrent):
    MODE = "a"


class ConcurrentNoPluginTest(_Concurrent):
    MODE = "off"


del _Concurrent  # not a test of its own


class RaceTest(unittest.TestCase):
    """The races the randomized runs found, made certain: a proxy (tests/fixture/evil.py)
    in front of each server holds one of twinbox's commands back while another client acts
    on the message. Plugin on both sides: a change lost there is lost for good, because an
    X-REPLICATE position reports nothing about a UID it did not know."""

    HIDDEN = ()  # capabilities the proxy in front of a hides (RaceCondstoreTest)
    SETTLE = r" \(QRESYNC"  # how a's settling EXAMINE goes on after the mailbox

    def setUp(self):
        if not os.path.exists(binary("twinbox")):
            self.skipTest("twinbox not built")
        pdir = plugin_dir()
        self.tmp = tempfile.mkdtemp(prefix="twinbox-race-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.a = cc.make_dovecot(True, pdir)
        self.b = cc.make_dovecot(True, pdir, separator="/")
        self.addCleanup(stop_all, self.a, self.b)
        self.a.start()
        self.b.start()
        self.ev = {"a": Evil(self.a, remove_caps=DEFAULT_REMOVED_CAPS + self.HIDDEN),
                   "b": Evil(self.b)}  # twinbox reaches both through them
        for ev in self.ev.values():
            self.addCleanup(ev.stop)
        self.cfg = os.path.join(self.tmp, "config")
        self.state = os.path.join(self.tmp, "p.db")
        cc.write_config(self.cfg, self.a, self.b, self.state,
                        {k: ev.port for k, ev in self.ev.items()})
        ic.load_messages(self.a, "alice", "INBOX", 4, size=600, seed=1)
        self.sync()
        self.sync()  # the second run stores X-REPLICATE positions for both sides

    def sync(self):
        r = twinbox("-c", self.cfg, "sync", timeout=120)
        self.assertEqual(r.code, 0, r)
        return r

    def sync_with(self, dv, msgid, ready, act):
        """Runs one sync while a client on dv waits (polling, at most 30 s) for the
        message with that Message-ID to satisfy ready(flags), then calls act(client, uid).
        Returns the UID acted on, or None."""
        done = threading.Event()
        errors, acted = [], []

        def watch():
            w = dv.client("alice")
            try:
                w.select("INBOX")
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline and not done.is_set():
                    typ, data = w.uid("SEARCH", "HEADER", "Message-ID", ic.quote(msgid))
                    for uid in (data[-1] or b"").split() if typ == "OK" else []:
                        typ, fl = w.uid("FETCH", uid.decode(), "(FLAGS)")
                        if typ == "OK" and ready(b" ".join(x for x in fl if
                                                           isinstance(x, bytes))):
                            act(w, uid.decode())
                            acted.append(int(uid))
                            return
                    time.sleep(0.02)
                    w.noop()
            except Exception as e:  # reported below
                errors.append(e)
            finally:
                try:
                    w.logout()
                except Exception:
                    pass

        t = threading.Thread(target=watch, daemon=True)
        t.start()
        try:
            self.sync()
        finally:
            done.set()
            t.join(35)
        self.assertFalse(errors, errors)
        self.assertFalse(t.is_alive())
        return acted[0] if acted else None

    def assertConverged(self, msgid):
        self.sync()
        self.sync()
        sa = ic.snapshot(self.a, "alice", as_separator="/")
        sb = ic.snapshot(self.b, "alice", as_separator="/")
        self.assertEqual(cc.diff_snapshots(sa, sb), {})
        for side, snap in (("a", sa), ("b", sb)):
            self.assertNotIn(msgid, [row[0] for row in snap.get("INBOX", [])],
                             "the expunge never reached %s" % side)

    def test_copy_expunged_before_the_settling_pass(self):
        """twinbox copies a new message from b to a; another client expunges the copy on
        a before twinbox's settling pass reads a again (its SELECT held 2 s). That pass
        sees the copy VANISHED: the expunge must reach b."""
        msg, day = ic.make_message(1, size=700, seed=2)
        msgid = re.search(rb"Message-ID: (<[^>]+>)", msg).group(1).decode()
        c = self.b.client("alice")
        try:
            ic.append(c, "INBOX", msg, flags=("$Label2",), date=day)
        finally:
            c.logout()
        held = self.ev["a"].on(r'EXAMINE "?INBOX"?' + self.SETTLE, delay=2.0, times=1)

        def expunge(w, uid):
            w.uid("STORE", uid, "+FLAGS.SILENT", "(\\Deleted)")
            w.uid("EXPUNGE", uid)

        uid = self.sync_with(self.a, msgid, lambda flags: True, expunge)
        self.assertIsNotNone(uid, "the copy never showed up on a")
        self.assertGreaterEqual(held.matched, 1, "no settling SELECT on a")
        self.assertConverged(msgid)

    def settling_fetches(self, side, rule):
        """The commands twinbox sent on side's connection right after the EXAMINE that
        rule held, up to the next SELECT or EXAMINE."""
        for conn in self.ev[side].connections:
            cmds = conn.commands
            for i, c in enumerate(cmds):
                if c.rule is rule:
                    out = []
                    for d in cmds[i + 1:]:
                        if d.name in ("SELECT", "EXAMINE"):
                            break
                        out.append(d.text)
                    return out
        return None

    def append_to_b(self, i, flags):
        msg, day = ic.make_message(i, size=700, seed=3)
        c = self.b.client("alice")
        try:
            ic.append(c, "INBOX", msg, flags=flags, date=day)
        finally:
            c.logout()
        return re.search(rb"Message-ID: (<[^>]+>)", msg).group(1).decode()

    def flags_of(self, dv, msgid):
        c = dv.client("alice")
        try:
            return [m["flags"] for m in ic.fetch_all(c, "INBOX") if m["message_id"] == msgid]
        finally:
            c.logout()

    def assertSame(self):
        sa = ic.snapshot(self.a, "alice", as_separator="/")
        sb = ic.snapshot(self.b, "alice", as_separator="/")
        self.assertEqual(cc.diff_snapshots(sa, sb), {})

    def test_copy_flagged_before_the_settling_pass(self):
        """twinbox copies a new message from b to a; another client replaces the copy's
        flags on a while the settling pass's EXAMINE is held 2 s. That pass reads the
        copy's flags only (its identity is known from APPENDUID): the change must reach b
        in the same run."""
        msgid = self.append_to_b(1, ("$Label2",))
        held = self.ev["a"].on(r'EXAMINE "?INBOX"?' + self.SETTLE, delay=2.0, times=1)
        uid = self.sync_with(self.a, msgid, lambda flags: True,
                             lambda w, uid: w.uid("STORE", uid, "FLAGS", "($Label3)"))
        self.assertIsNotNone(uid, "the copy never showed up on a")
        self.assertEqual(held.matched, 1, "no settling EXAMINE on a")
        self.assertEqual(self.flags_of(self.b, msgid), [("$Label3",)])
        self.assertEqual(self.flags_of(self.a, msgid), [("$Label3",)])
        self.sync()
        self.assertSame()

    def test_foreign_message_before_the_settling_pass(self):
        """While a's settling EXAMINE is held, another client appends a message to a,
        right behind twinbox's copy. The settling pass asks the identity of that message
        (not of the copy it made) and copies it to b in the same run: once, and the copy
        is not taken for a new message."""
        msgid = self.append_to_b(2, ())
        other, day = ic.make_message(3, size=650, seed=3)
        other_id = re.search(rb"Message-ID: (<[^>]+>)", other).group(1).decode()
        held = self.ev["a"].on(r'EXAMINE "?INBOX"?' + self.SETTLE, delay=2.0, times=1)
        uid = self.sync_with(self.a, msgid, lambda flags: True,
                             lambda w, uid: ic.append(w, "INBOX", other, flags=("\\Seen",),
                                                      date=day))
        self.assertIsNotNone(uid, "the copy never showed up on a")
        self.assertEqual(held.matched, 1, "no settling EXAMINE on a")
        self.assertEqual(self.flags_of(self.b, other_id), [("\\Seen",)])
        self.assertEqual(len(self.flags_of(self.a, msgid)), 1)
        self.assertEqual(len(self.flags_of(self.b, msgid)), 1)
        # identities asked from the UID after the copy on
        self.assertEqual([t.split(" (")[0] for t in self.settling_fetches("a", held)],
                         self.expected_settling(uid))
        self.sync()
        self.assertSame()

    def expected_settling(self, uid):
        # the copy's flags come with the EXAMINE: QRESYNC reports every message changed
        # since the base, new ones included
        return ["UID FETCH %d:*" % (uid + 1)]

    def test_expunge_undone_before_uid_expunge(self):
        """A message expunged on a; twinbox sets \\Deleted on b's copy, and another client
        replaces that copy's flags (clearing \\Deleted) before twinbox's UID EXPUNGE (held
        2 s) runs: the copy stays, and the next pass must expunge it again."""
        c = self.a.client("alice")
        try:
            victim = ic.fetch_all(c, "INBOX")[1]
            c.select("INBOX")
            c.uid("STORE", str(victim["uid"]), "+FLAGS.SILENT", "(\\Deleted)")
            c.uid("EXPUNGE", str(victim["uid"]))
        finally:
            c.logout()
        held = self.ev["b"].on(r"UID EXPUNGE", delay=2.0, times=1)
        uid = self.sync_with(self.b, victim["message_id"], lambda flags: b"\\Deleted" in flags,
                             lambda w, uid: w.uid("STORE", uid, "FLAGS", "($Label1)"))
        self.assertIsNotNone(uid, "\\Deleted never showed up on b")
        self.assertGreaterEqual(held.matched, 1, "no UID EXPUNGE on b")
        self.assertConverged(victim["message_id"])


class RaceCondstoreTest(RaceTest):
    """The same races with a's QRESYNC hidden: the settling pass lists a's known messages
    (changed flags, then UID SEARCH for the ones still there) and asks its own copy's
    flags by name, the rest from the copy on with identity; the listing must still add up
    to EXISTS."""

    HIDDEN = ("QRESYNC",)
    SETTLE = r" \(CONDSTORE\)"

    def expected_settling(self, uid):
        return ["UID FETCH 1:%d" % (uid - 1), "UID SEARCH UID 1:%d" % (uid - 1),
                "UID FETCH %d" % uid, "UID FETCH %d:*" % (uid + 1)]

    def test_flags_answer_dropped_expunges_nothing(self):
        """A server that leaves out its answer to the settling pass's FETCH of twinbox's
        own copy: the listing no longer adds up to EXISTS, so the absence proves nothing.
        The copy stays on both sides, the mailbox is left alone with a warning."""
        msgid = self.append_to_b(4, ("$Label1",))
        self.ev["a"].on(r"UID FETCH \d+ \(UID FLAGS\)$", drop=r"\* \d+ FETCH")
        r = twinbox("-c", self.cfg, "sync", timeout=120)
        self.assertEqual(r.code, 5, r)
        self.assertIn("EXISTS", r.err, r)
        self.assertEqual(len(self.flags_of(self.a, msgid)), 1)
        self.assertEqual(len(self.flags_of(self.b, msgid)), 1)


class RaceListingTest(RaceCondstoreTest):
    """The same races on the lowest rung, CONDSTORE hidden as well: the settling pass
    lists the flags of every known message, its own copy's by name, the rest from the copy
    on with identity; what the listing misses below the server's UIDNEXT is expunged only
    when it adds up to EXISTS."""

    HIDDEN = ("QRESYNC", "CONDSTORE")
    SETTLE = r"$"  # a bare EXAMINE

    def expected_settling(self, uid):
        return ["UID FETCH 1:%d" % (uid - 1), "UID FETCH %d" % uid, "UID FETCH %d:*" % (uid + 1)]
