"""Rate-limit benchmark: migrates ~30 MB from one Dovecot to another through a relay in front
of the destination, without a limit and with --max-bytes-per-second, and prints a table of
the limit, the bytes twinbox wrote to DST, the time they took (from the relay's record of
the first to the last chunk of the connection) and the average rate achieved against the
limit. Not a test: nothing is asserted.

The limit counts IMAP bytes before COMPRESS (transport/ratelimit.h). Plain rows use
compress=no, so the relay sees exactly those bytes; the compress=yes row shows the wire
rate below the limit while the mail itself (the messages' bytes) moves at the limit.

usage: python3 bench/ratelimit_bench.py [--mbytes 30] [--size BYTES] [--limit B/S]
                                        [--no-compress-row] [--build DIR]
"""
import argparse
import imaplib
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tests.fixture import imapcheck as ic  # noqa: E402
from tests.fixture.dovecot import Dovecot, stop_all  # noqa: E402
from tests.fixture.relay import Relay  # noqa: E402


def load(dv, total, size):
    """Messages of ~size bytes into INBOX until `total` bytes; returns (count, bytes)."""
    c = imaplib.IMAP4_stream(dv.tunnel_command("alice") + " 2>/dev/null")
    n = nbytes = 0
    while nbytes < total:
        msg, day = ic.make_message(n, size=size, seed=11)
        ic.append(c, "INBOX", msg, date=day)
        n += 1
        nbytes += len(msg)
    c.logout()
    return n, nbytes


def clear(dv):
    c = imaplib.IMAP4_stream(dv.tunnel_command("alice") + " 2>/dev/null")
    _typ, data = c.select("INBOX")
    if int(data[0]):
        c.store("1:*", "+FLAGS.SILENT", "(\\Deleted)")
        c.expunge()
    c.logout()


def migrate(twinbox, src, relay, limit, compress, state):
    """One migration; returns (wall seconds, bytes the relay saw, span of those bytes)."""
    q = "" if compress else "&compress=no"
    args = [twinbox, "migrate", f"imap://alice@127.0.0.1:{src.imap_port}/?starttls=no",
            f"imap://alice@127.0.0.1:{relay.port}/?starttls=no{q}", "--state", state]
    if limit:
        args += ["--max-bytes-per-second", str(limit)]
    env = dict(os.environ, TWINBOX_PASSWORD_SRC="secret", TWINBOX_PASSWORD_DST="secret")
    n_before = len(relay.recorded("c2s"))
    t0 = time.monotonic()
    p = subprocess.run(args, capture_output=True, text=True, env=env)
    wall = time.monotonic() - t0
    if p.returncode != 0:
        sys.exit(f"migrate failed ({p.returncode}): {p.stderr}")
    relay.wait_idle()
    # The connection that carried the mail: the one with the most bytes.
    chunks = max(relay.recorded("c2s")[n_before:], key=lambda c: sum(b for _t, b in c))
    nbytes = sum(b for _t, b in chunks)
    return wall, nbytes, chunks[-1][0] - chunks[0][0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mbytes", type=float, default=30)
    ap.add_argument("--size", type=int, default=50000)
    ap.add_argument("--limit", type=int, default=500000)
    ap.add_argument("--no-compress-row", action="store_true")
    ap.add_argument("--build", default="build")
    a = ap.parse_args()
    twinbox = os.path.abspath(os.path.join(a.build, "twinbox"))
    src = Dovecot(users={"alice": "secret"}).start()
    dst = Dovecot(users={"alice": "secret"}).start()
    relay = Relay(dst.imap_port, record="c2s")
    tmp = tempfile.TemporaryDirectory()
    try:
        t0 = time.monotonic()
        count, mail = load(src, int(a.mbytes * 1e6), a.size)
        print(f"loaded {count} messages, {mail / 1e6:.1f} MB, in {time.monotonic() - t0:.1f}s")
        runs = [(0, False), (a.limit, False)] + ([] if a.no_compress_row else [(a.limit, True)])
        rows = []
        for i, (limit, compress) in enumerate(runs):
            clear(dst)
            wall, nbytes, span = migrate(twinbox, src, relay, limit, compress,
                                         os.path.join(tmp.name, f"run{i}.db"))
            rows.append((limit, compress, wall, nbytes, span))
        print(f"\n{'limit B/s':>10} {'compress':>8} {'wall s':>7} {'wire MB':>8} {'span s':>7} "
              f"{'wire B/s':>10} {'mail B/s':>10} {'ratio':>6}")
        for limit, compress, wall, nbytes, span in rows:
            wire = nbytes / span if span else 0
            # The mail rate: the messages' bytes over the same span (compress=no: ~wire).
            mail_rate = mail / span if span else 0
            ratio = f"{(wire if not compress else mail_rate) / limit:6.3f}" if limit else "     -"
            print(f"{limit or 'none':>10} {'yes' if compress else 'no':>8} {wall:7.1f} "
                  f"{nbytes / 1e6:8.2f} {span:7.2f} {wire:10.0f} {mail_rate:10.0f} {ratio}")
        print("\nratio: achieved / limit, of the wire bytes (compress=no) or of the mail "
              "(compress=yes); the bucket starts full, so a run exceeds the limit by its "
              "burst (max(limit/4, 16 KiB)) over the whole span")
    finally:
        relay.stop()
        stop_all(src, dst)
        tmp.cleanup()


if __name__ == "__main__":
    main()
