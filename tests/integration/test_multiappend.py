"""MULTIAPPEND (RFC 3502, issue 12): copies to a server that offers it go out in batches,
each message's new UID is read from the APPENDUID uid-set in order, a batch refused as a
whole is sent again one APPEND per message (so one refused message is isolated), and a
throttled batch is survived. Commands are counted through a capturing relay or the Evil
proxy; nothing here measures time."""
import re

from tests.fixture import imapcheck as ic
from tests.fixture.evil import DEFAULT_REMOVED_CAPS, Evil
from tests.fixture.relay import Relay
from tests.integration.common import twinbox
from tests.integration.test_migrate import MigrateBase, full_view

APPEND_RE = re.compile(rb"(?:^|\n)T\d+ APPEND ")


class MultiappendTest(MigrateBase):
    def fill(self, n, poison=None):
        c = self.src.client()
        try:
            for i in range(n):
                msg, day = ic.make_message(i, size=600, seed=12)
                flags = ("\\Seen",) if i % 3 == 0 else ()
                if i == poison:
                    flags += ("poison",)
                ic.append(c, "INBOX", msg, flags=flags, date=day)
        finally:
            c.logout()

    def flag(self, indexes):
        """Sets \\Flagged on the source's messages of these 0-based positions (UID order)."""
        c = self.src.client()
        try:
            c.select("INBOX")
            for i in indexes:
                c.uid("STORE", str(i + 1), "+FLAGS", "(\\Flagged)")
        finally:
            c.logout()

    def test_batches_map_every_uid_in_order(self):
        self.fill(300)
        relay = Relay(self.dst.dv.imap_port, capture="c2s")
        self.addCleanup(relay.stop)
        dst = f"imap://alice@127.0.0.1:{relay.port}/?starttls=no&compress=no"
        r = twinbox("migrate", self.url(self.src), dst, env=self.env, timeout=600)
        self.assertEqual(r.code, 0, r)
        self.assertIn("migrate: copied 300,", r.out)
        sent = b"".join(relay.captured("c2s"))
        appends = len(APPEND_RE.findall(sent))
        self.assertGreater(appends, 0)
        self.assertLessEqual(appends, 300 // 4, f"{appends} APPEND commands for 300 messages")
        self.assertCopied()
        # The state pairs each source UID with the right copy: flag changes on either side
        # of batch boundaries land on the same messages.
        self.flag([0, 1, 127, 128, 129, 200, 299])
        r = twinbox("migrate", self.url(self.src), dst, env=self.env, timeout=600)
        self.assertEqual(r.code, 0, r)
        self.assertIn("migrate: copied 0,", r.out)
        self.assertCopied()

    def test_refused_batch_is_sent_again_one_by_one(self):
        self.fill(80, poison=41)
        ev = Evil(self.dst.dv)
        self.addCleanup(ev.stop)
        refuse = ev.on(r"APPEND .*\bpoison\b", reply="NO [LIMIT] this one is refused", times=None)
        dst = f"imap://alice@127.0.0.1:{ev.port}/?starttls=no"
        r = twinbox("migrate", self.url(self.src), dst, env=self.env, timeout=600)
        self.assertEqual(r.code, 7, r)
        self.assertIn("copied 79,", r.out)
        self.assertIn("APPEND refused", r.err)
        appends = [c for c in ev.commands if c.name == "APPEND"]
        self.assertGreater(max(len(c.literal_sizes) for c in appends), 1, "batched")
        # The refusal named one message only: the last command it refused held just that one.
        self.assertEqual(len(refuse.commands[-1].literal_sizes), 1)
        sv, _ = full_view(self.src)
        dv, _ = full_view(self.dst)
        want = [m for m in sv["INBOX"] if "poison" not in m[1]]
        self.assertEqual(len(want), 79)
        self.assertEqual(dv["INBOX"], want)
        # Rerun: the refused one is recorded as skipped, nothing is copied twice.
        r = twinbox("migrate", self.url(self.src), dst, env=self.env, timeout=600)
        dv2, _ = full_view(self.dst)
        self.assertEqual(dv2["INBOX"], want)

    def test_throttled_batch_is_survived(self):
        self.fill(200)
        ev = Evil(self.dst.dv)
        self.addCleanup(ev.stop)
        ev.on(r"APPEND ", nth=2, times=1,
              reply="NO [THROTTLED] Suggested Backoff Time: 40 milliseconds")
        dst = f"imap://alice@127.0.0.1:{ev.port}/?starttls=no"
        r = twinbox("migrate", self.url(self.src), dst,
                    env=dict(self.env, TWINBOX_TEST_RETRY_SCALE="20"), timeout=600)
        self.assertEqual(r.code, 0, r)
        self.assertRegex(r.out, r"1 temporary failure survived")
        self.assertCopied()

    def test_without_multiappend_one_message_per_append(self):
        self.fill(40)
        ev = Evil(self.dst.dv, remove_caps=DEFAULT_REMOVED_CAPS + ("MULTIAPPEND",))
        self.addCleanup(ev.stop)
        dst = f"imap://alice@127.0.0.1:{ev.port}/?starttls=no"
        r = twinbox("migrate", self.url(self.src), dst, env=self.env, timeout=600)
        self.assertEqual(r.code, 0, r)
        appends = [c for c in ev.commands if c.name == "APPEND"]
        self.assertEqual(len(appends), 40)
        self.assertTrue(all(len(c.literal_sizes) == 1 for c in appends))
        self.assertCopied()

    def test_max_messages_per_second_sends_one_message_per_append(self):
        """The message rate counts APPEND commands: it keeps one message per command."""
        self.fill(12)
        ev = Evil(self.dst.dv)
        self.addCleanup(ev.stop)
        dst = f"imap://alice@127.0.0.1:{ev.port}/?starttls=no"
        r = twinbox("migrate", self.url(self.src), dst, "--max-messages-per-second", "1000",
                    env=self.env, timeout=600)
        self.assertEqual(r.code, 0, r)
        appends = [c for c in ev.commands if c.name == "APPEND"]
        self.assertEqual(len(appends), 12)
        self.assertCopied()
