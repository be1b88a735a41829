"""`twinbox watch` woken by push from servers without X-REPLICATE (plain Dovecot, no
plugin): NOTIFY (RFC 5465) where it works, else IDLE on the pair's watch-mailboxes. The
interval is 600 s, so a run that starts within the 30 s a test waits can only have been
started by push. Results are checked with imaplib."""
import os
import selectors
import signal
import tempfile
import time
import unittest

from tests.fixture import imapcheck as ic
from tests.fixture.dovecot import Dovecot, stop_all
from tests.integration.common import TestCase
from tests.integration.test_watch import Watcher

class PushWatcher(Watcher):
    """A Watcher whose stderr lines can be read with a deadline too."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.err_sel = selectors.DefaultSelector()
        self.err_sel.register(self.p.stderr, selectors.EVENT_READ)

    def imap_children(self, mark):
        """How many of its tunnel imap processes show `mark` in their title (Dovecot's
        verbose_proctitle: "[alice  IDLE]" while an IDLE runs)."""
        n = 0
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open("/proc/%s/stat" % pid) as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                with open("/proc/%s/cmdline" % pid, "rb") as f:
                    cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
            except (OSError, IndexError, ValueError):
                continue
            n += ppid == self.p.pid and mark in cmd
        return n

    def wait_idling(self, count, timeout=30):
        """Until `count` IDLE commands run: the watch is in place (no wall clock)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.imap_children("IDLE]") >= count:
                return True
            time.sleep(0.05)
        return False

    def stderr_line(self, timeout):
        if not self.err_sel.select(timeout):
            return None
        return self.p.stderr.readline() or None


# Dovecot's NOTIFY needs the mailbox list index; without it NOTIFY SET is refused
# (NO [NOTIFICATIONOVERFLOW]) and twinbox falls back to IDLE.
NO_NOTIFY = "mailbox_list_index = no\nverbose_proctitle = yes\n"


class PushBase(TestCase):
    extra_conf = ""
    pair_extra = ""

    def setUp(self):
        self.a = Dovecot(extra_conf=self.extra_conf)
        self.b = Dovecot(separator="/", extra_conf=self.extra_conf)
        self.a.start()
        self.b.start()
        self.tmp = tempfile.TemporaryDirectory()
        self.cfg = os.path.join(self.tmp.name, "config")
        self.w = None
        for dv in (self.a, self.b):
            c = dv.client("alice")
            for box in ("Work", "Other"):
                ic.create(c, box)
            c.logout()

    def tearDown(self):
        if self.w and self.w.p.poll() is None:
            self.w.p.kill()
            self.w.p.wait()
        stop_all(self.a, self.b)
        self.tmp.cleanup()

    def config(self, pair_extra=""):
        with open(self.cfg, "w") as f:
            for name, dv in (("a", self.a), ("b", self.b)):
                f.write(f"[account {name}]\ntype = tunnel\n"
                        f"command = {dv.tunnel_command('alice')}\n\n")
            f.write(f"[pair p]\na = a\nb = b\nstate = {self.tmp.name}/p.db\n"
                    f"{self.pair_extra}{pair_extra}")
        os.chmod(self.cfg, 0o600)

    def ids(self, dv, mailbox):
        c = dv.client("alice")
        try:
            return {m["message_id"]: set(m["flags"]) for m in ic.fetch_all(c, mailbox)}
        finally:
            c.logout()

    def flag(self, dv, mailbox, flag):
        c = dv.client("alice")
        c.select(ic.quote(mailbox))
        self.assertEqual(c.store("1", "+FLAGS", "(%s)" % flag)[0], "OK")
        c.logout()

    def start(self, *args, env=None):
        self.w = PushWatcher(self.cfg, "--interval", "600", *args, env=env)
        first = self.w.summary(60)
        self.assertIsNotNone(first, "no first run")
        return first

    def stop(self):
        self.w.p.send_signal(signal.SIGTERM)
        code, out, err = self.w.finish()
        self.assertEqual(code, 0, err)
        return err

    def check_same(self, *mailboxes):
        for box in mailboxes:
            self.assertEqual(self.ids(self.a, box), self.ids(self.b, box), box)

    def push_both_ways(self):
        """A new message in INBOX (a->b) and in Work (b->a), and a flag change in Work,
        each start a run long before the interval."""
        self.config()
        ic.load_messages(self.a, "alice", "Work", 2)
        self.assertIn("copied a->b 2", self.start())
        # Its own writes (2 messages into b) must not wake it.
        self.assertIsNone(self.w.summary(3), "woken by its own writes")
        ic.load_messages(self.a, "alice", "INBOX", 1, start=10)
        self.assertIn("copied a->b 1, b->a 0", self.w.summary(30) or "no run")
        ic.load_messages(self.b, "alice", "Work", 1, start=20)
        self.assertIn("copied a->b 0, b->a 1", self.w.summary(30) or "no run")
        self.flag(self.b, "Work", "\\Flagged")
        self.assertIn("flag updates 1", self.w.summary(30) or "no run")
        self.assertEqual(self.stop().strip(), "")
        self.check_same("INBOX", "Work")
        self.assertEqual(len(self.ids(self.a, "Work")), 3)
        self.assertEqual(sum("\\Flagged" in f for f in self.ids(self.a, "Work").values()), 1)


class NotifyPushTest(PushBase):
    """Dovecot's default configuration: NOTIFY for every mailbox on one connection."""

    def test_changes_in_any_mailbox_wake_it_both_ways(self):
        self.push_both_ways()

    def test_other_mailbox_and_new_mailbox(self):
        self.config()
        self.start()
        ic.load_messages(self.b, "alice", "Other", 1, start=30)
        self.assertIn("b->a 1", self.w.summary(30) or "no run")
        c = self.a.client("alice")
        ic.create(c, "Fresh")
        c.logout()
        self.assertIsNotNone(self.w.summary(30), "a new mailbox did not wake it")
        self.stop()
        self.check_same("Other")
        c = self.b.client("alice")
        self.assertIn("Fresh", ic.list_mailboxes(c))
        c.logout()

    def test_a_mailbox_the_pair_excludes_does_not_wake_it(self):
        self.config("exclude = Other\n")
        self.start()
        ic.load_messages(self.a, "alice", "Other", 1, start=40)
        self.assertIsNone(self.w.summary(4), "woken by an excluded mailbox")
        ic.load_messages(self.a, "alice", "INBOX", 1, start=41)
        self.assertIn("a->b 1", self.w.summary(30) or "no run")
        self.stop()
        self.assertEqual(len(self.ids(self.b, "Other")), 0)


class IdlePushTest(PushBase):
    """NOTIFY refused (no mailbox list index): IDLE on INBOX and Work, one connection each."""
    extra_conf = NO_NOTIFY
    pair_extra = "watch-mailboxes = INBOX, Work\n"

    def test_watched_mailboxes_wake_it_both_ways(self):
        self.push_both_ways()

    def test_an_unwatched_mailbox_waits_for_the_interval(self):
        self.config()
        self.start()
        self.assertTrue(self.w.wait_idling(4), "no IDLE on INBOX and Work on both sides")
        ic.load_messages(self.a, "alice", "Other", 1, start=50)
        self.assertIsNone(self.w.summary(4), "woken by a mailbox nobody IDLEs on")
        # The next run, started by INBOX, takes Other's message along.
        ic.load_messages(self.a, "alice", "INBOX", 1, start=51)
        self.assertIn("a->b 2", self.w.summary(30) or "no run")
        self.stop()
        self.check_same("INBOX", "Other")

    def test_idle_restarted_before_the_server_limit_still_reports(self):
        # The restart (DONE, IDLE) every 25 minutes, shortened to 1 s.
        self.config()
        self.start(env={"TWINBOX_TEST_IDLE_REFRESH_MS": "1000"})
        self.assertIsNone(self.w.summary(3.5), "a restarted IDLE woke it")
        ic.load_messages(self.b, "alice", "Work", 1, start=60)
        self.assertIn("b->a 1", self.w.summary(30) or "no run")
        self.assertEqual(self.stop().strip(), "")

    def test_default_is_inbox_alone(self):
        self.pair_extra = ""
        self.config()
        self.start()
        self.assertTrue(self.w.wait_idling(2), "no IDLE on INBOX on both sides")
        self.assertEqual(self.w.imap_children("IDLE]"), 2)
        ic.load_messages(self.a, "alice", "Work", 1, start=70)
        self.assertIsNone(self.w.summary(4), "Work is not watched by default")
        ic.load_messages(self.b, "alice", "INBOX", 1, start=71)
        self.assertIn("a->b 1, b->a 1", self.w.summary(30) or "no run")
        self.stop()


class PushFailureTest(TestCase):
    """A server that goes away during the wait: the watch ends with an error naming the
    account (the daemon retries), rather than waiting out the interval."""

    def test_server_gone_during_the_wait(self):
        a, b = Dovecot(), Dovecot()
        a.start()
        b.start()
        tmp = tempfile.TemporaryDirectory()
        w = None
        try:
            cfg = os.path.join(tmp.name, "config")
            with open(cfg, "w") as f:
                for name, dv in (("a", a), ("b", b)):
                    f.write(f"[account {name}]\ntype = imap\nhost = 127.0.0.1\nport = {dv.imap_port}\n"
                            f"user = alice\npassword = secret\nstarttls = no\n"
                            f"allow-plaintext-password = yes\n\n")
                f.write(f"[pair p]\na = a\nb = b\nstate = {tmp.name}/p.db\n")
            os.chmod(cfg, 0o600)
            w = PushWatcher(cfg, "--interval", "600")
            self.assertIsNotNone(w.summary(60))
            a.stop()
            # The wait ends at once; the daemon reports the account and retries.
            line = w.stderr_line(30)
            self.assertIsNotNone(line, "nothing said about the stopped server")
            self.assertRegex(line, r"\ba\b", line)
            w.p.send_signal(signal.SIGTERM)
            code, out, err = w.finish()
            self.assertEqual(code, 0, err)
        finally:
            if w and w.p.poll() is None:
                w.p.kill()
                w.p.wait()
            stop_all(a, b)
            tmp.cleanup()


if __name__ == "__main__":
    unittest.main()
