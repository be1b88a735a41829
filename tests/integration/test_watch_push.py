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
from tests.fixture.evil import Evil
from tests.integration.common import TestCase, twinbox
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

    def summary_with(self, needle, timeout):
        """The first summary line holding needle within timeout seconds (None if none): a
        change may take two runs when its first notification wakes the pair before the
        rest of it is written (a mailbox created, then filled)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.summary(max(0.01, deadline - time.monotonic()))
            if line is None or needle in line:
                return line
        return None

    def stderr_line(self, timeout, needle=""):
        """The next stderr line holding needle, or None after timeout seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.err_sel.select(max(0.01, deadline - time.monotonic())):
                continue
            line = self.p.stderr.readline()
            if not line:
                return None
            if needle in line:
                return line
        return None


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
        self.assertIsNotNone(self.w.summary_with("b->a 1", 30), "no run copied it")
        c = self.a.client("alice")
        ic.create(c, "Fresh")
        c.logout()
        self.assertIsNotNone(self.w.summary_with("mailboxes created 1", 30),
                             "a new mailbox did not wake it")
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


class PushFailureTest(PushBase):
    """Servers that go away or misbehave during the wait: the watch ends with an error
    naming the account (the daemon says so and retries) instead of waiting out the
    interval, and push works again afterwards. TCP accounts, a through a proxy when a
    test scripts it."""

    def config(self, a_port=None, pair_extra=""):
        with open(self.cfg, "w") as f:
            for name, dv, port in (("a", self.a, a_port), ("b", self.b, None)):
                f.write(f"[account {name}]\ntype = imap\nhost = 127.0.0.1\n"
                        f"port = {port or dv.imap_port}\nuser = alice\npassword = secret\n"
                        f"starttls = no\nallow-plaintext-password = yes\n\n")
            f.write(f"[pair p]\na = a\nb = b\nstate = {self.tmp.name}/p.db\n{pair_extra}")
        os.chmod(self.cfg, 0o600)

    def test_server_gone_during_the_wait(self):
        self.config()
        self.w = PushWatcher(self.cfg, "--interval", "600")
        self.assertIsNotNone(self.w.summary(60))
        self.a.stop()
        line = self.w.stderr_line(30)
        self.assertIsNotNone(line, "nothing said about the stopped server")
        self.assertRegex(line, r"\ba\b", line)
        self.w.p.send_signal(signal.SIGTERM)
        code, out, err = self.w.finish()
        self.assertEqual(code, 0, err)

    def through_proxy(self, *args, **rule):
        """Starts the watch with a behind a proxy whose rule `rule` answers NOTIFY SET;
        returns the rule once the first run is done."""
        ev = Evil(self.a)
        self.addCleanup(ev.stop)
        r = ev.on(r"NOTIFY SET", **rule)
        self.config(a_port=ev.port)
        self.w = PushWatcher(self.cfg, "--interval", "600", *args)
        self.assertIsNotNone(self.w.summary(60))
        self.assertTrue(ev.wait(lambda: r.matched >= 1, 30), "no NOTIFY SET")
        return r

    def test_bye_instead_of_notify_then_push_again(self):
        bye = b"* BYE not today\r\n"
        # The daemon logs a failed watch only with -v (its next run tells the rest).
        rule = self.through_proxy("-v", times=1, reply=[bye.strip(), "OK never sent"],
                                  cut=len(bye))
        line = self.w.stderr_line(30, "watch:")
        self.assertIsNotNone(line, "nothing said about the BYE")
        self.assertIn("watch: a: ", line)
        self.assertIn("not today", line)
        # The pair comes back by itself (a retried run), then NOTIFY wakes it again.
        self.assertIsNotNone(self.w.summary(30), "no run after the failed watch")
        ic.load_messages(self.a, "alice", "INBOX", 1, start=80)
        self.assertIn("a->b 1", self.w.summary(30) or "no run")
        self.assertGreaterEqual(rule.matched, 2)  # a second watch, which worked
        self.w.p.send_signal(signal.SIGTERM)
        code, out, err = self.w.finish()
        self.assertEqual(code, 0, err)

    def test_sigterm_while_a_server_does_not_answer_notify(self):
        self.through_proxy(hang=True)
        self.w.p.send_signal(signal.SIGTERM)
        # Well before the account's 60 s timeout: the stop ends the set-up too.
        code, out, err = self.w.finish(timeout=15)
        self.assertEqual(code, 0, err)

    def test_more_than_8_watched_mailboxes_is_a_config_error(self):
        self.config(pair_extra="watch-mailboxes = " + ", ".join("M%d" % i for i in range(9))
                    + "\n")
        r = twinbox("-c", self.cfg, "watch", "p", "--max-runs", "1")
        self.assertOneLineError(r, "watch-mailboxes", "more than 8")
        self.assertEqual(r.code, 3)


if __name__ == "__main__":
    unittest.main()
