"""Acceptance for the pipeline, literals, compression and fault handling, measured through
the counting relay (turns and bytes are deterministic)."""
import hashlib
import re

from tests.fixture.dovecot import Dovecot
from tests.fixture.relay import Relay
from tests.integration.common import TestCase, tb_client

PW = {"TWINBOX_PASSWORD": "secret"}


def text_message(size, subject):
    head = (f"From: a@example.org\r\nTo: b@example.org\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject}@twinbox.test>\r\n\r\n").encode()
    line = b"The quick brown fox jumps over the lazy dog; lorem ipsum dolor sit.\r\n"
    body = (line * (size // len(line) + 1))[: max(0, size - len(head))]
    return head + body


class PipelineTest(TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dv = Dovecot(users={"alice": "secret"})
        cls.dv.start()
        c = cls.dv.client("alice")
        c.create("Many")
        for i in range(200):
            c.append("Many", None, None, text_message(300, f"m{i}"))
        cls.big = text_message(1 << 20, "big")
        c.create("Big")
        c.append("Big", None, None, cls.big)
        c.append("Big", None, None, b"Subject: empty body\r\n\r\n")
        c.logout()

    @classmethod
    def tearDownClass(cls):
        cls.dv.stop()

    def url(self, port, **q):
        q.setdefault("starttls", "no")
        return f"imap://alice@127.0.0.1:{port}/?" + "&".join(f"{k}={v}" for k, v in q.items())

    def turns(self, relay, *args, **q):
        relay.reset_counters()
        r = tb_client(self.url(relay.port, **q), *args, env=PW)
        self.assertEqual(r.code, 0, r)
        return relay.stats()["turns"], r

    def test_200_pipelined_commands_take_few_turns(self):
        relay = Relay(self.dv.imap_port)
        try:
            base, _ = self.turns(relay, "noop", "0")
            n, r = self.turns(relay, "noop", "200", **{"max-inflight": "1000"})
            self.assertIn("ok 200 failed 0", r.out)
            self.assertLessEqual(n - base, 3, f"200 NOOPs cost {n - base} turns")
            n, r = self.turns(relay, "fetch-many", "Many", "200", **{"max-inflight": "1000"})
            self.assertIn("ok 200 failed 0 untagged 200", r.out)
            # SELECT is a barrier (one turn), then 200 UID FETCH in one go.
            self.assertLessEqual(n - base, 3, f"SELECT + 200 UID FETCH cost {n - base} turns")
        finally:
            relay.stop()

    def test_session_setup_rides_with_the_login(self):
        # Dovecot: AUTHENTICATE with ENABLE, ID and NAMESPACE in one flight, then LOGOUT;
        # nothing that moves mail, so no COMPRESS even with compress = yes.
        relay = Relay(self.dv.imap_port, capture="c2s")
        try:
            n, r = self.turns(relay, "noop", "0", compress="yes")
            self.assertEqual(n, 2, relay.captured("c2s"))
            sent = relay.captured("c2s")[-1]
            self.assertRegex(sent, rb"^T1 AUTHENTICATE PLAIN \S+\r\nT2 ENABLE CONDSTORE QRESYNC\r\n"
                                   rb"T3 ID .*\r\nT4 NAMESPACE\r\n")
        finally:
            relay.stop()

    def test_synchronizing_literals_without_literal_plus(self):
        dv = Dovecot(users={"alice": "secret"}, literal_plus=False)
        dv.start()
        try:
            r = tb_client(self.url(dv.imap_port), "status-literal", "INBOX", "200", env=PW)
            self.assertEqual(r.code, 0, r)
            self.assertIn("ok 200 failed 0 untagged 200", r.out)
        finally:
            dv.stop()

    def test_compression_halves_bytes(self):
        relay = Relay(self.dv.imap_port)
        try:
            sizes = {}
            for comp in ("yes", "no"):
                relay.reset_counters()
                r = tb_client(self.url(relay.port, compress=comp), "fetch", "Big", "1", "",
                              env=PW)
                self.assertEqual(r.code, 0, r)
                self.assertIn(f"size {len(self.big)} ", r.out)
                sizes[comp] = relay.stats()["bytes_s2c"]
            self.assertLess(sizes["yes"], sizes["no"] / 2, sizes)
        finally:
            relay.stop()

    def compress_sent(self, relay, *args, **q):
        """Whether a tb_client run through `relay` sent COMPRESS (the command itself is
        cleartext), and the run's server-to-client bytes."""
        relay.clear_captured()
        relay.reset_counters()
        r = tb_client(self.url(relay.port, **q), *args, env=PW)
        self.assertEqual(r.code, 0, r)
        return b"COMPRESS DEFLATE" in b"".join(relay.captured("c2s")), relay.stats()["bytes_s2c"]

    def test_compress_waits_for_work_and_auto_for_a_slow_link(self):
        fast = Relay(self.dv.imap_port, capture="c2s")
        slow = Relay(self.dv.imap_port, capture="c2s", delay=0.05)
        try:
            # Nothing that moves mail: no COMPRESS, not even with compress = yes.
            self.assertEqual(self.compress_sent(fast, "noop", "3", compress="yes")[0], False)
            # A FETCH of a message: yes compresses whatever the link.
            sent, yes_bytes = self.compress_sent(fast, "fetch", "Big", "1", "", compress="yes")
            self.assertTrue(sent)
            # auto: left out where the server answers within 20 ms (loopback: no TCP RTT).
            # Through a loopback relay only the answers' timing tells, and a loaded machine
            # can make every answer of a run slow: one run of three must see the fast link.
            runs = [self.compress_sent(fast, "fetch", "Big", "1", "", compress="auto")
                    for _ in range(3)]
            self.assertIn(False, [sent for sent, _ in runs], runs)
            self.assertGreater(max(b for _, b in runs), len(self.big))
            # Where answers take 100 ms, auto measures the link first (test_sync's
            # CompressAutoTest): one message is not enough to start COMPRESS.
            sent, slow_bytes = self.compress_sent(slow, "fetch", "Big", "1", "")
            self.assertFalse(sent, "auto is the default")
            self.assertGreater(slow_bytes, len(self.big))
            self.assertLess(yes_bytes, len(self.big) / 2)
            # no: never, even on the slow link.
            self.assertFalse(self.compress_sent(slow, "fetch", "Big", "1", "", compress="no")[0])
        finally:
            fast.stop()
            slow.stop()

    def test_50mb_and_empty_literals(self):
        c = self.dv.client("alice")
        c.create("Huge")
        huge = text_message(50 << 20, "huge")
        c.append("Huge", None, None, huge)
        c.logout()
        r = tb_client(self.url(self.dv.imap_port), "fetch", "Huge", "1", "", env=PW,
                      timeout=300)
        self.assertEqual(r.code, 0, r)
        self.assertIn(f"size {len(huge)} sha256 {hashlib.sha256(huge).hexdigest()}", r.out)
        r = tb_client(self.url(self.dv.imap_port), "fetch", "Big", "2", "TEXT", env=PW)
        self.assertEqual(r.code, 0, r)
        self.assertIn("size 0 ", r.out)

    def test_cut_mid_literal_is_a_clean_error(self):
        relay = Relay(self.dv.imap_port, cut_after=300_000, cut_direction="s2c")
        try:
            r = tb_client(self.url(relay.port, compress="no"), "fetch", "Big", "1", "", env=PW,
                          timeout=60)
        finally:
            relay.stop()
        self.assertEqual(r.code, 5, r)
        self.assertOneLineError(r, "closed")
        self.assertTrue(re.search(r"alice@127\.0\.0\.1.*: command: ", r.err), r)
