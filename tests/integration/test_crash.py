"""Crash safety and dropped connections: kill -9 at random moments, the relay cutting the
link mid-sync; every rerun must converge with nothing lost and nothing duplicated."""
import os
import random
import re
import signal
import sqlite3
import subprocess
import time

from tests.fixture import imapcheck as ic
from tests.fixture.relay import Relay
from tests.integration.common import binary
from tests.integration.test_sync import SyncBase


def descendants(pid):
    """Every live descendant pid of pid (from /proc/*/task/*/children)."""
    out, todo = [], [pid]
    while todo and len(out) < 1000:
        p = todo.pop()
        try:
            for t in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{t}/children") as f:
                    kids = [int(x) for x in f.read().split()]
                out += kids
                todo += kids
        except OSError:
            pass
    return out


def ident_of(header_block):
    """twinbox's identity text of a HEADER.FIELDS block (store/fetch.c): each field
    unfolded and whitespace-folded, its name lower-case, the fields sorted, joined by a
    space."""
    fields = re.split(r"\r?\n(?![ \t])", header_block.decode())
    out = []
    for f in fields:
        f = " ".join(f.split())
        if not f:
            continue
        name, colon, rest = f.partition(":")
        out.append(name.lower() + colon + rest)
    return " ".join(sorted(out))


def wait_gone(pids, timeout=15.0):
    """A killed run's server sessions still complete the commands they had received (an
    APPEND can land after the next run finished: test_late_copy_of_a_crashed_run covers
    how that run's successor cleans it up). The rerun here starts once they are done."""
    deadline = time.monotonic() + timeout
    alive = list(pids)
    while time.monotonic() < deadline:
        alive = []
        for p in pids:
            try:
                with open(f"/proc/{p}/stat") as f:
                    if f.read().rsplit(")", 1)[1].split()[0] != "Z":
                        alive.append(p)
            except OSError:
                pass
        if not alive:
            return
        time.sleep(0.02)
    raise AssertionError(f"tunnel processes of the killed run still alive: {alive}")


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
            kids = descendants(p.pid)
            p.send_signal(signal.SIGKILL)
            p.wait(timeout=30)
            wait_gone(kids)
            self.sync()
            snap = self.assertSame()
            ids = self.ids(snap)
            self.assertEqual(len(ids), len(set(ids)), f"round {rnd_i}: duplicates")
            self.assertEqual(set(ids), expected, f"round {rnd_i}: lost or unexpected mail")

    def test_late_copy_of_a_crashed_run(self):
        """A crashed run's APPEND that the server completed after the next run had copied
        the original again: the run after that finds the copy through the crashed run's
        intent and expunges it (deterministic replay of the race)."""
        ids = ic.load_messages(self.a, "alice", "INBOX", 3, seed=11)
        self.sync()
        c = self.a.client("alice")
        c.select("INBOX", readonly=True)
        typ, data = c.uid("FETCH", "1", "(RFC822.SIZE INTERNALDATE BODY.PEEK[] "
                          "BODY.PEEK[HEADER.FIELDS (MESSAGE-ID DATE FROM TO SUBJECT)])")
        c.logout()
        full = hdr = None
        for part in data:
            if isinstance(part, tuple) and b"HEADER.FIELDS" in part[0]:
                hdr = part[1]
            elif isinstance(part, tuple):
                full = part[1]
        first = [m for m in ic.fetch_all(self.a.client("alice"), "INBOX")][0]
        # The late copy lands on b, and the state holds the dead run's intent for it.
        ic.append(self.b.client("alice"), "INBOX", full, date=first["internaldate"])
        db = sqlite3.connect(self.state)
        db.execute("INSERT INTO intent (mailbox, run, side, ident, size, internaldate, created)"
                   " VALUES ('INBOX', 'crashed-run', 1, ?, ?, ?, strftime('%s','now'))",
                   (ident_of(hdr), first["size"], first["internaldate"]))
        db.commit()
        db.close()
        r = self.sync()
        self.assertIn("late copies", r.err)
        snap = self.assertSame()
        self.assertEqual(sorted(x[0] for x in snap["INBOX"]), sorted(ids))
        # Without the intent the same copy is a new message, copied to a (control).
        ic.append(self.b.client("alice"), "INBOX", full, date=first["internaldate"])
        self.sync()
        self.assertEqual(len(self.snap(self.a)["INBOX"]), 4)

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
