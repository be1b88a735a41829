"""Throughput limits: --max-bytes-per-second / --max-messages-per-second of migrate and the
account keys of the same names, checked on a migration Dovecot -> relay -> Dovecot.

No assertion on how long anything took. The relay records when each chunk from twinbox
arrived; a token bucket of rate R and size B lets through at most B + R * W bytes in any
W seconds, so that is checked for every window, with a little slack for the time between
twinbox's write and the relay's read. Everything else is exact: exit codes, what was
copied, which commands were sent."""
import bisect
import re

from tests.fixture.relay import Relay
from tests.integration.common import twinbox
from tests.integration.test_migrate import MigrateBase

RATE = 200000
BURST = max(RATE // 4, 16384)  # the default burst, transport/ratelimit.h
SLACK = 64 * 1024              # a chunk in transit or read late by the relay
WINDOWS = (0.25, 0.5, 1.0, 2.0)


def peak(chunks, window):
    """The most bytes of [(time, nbytes)] that arrived within any `window` seconds."""
    best = total = 0
    lo = 0
    for hi, (t, n) in enumerate(chunks):
        total += n
        while chunks[lo][0] < t - window:
            total -= chunks[lo][1]
            lo += 1
        best = max(best, total)
    return best


class RateLimitTest(MigrateBase):
    def setUp(self):
        super().setUp()
        self.relay = Relay(self.dst.dv.imap_port, record="c2s", capture="c2s")

    def tearDown(self):
        try:
            self.relay.stop()
        finally:
            super().tearDown()

    def dst_url(self, query=""):
        # compress=no: the relay then sees the very bytes the limit counts.
        return (f"imap://alice@127.0.0.1:{self.relay.port}/?starttls=no&compress=no"
                f"{query}")

    def run_migrate(self, *args, dst_query="", code=0):
        r = twinbox("migrate", self.url(self.src), self.dst_url(dst_query), *args,
                    env=self.env, timeout=300)
        self.assertEqual(r.code, code, r)
        return r

    def seed_large(self, n=30, size=40000):
        self.append(self.src, "INBOX", n, 7, size=size)
        return n

    def dst_connections(self):
        """The relay's record of every connection that sent mail (APPEND literals)."""
        conns = [c for c in self.relay.recorded("c2s") if sum(n for _t, n in c) > 100000]
        self.assertTrue(conns, "the mail went through the relay")
        return conns

    def test_bytes_per_second_bound_every_window(self):
        n = self.seed_large()
        r = self.run_migrate("--max-bytes-per-second", str(RATE))
        self.assertIn(f"migrate: copied {n},", r.out)
        self.assertCopied()
        for chunks in self.dst_connections():
            self.assertGreater(sum(b for _t, b in chunks), n * 40000)
            for w in WINDOWS:
                self.assertLessEqual(peak(chunks, w), BURST + RATE * w + SLACK,
                                     f"bytes within {w} s")

    def test_account_key_and_option_override(self):
        """max-bytes-per-second = 1 on the DST URL would take a day; the option's 0 wins."""
        n = self.seed_large(n=10, size=20000)
        r = self.run_migrate("--max-bytes-per-second", "0",
                             dst_query="&max-bytes-per-second=1")
        self.assertIn(f"migrate: copied {n},", r.out)

    def test_off_by_default(self):
        """Without a limit the same migration is not paced: some half second carries more
        than the 200,000 bytes/s limit allows (loopback moves tens of MB/s)."""
        self.seed_large()
        self.run_migrate()
        self.assertTrue(any(peak(c, 0.5) > BURST + RATE * 0.5 + SLACK
                            for c in self.dst_connections()))

    def test_messages_per_second_key(self):
        """max-messages-per-second = 4 (URL key; burst max(4 / 4, 1) = 1): APPEND commands
        within any W seconds <= 1 + 4 W, one more for timing slack."""
        n = 12
        self.append(self.src, "INBOX", n, 9, size=3000)
        r = self.run_migrate(dst_query="&max-messages-per-second=4")
        self.assertIn(f"migrate: copied {n},", r.out)
        times = []
        for chunks, data in zip(self.relay.recorded("c2s"), self.relay.captured("c2s")):
            ends = []
            total = 0
            for _t, b in chunks:
                total += b
                ends.append(total)
            for m in re.finditer(rb"(?:^|\r\n)(T\d+ APPEND )", data):
                times.append(chunks[bisect.bisect_right(ends, m.start(1))][0])
        self.assertEqual(len(times), n, "one APPEND per message")
        times.sort()
        for w in WINDOWS:
            most = max(bisect.bisect_right(times, t + w) - i for i, t in enumerate(times))
            self.assertLessEqual(most, 1 + 4 * w + 1, f"APPENDs within {w} s")

    def test_bad_values_exit_2(self):
        for opt, v in (("--max-bytes-per-second", "fast"), ("--max-bytes-per-second", "-1"),
                       ("--max-bytes-per-second", "4294967297"),
                       ("--max-bytes-per-second", "1K"),
                       ("--max-messages-per-second", "100001"),
                       ("--max-messages-per-second", "")):
            r = twinbox("migrate", self.url(self.src), self.dst_url(), opt, v, env=self.env)
            self.assertEqual(r.code, 2, (opt, v, r))
            self.assertIn(f"bad value for {opt}", r.err)
        r = twinbox("migrate", self.url(self.src), self.dst_url(), "--max-bytes-per-second",
                    env=self.env)
        self.assertEqual(r.code, 2, r)
        for q in ("&max-bytes-per-second=5G", "&max-messages-per-second=x"):
            r = twinbox("migrate", self.url(self.src), self.dst_url(q), env=self.env)
            self.assertEqual(r.code, 3, (q, r))
            self.assertIn(q[1:q.index("=")], r.err)
        self.assertEqual(self.relay.stats()["connections"], 0, "nothing was started")


if __name__ == "__main__":
    import unittest
    unittest.main()
