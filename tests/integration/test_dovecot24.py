"""Dovecot 2.4 paired with other servers, each side loading the X-REPLICATE plugin built
for its own version: 2.3 with 2.4 (the upgrade path admins go through, both ways round),
2.4 with Cyrus (a server without the plugin), and `twinbox watch` woken by XREPLICATE
WATCH on 2.4. 2.4 with 2.4 is test_xreplicate itself, which the runner runs once more
against 2.4 ("[dovecot 2.4.1]" in the test names).

Needs Dovecot 2.4 built by tests/servers/dovecot24.sh and both plugins:
$TWINBOX_PLUGIN_DIR_23 (or $TWINBOX_PLUGIN_DIR) and $TWINBOX_PLUGIN_DIR_24 (the runner
sets them); every test skips otherwise. Results are checked with imaplib."""
import os
import re
import tempfile
import time
import unittest

import tests.integration.test_xreplicate as txr
from tests.fixture import imapcheck as ic
from tests.fixture.dovecot import available, stop_all
from tests.integration.common import TestCase
from tests.integration.interop import DovecotSide, InteropBase
import tests.integration.test_watch as tw
from tests.plugin.common import plugin_dir

EXACT_RE = re.compile(r"\((\d+) exact deltas\)")


def need_24():
    if not available("2.4"):
        raise unittest.SkipTest("Dovecot 2.4 is not built (tests/servers/dovecot24.sh)")
    plugin_dir("2.4")  # skips without the plugin built against 2.4
    plugin_dir("2.3")


def exact_deltas(runs):
    return sum(int(m.group(1)) for r in runs for m in EXACT_RE.finditer(r.out))


class Random23With24Test(txr.RandomXrBothTest):
    """test_sync's randomized rounds between a 2.3 (a) and a 2.4 (b), both with the
    plugin: same contents on both (imaplib), no duplicates, no fallback line, positions
    stored for both sides and X-REPLICATE used by every run after the first (all checked
    by test_xreplicate's _RandomXr), and exact flag deltas used."""
    VERSION = {"a": "2.3", "b": "2.4"}

    def setUp(self):
        need_24()
        super().setUp()

    def test_random_two_sided_changes(self):
        super().test_random_two_sided_changes()
        self.assertGreater(exact_deltas(self.runs), 0, "no exact deltas used")


class Random24With23Test(Random23With24Test):
    VERSION = {"a": "2.4", "b": "2.3"}


class HistoryRotated24With23Test(txr.HistoryRotatedTest):
    """The 2.4 side (a) rotates its transaction logs on every write and its older log
    files are deleted: it answers RESYNC for those mailboxes, twinbox falls back with one
    line for them and the result is right (test_xreplicate's checks)."""
    VERSION = {"a": "2.4", "b": "2.3"}

    def setUp(self):
        need_24()
        super().setUp()


class HistoryLostLogs24With23Test(txr.HistoryLostLogsTest):
    """The 2.4 side's transaction logs are deleted outright: RESYNC, one fallback line."""
    VERSION = {"a": "2.4", "b": "2.3"}

    def setUp(self):
        need_24()
        super().setUp()


class Cyrus24Test(InteropBase):
    """Dovecot 2.4 with the plugin (a) and Cyrus (b): interop's randomized rounds; every
    run after the first reads a's changes with X-REPLICATE, none falls back."""
    ROUNDS = 6

    def make_a(self):
        need_24()
        return DovecotSide(txr.make_dovecot(True, version="2.4", users={"alice": "secret"},
                                            separator="/")).start()

    def make_b(self):
        from tests.fixture.cyrus import Cyrus
        return Cyrus(users={"alice": "secret"}).start()

    def sync(self, *args, code=0):
        r = super().sync(*args, code=code)
        self.runs.append(r)
        return r

    def test_randomized_with_x_replicate(self):
        self.runs = []
        self.run_randomized()
        for i, r in enumerate(self.runs):
            self.assertNotRegex(r.err, txr.FALLBACK_RE, "run %d fell back" % i)
            if i > 0:
                self.assertRegex(r.out, r"X-REPLICATE a yes b no", "run %d" % i)


class Watch24Test(TestCase):
    """`twinbox watch` between two 2.4 tunnels is woken by XREPLICATE WATCH when a message
    is appended on one side (over IMAP, by another session). The wait allows 60 s; how long
    it took is printed for the bench table, not asserted."""

    def setUp(self):
        need_24()
        pdir = plugin_dir("2.4")
        self.a = txr.make_dovecot(True, version="2.4", users={"alice": "secret"})
        self.b = txr.make_dovecot(True, version="2.4", users={"alice": "secret"},
                                  separator="/")
        self.addCleanup(stop_all, self.a, self.b)
        self.a.start()
        self.b.start()
        self.assertTrue(pdir)
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)
        self.cfg = os.path.join(self.tmp.name, "config")
        tw.WatchTest.config(self)  # both sides as tunnels, pair p

    def test_append_wakes_watch(self):
        ic.load_messages(self.a, "alice", "INBOX", 2)
        # The interval is a day: the second run can only have been started by WATCH.
        w = tw.Watcher(self.cfg, "--interval", "86400", "--max-runs", "2")
        try:
            first = w.summary(60)
            self.assertIn("copied a->b 2", first or "")
            self.assertIn("X-REPLICATE a yes b yes", first or "")
            t0 = time.monotonic()
            ic.load_messages(self.a, "alice", "INBOX", 1, start=50)
            second = w.summary(60)
            woke = time.monotonic() - t0
            self.assertIn("copied a->b 1, b->a 0", second or "", "not woken by WATCH")
        finally:
            code, _out, err = w.finish()
        self.assertEqual(code, 0, err)
        print("\nWATCH-LATENCY dovecot %s: %.2f s" % (self.a.install.full_version(), woke))
        ca, cb = self.a.client("alice"), self.b.client("alice")
        try:
            ida = {m["message_id"] for m in ic.fetch_all(ca, "INBOX")}
            idb = {m["message_id"] for m in ic.fetch_all(cb, "INBOX")}
        finally:
            ca.logout()
            cb.logout()
        self.assertEqual(ida, idb)
        self.assertEqual(len(ida), 3)


if __name__ == "__main__":
    unittest.main()
