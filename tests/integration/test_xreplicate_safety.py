"""X-REPLICATE cannot be turned against the other side: a mailbox the plugin cannot read is
left alone (never deleted on the other server), and an account whose position grows past the
server's argument limit keeps syncing, with server-side positions or without them.
Skips without a built plugin ($TWINBOX_PLUGIN_DIR)."""
import os
import re

from tests.fixture import imapcheck as ic
from tests.fixture.evil import Evil
from tests.integration.test_xreplicate import XrBase
from tests.plugin.common import make_maildir_folders

MANY = 2000


class UnreadableMailboxTest(XrBase):
    def box_dir(self, name):
        return os.path.join(self.a.mail_dir("alice"), "." + name)

    def test_unreadable_mailbox_is_left_alone(self):
        ic.load_messages(self.a, "alice", "INBOX", 2, size=400, seed=1)
        ic.load_messages(self.a, "alice", "Work", 3, size=400, seed=2)
        self.sync()
        self.sync()  # a position relative to the state
        ic.load_messages(self.a, "alice", "INBOX", 1, size=400, seed=1, start=10)
        os.chmod(self.box_dir("Work"), 0)
        self.addCleanup(os.chmod, self.box_dir("Work"), 0o700)
        r = self.sync(code=5)
        warn = [l for l in r.err.splitlines() if "Work" in l and "warning" in l]
        self.assertEqual(len(warn), 1, r)
        self.assertIn("left alone", warn[0])
        self.assertIn("deleted 0", r.out)
        b = self.snap(self.b)
        self.assertEqual(len(b["Work"]), 3, "nothing deleted on b")
        self.assertEqual(len(b["INBOX"]), 3, "the rest synced")
        os.chmod(self.box_dir("Work"), 0o700)
        self.sync()
        self.assertSame()


class _Many(XrBase):
    """MANY mailboxes on both sides (made on disk before any login), two of them used."""

    def setUp(self):
        super().setUp()
        names = ["F%04d" % i for i in range(MANY)]
        make_maildir_folders(self.a, "alice", names)
        make_maildir_folders(self.b, "alice", [n.replace(".", "/") for n in names])

    def three_runs(self):
        self.sync()
        ic.load_messages(self.a, "alice", "F0007", 2, size=300, seed=3)
        r2 = self.sync()
        self.assertIn("copied a->b 2", r2.out)
        ic.load_messages(self.b, "alice", "F1234", 1, size=300, seed=4)
        r3 = self.sync()
        self.assertIn("copied a->b 0, b->a 1", r3.out)
        for r in (r2, r3):
            self.assertNotIn("closed", r.err)
        snap = self.assertSame()
        self.assertEqual(len(snap), MANY + 1)
        return r2, r3


class ManyMailboxesServerPositionsTest(_Many):
    def test_second_and_third_runs_succeed(self):
        r2, r3 = self.three_runs()
        self.assertIn("X-REPLICATE a yes b yes", r3.out)
        self.assertEqual(self.fallback_lines(r3), [], r3)


class ManyMailboxesNoServerPositionsTest(_Many):
    PLUGIN_SETTINGS = {side: {"xreplicate_server_positions": "no"} for side in ("a", "b")}

    def test_second_and_third_runs_succeed(self):
        r2, r3 = self.three_runs()
        self.assertTrue(self.fallback_lines(r2), r2)


class OversizedPositionTest(XrBase):
    """Positions twinbox cannot send back are never stored; a position whose command made
    the server close the connection is forgotten, and the run goes on."""

    def proxy_a(self, **kw):
        ev = Evil(self.a, **kw)
        self.addCleanup(ev.stop)
        self.write_config(a_port=ev.port)
        return ev

    def test_oversized_position_is_never_stored(self):
        ev = self.proxy_a()
        huge = "A" * 60000

        def inflate(lines):
            return [re.sub(rb"^(\* XREPLICATE POSITION ).*$", rb"\g<1>" + huge.encode(), l)
                    for l in lines]
        ev.on(r"XREPLICATE ", transform=inflate)
        ic.load_messages(self.a, "alice", "INBOX", 2, size=300, seed=1)
        r = self.sync()
        self.assertIn("too long to use", r.err)
        ic.load_messages(self.a, "alice", "INBOX", 1, size=300, seed=1, start=5)
        r = self.sync()
        self.assertIn("copied a->b 1", r.out)
        self.assertIsNone(self.token_key("a"))
        for c in ev.commands:
            self.assertNotIn("CHANGES", c.text)
        self.assertSame()

    def test_position_closing_the_connection_is_forgotten(self):
        ic.load_messages(self.a, "alice", "INBOX", 2, size=300, seed=1)
        self.sync()
        self.sync()
        self.assertIsNotNone(self.token_key("a"))
        ev = self.proxy_a()
        ev.on(r"XREPLICATE CHANGES", disconnect="before", times=1)
        ic.load_messages(self.a, "alice", "INBOX", 1, size=300, seed=1, start=5)
        r = self.sync()
        self.assertIn("forgetting its X-REPLICATE position", r.err)
        self.assertEqual(len(self.fallback_lines(r)), 1, r)
        self.assertIn("copied a->b 1", r.out)
        self.assertSame()
        r = self.sync()
        self.assertEqual(self.fallback_lines(r), [], r)
