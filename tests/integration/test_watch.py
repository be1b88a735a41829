"""`twinbox watch`: woken by XREPLICATE WATCH, not by its own writes; the interval covers
sides without X-REPLICATE; SIGTERM ends it cleanly. Checked with imaplib."""
import os
import selectors
import signal
import subprocess
import tempfile
import time
import unittest

from tests.fixture import imapcheck as ic
from tests.fixture.dovecot import Dovecot
from tests.integration.common import SAN_RE, TestCase, binary
from tests.plugin.common import plugin_dir

class Watcher:
    """A `twinbox watch` process whose summary lines are read with a deadline."""

    def __init__(self, cfg, *args, pairs=("p",), env=None):
        # The control socket goes beside the config, not into the session's runtime
        # directory, where another test's daemon may be answering.
        e = dict(os.environ, XDG_RUNTIME_DIR=os.path.dirname(os.path.abspath(cfg)))
        e.update(env or {})
        self.p = subprocess.Popen([binary("twinbox"), "-c", cfg, "watch", *pairs, *args],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  stdin=subprocess.DEVNULL, text=True, env=e)
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.p.stdout, selectors.EVENT_READ)

    def summary(self, timeout):
        """The next summary line, or None when none came within timeout seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.sel.select(max(0.01, deadline - time.monotonic())):
                continue
            line = self.p.stdout.readline()
            if not line:
                return None
            if line.startswith("p: copied"):
                return line
        return None

    def finish(self, timeout=30):
        try:
            out, err = self.p.communicate(timeout=timeout)
        finally:
            if self.p.poll() is None:
                self.p.kill()
                self.p.wait()
        self.sel.close()
        if SAN_RE.search(err):
            raise AssertionError("sanitizer report:\n" + err[-4000:])
        return self.p.returncode, out, err


class WatchTest(TestCase):
    def setUp(self):
        pdir = plugin_dir()
        self.a = Dovecot(plugin_dir=pdir, extra_imap_plugins=["imap_xreplicate"])
        self.b = Dovecot(separator="/", plugin_dir=pdir, extra_imap_plugins=["imap_xreplicate"])
        self.a.start()
        self.b.start()
        self.tmp = tempfile.TemporaryDirectory()
        self.cfg = os.path.join(self.tmp.name, "config")
        self.w = None

    def tearDown(self):
        if self.w and self.w.p.poll() is None:
            self.w.p.kill()
            self.w.p.wait()
        self.a.stop()
        self.b.stop()
        self.tmp.cleanup()

    def config(self, xreplicate="yes"):
        with open(self.cfg, "w") as f:
            for name, dv in (("a", self.a), ("b", self.b)):
                f.write(f"[account {name}]\ntype = tunnel\nxreplicate = {xreplicate}\n"
                        f"command = {dv.tunnel_command('alice')}\n\n")
            f.write(f"[pair p]\na = a\nb = b\nstate = {self.tmp.name}/p.db\n")
        os.chmod(self.cfg, 0o600)

    def ids(self, dv, mailbox="INBOX"):
        c = dv.client("alice")
        try:
            return {m["message_id"]: set(m["flags"]) for m in ic.fetch_all(c, mailbox)}
        finally:
            c.logout()

    def test_changes_wake_it_and_its_own_writes_do_not(self):
        self.config()
        ic.load_messages(self.a, "alice", "INBOX", 5)
        # The interval is a day: any run after the first was started by the stream.
        self.w = Watcher(self.cfg, "--interval", "86400", "--max-runs", "3")
        first = self.w.summary(60)
        self.assertIn("copied a->b 5", first or "")
        # The first run wrote 5 messages to b: that alone must not start a run.
        self.assertIsNone(self.w.summary(3), "woken by its own writes")
        ic.load_messages(self.a, "alice", "INBOX", 1, start=50)
        second = self.w.summary(30)
        self.assertIn("copied a->b 1, b->a 0", second or "")
        c = self.b.client("alice")
        c.select("INBOX")
        self.assertEqual(c.store("1", "+FLAGS", "(\\Flagged)")[0], "OK")
        c.logout()
        third = self.w.summary(30)
        self.assertIn("flag updates 1", third or "")
        code, out, err = self.w.finish()
        self.assertEqual(code, 0, err)
        ida, idb = self.ids(self.a), self.ids(self.b)
        self.assertEqual(ida, idb)
        self.assertEqual(len(ida), 6)
        self.assertEqual(sum("\\Flagged" in f for f in ida.values()), 1)

    def test_interval_covers_sides_without_x_replicate(self):
        self.config(xreplicate="no")
        self.w = Watcher(self.cfg, "--interval", "1", "--max-runs", "2")
        self.assertIsNotNone(self.w.summary(60))
        ic.load_messages(self.b, "alice", "INBOX", 2)
        second = self.w.summary(30)
        self.assertIn("b->a 2", second or "")
        code, out, err = self.w.finish()
        self.assertEqual(code, 0, err)
        self.assertEqual(self.ids(self.a), self.ids(self.b))

    def test_sigterm_ends_the_wait_with_exit_0(self):
        self.config()
        self.w = Watcher(self.cfg, "--interval", "86400")
        self.assertIsNotNone(self.w.summary(60))
        time.sleep(0.5)  # into the wait
        self.w.p.send_signal(signal.SIGTERM)
        code, out, err = self.w.finish(timeout=20)
        self.assertEqual(code, 0, err)
        self.assertEqual(err.strip(), "")

    def test_failing_account_is_retried_after_the_interval(self):
        self.config()
        self.a.stop()  # its tunnel command now fails: Dovecot's config is gone
        self.w = Watcher(self.cfg, "--interval", "1", "--max-runs", "2")
        code, out, err = self.w.finish(timeout=60)
        self.assertEqual(code, 5, err)  # the last run's: temporary failure
        lines = [l for l in err.splitlines() if l.strip()]
        # One line when the trouble begins, naming the account, not one per attempt.
        self.assertEqual(len(lines), 1, err)
        self.assertTrue(lines[0].startswith("twinbox: pair p: account a unreachable: "), err)
        self.assertTrue(lines[0].endswith("; retrying"), err)

    def test_bad_arguments(self):
        self.config()
        from tests.integration.common import twinbox
        r = twinbox("-c", self.cfg, "watch", "p", "--interval", "0")
        self.assertOneLineError(r, "usage")
        self.assertEqual(r.code, 2)
        r = twinbox("-c", self.cfg, "watch", "nope")
        self.assertOneLineError(r, "no [pair nope] section")
        self.assertEqual(r.code, 3)


if __name__ == "__main__":
    unittest.main()
