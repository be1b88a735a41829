"""Sync benchmark: prints a table of time, round trips (turns counted by the relay) and
bytes for an initial sync, a no-op rerun and a small change, with latency added by the
relay, plus twinbox's peak RSS. Not a test: nothing is asserted.

usage: python3 bench/sync_bench.py [--messages N] [--mailboxes M] [--delay SECONDS]
                                   [--size BYTES] [--build DIR]
"""
import argparse
import imaplib
import os
import resource
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tests.fixture import imapcheck as ic  # noqa: E402
from tests.fixture.dovecot import Dovecot, stop_all  # noqa: E402
from tests.fixture.relay import Relay  # noqa: E402


def load(dv, boxes, per_box, size, seed=3, seen=True):
    """per_box messages into each of boxes (created); every other one \\Seen if seen."""
    c = imaplib.IMAP4_stream(dv.tunnel_command("alice") + " 2>/dev/null")
    n = 0
    for b in boxes:
        if b != "INBOX":
            c.create(ic.quote(b))
        for i in range(per_box):
            msg, day = ic.make_message(n, size=size, seed=seed, mailbox=b)
            ic.append(c, b, msg, flags=("\\Seen",) if seen and i % 2 else (), date=day)
            n += 1
    c.logout()
    return n


def run(twinbox, cfg):
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.monotonic()
    p = subprocess.run(["/usr/bin/time", "-f", "%M", twinbox, "-c", cfg, "sync"],
                       capture_output=True, text=True)
    dt = time.monotonic() - t0
    if p.returncode != 0:
        sys.exit(f"sync failed: {p.stderr}")
    rss_kb = int(p.stderr.strip().splitlines()[-1])
    return dt, rss_kb, p.stdout.strip()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=3000)
    ap.add_argument("--mailboxes", type=int, default=20)
    ap.add_argument("--delay", type=float, default=0.025)
    ap.add_argument("--size", type=int, default=3000)
    ap.add_argument("--build", default="build")
    a = ap.parse_args()
    twinbox = os.path.abspath(os.path.join(a.build, "twinbox"))
    A = Dovecot(users={"alice": "secret"}).start()
    B = Dovecot(users={"alice": "secret"}, separator="/").start()
    ra, rb = Relay(A.imap_port, delay=a.delay), Relay(B.imap_port, delay=a.delay)
    tmp = tempfile.TemporaryDirectory()
    try:
        boxes = ["INBOX"] + [f"Folder{i // 5}.Sub{i}" for i in range(a.mailboxes - 1)]
        t0 = time.monotonic()
        n = load(A, boxes, a.messages // len(boxes), a.size)
        print(f"loaded {n} messages of ~{a.size} bytes into {len(boxes)} mailboxes "
              f"in {time.monotonic() - t0:.1f}s; relay delay {a.delay * 1000:.0f} ms each way")
        cfg = os.path.join(tmp.name, "config")
        with open(cfg, "w") as f:
            for name, r in (("a", ra), ("b", rb)):
                f.write(f"[account {name}]\ntype = imap\nhost = 127.0.0.1\nport = {r.port}\n"
                        f"user = alice\npassword = secret\nstarttls = no\n\n")
            f.write(f"[pair p]\na = a\nb = b\nstate = {tmp.name}/p.db\n")
        os.chmod(cfg, 0o600)
        rows = []

        def step(name):
            ra.reset_counters()
            rb.reset_counters()
            dt, rss, out = run(twinbox, cfg)
            sa, sb = ra.stats(), rb.stats()
            rows.append((name, dt, sa["turns"], sb["turns"], sa["bytes_c2s"] + sa["bytes_s2c"],
                         sb["bytes_c2s"] + sb["bytes_s2c"], rss))

        step("initial sync a->b")
        step("no-op rerun")
        c = A.client("alice")
        c.select("INBOX")
        c.uid("STORE", "1:20", "+FLAGS", "(\\Flagged)")
        c.logout()
        load_one = imaplib.IMAP4_stream(B.tunnel_command("alice") + " 2>/dev/null")
        msg, day = ic.make_message(99999, seed=4)
        ic.append(load_one, "INBOX", msg, date=day)
        load_one.logout()
        step("20 flags on a, 1 new on b")
        print(f"\n{'run':28} {'time s':>8} {'turns a':>8} {'turns b':>8} {'bytes a':>10} "
              f"{'bytes b':>10} {'peak RSS MB':>12}")
        for r in rows:
            print(f"{r[0]:28} {r[1]:8.2f} {r[2]:8} {r[3]:8} {r[4]:10} {r[5]:10} "
                  f"{r[6] / 1024:12.1f}")
        print("\nturns include login (AUTHENTICATE, COMPRESS, ENABLE/ID/NAMESPACE: 3) and "
              "LOGOUT (1)")
    finally:
        ra.stop()
        rb.stop()
        stop_all(A, B)
        tmp.cleanup()


if __name__ == "__main__":
    main()
