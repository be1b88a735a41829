"""Crash safety and dropped connections: kill -9 at random moments, the relay cutting the
link mid-sync; every rerun must converge with nothing lost and nothing duplicated."""
import os
import random
import signal
import subprocess
import time

from tests.fixture import imapcheck as ic
from tests.fixture.relay import Relay
from tests.integration.common import binary
from tests.integration.test_sync import SyncBase


class CrashTest(SyncBase):
    ROUNDS = 20

    def ids(self, snap):
        return sorted(r[0] for rows in snap.values() for r in rows)

    def test_kill_9_at_random_moments(self):
        rnd = random.Random(4242)
        expected = set()
        for box in ("INBOX", "Box"):
            expected |= set(ic.load_messages(self.a, "alice", box, 30, seed=7, size=4000))
        counter = 1000
        for rnd_i in range(self.ROUNDS):
            # New mail on both sides, so every run has copies in flight to interrupt.
            for dv in (self.a, self.b):
                for _ in range(rnd.randrange(3, 12)):
                    counter += 1
                    expected |= set(ic.load_messages(dv, "alice", rnd.choice(["INBOX", "Box"]),
                                                     1, seed=8, start=counter, size=4000))
            p = subprocess.Popen([binary("twinbox"), "-c", self.cfg, "sync"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(rnd.uniform(0.0, 0.25))
            p.send_signal(signal.SIGKILL)
            p.wait(timeout=30)
            self.sync()
            snap = self.assertSame()
            ids = self.ids(snap)
            self.assertEqual(len(ids), len(set(ids)), f"round {rnd_i}: duplicates")
            self.assertEqual(set(ids), expected, f"round {rnd_i}: lost or unexpected mail")

    def test_connection_cut_mid_sync(self):
        ic.load_messages(self.a, "alice", "INBOX", 40, size=20000)
        ic.load_messages(self.b, "alice", "Other", 10, size=20000)
        relay = Relay(self.b.imap_port, cut_after=150_000, cut_direction="c2s")
        try:
            self.write_config(b_port=relay.port, compress="no")  # byte counts exact
            r = self.sync(code=5)
            lines = [l for l in r.err.splitlines() if l.strip()]
            self.assertEqual(len(lines), 1, r)
            self.assertIn("b:", lines[0])
            relay.arm_cut(10**12)  # effectively never again
            self.sync()
        finally:
            relay.stop()
        snap = self.assertSame()
        ids = self.ids(snap)
        self.assertEqual(len(ids), 50)
        self.assertEqual(len(set(ids)), 50)
