"""One large mailbox: `twinbox migrate` of --messages small messages in one INBOX from one
private Dovecot to an empty account of another, directly and through a relay at --rtt ms,
for each given twinbox binary in the same run (same corpus, fresh destination users), and
prints wall time, twinbox's CPU (user + system), peak RSS and the round trips its summary
line reports. Not a test: nothing is asserted. Written for MULTIAPPEND (issue 12): with one
APPEND per message, Dovecot commits and syncs its index once per message.

The corpus is written straight into the source's Maildir before Dovecot starts (loading
100,000 messages through APPEND would take longer than the runs).

usage: python3 bench/multiappend_bench.py [--messages 10000] [--size 2260] [--rtt 0]
                                          [--runs 1] [--twinbox LABEL=PATH ...]
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tests.fixture import imapcheck as ic  # noqa: E402
from tests.fixture.dovecot import Dovecot, stop_all  # noqa: E402
from tests.fixture.relay import Relay  # noqa: E402

PW = "secret"
TIME = "/usr/bin/time"


def write_maildir(dv, user, count, size):
    """count messages straight into user's Maildir/cur (every other one \\Seen)."""
    cur = os.path.join(dv.mail_dir(user), "cur")
    for d in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(dv.mail_dir(user), d), exist_ok=True)
    total = 0
    for i in range(count):
        msg, day = ic.make_message(i, size=size, seed=7)
        name = "%d.M%dP1.bench:2,%s" % (1577836800 + i, i, "S" if i % 2 else "")
        path = os.path.join(cur, name)
        with open(path, "wb") as f:
            f.write(msg)
        t = day.timestamp()
        os.utime(path, (t, t))
        total += len(msg)
    return total


def url(user, port):
    return f"imap://{user}@127.0.0.1:{port}/?starttls=no"


def run(args, env, tmp):
    """(wall s, cpu s, peak RSS MB, output, exit code) of one twinbox process."""
    res = os.path.join(tmp, "time.txt")
    t0 = time.monotonic()
    p = subprocess.run([TIME, "-f", "%U %S %M", "-o", res] + args, env=env,
                       stdin=subprocess.DEVNULL, capture_output=True, text=True)
    wall = time.monotonic() - t0
    with open(res) as f:
        last = f.read().strip().splitlines()[-1].split()
    return wall, float(last[0]) + float(last[1]), int(last[2]) / 1024, p.stdout + p.stderr, \
        p.returncode


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=10000)
    ap.add_argument("--size", type=int, default=2260)
    ap.add_argument("--rtt", type=float, default=None, help="also through relays at this RTT")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--twinbox", action="append", default=[],
                    help="LABEL=PATH, repeatable (default: build/twinbox)")
    a = ap.parse_args()
    bins = [t.split("=", 1) if "=" in t else (t, t) for t in a.twinbox] or \
        [("build", "build/twinbox")]
    bins = [(label, os.path.abspath(path)) for label, path in bins]
    links = [("direct", None)] + ([("relay", a.rtt)] if a.rtt is not None else [])
    users = [f"d{k}" for k in range(len(bins) * len(links) * a.runs)]
    src = Dovecot(users={"alice": PW}, compress=False)
    dst = Dovecot(users={u: PW for u in users}, compress=False)
    tmp = tempfile.TemporaryDirectory(prefix="twinbox-mabench-")
    rows = []
    try:
        nbytes = write_maildir(src, "alice", a.messages, a.size)
        src._chown_tree()
        src.start()
        dst.start()
        print(f"{a.messages} messages, {nbytes / 1e6:.1f} MB in one INBOX", flush=True)
        env = dict(os.environ, TWINBOX_PASSWORD_SRC=PW, TWINBOX_PASSWORD_DST=PW,
                   XDG_STATE_HOME=os.path.join(tmp.name, "state"))
        k = 0
        for r in range(a.runs):
            for link, rtt in links:
                for label, path in bins:
                    user = users[k]
                    k += 1
                    relays = []
                    sp, dp = src.imap_port, dst.imap_port
                    if rtt is not None:
                        relays = [Relay(sp, delay=rtt / 2000.0), Relay(dp, delay=rtt / 2000.0)]
                        sp, dp = relays[0].port, relays[1].port
                    args = [path, "migrate", url("alice", sp), url(user, dp), "--state",
                            os.path.join(tmp.name, f"{user}.db")]
                    try:
                        wall, cpu, rss, out, code = run(args, env, tmp.name)
                    finally:
                        for rl in relays:
                            rl.stop()
                    m = re.findall(r"round trips source (\d+) destination (\d+)", out)
                    c = re.findall(r"copied (\d+),", out)
                    trips = (sum(int(s) for s, _ in m), sum(int(d) for _, d in m)) if m else None
                    rows.append((label, link, rtt, wall, cpu, rss, trips,
                                 sum(int(x) for x in c) if c else None, code))
                    print(f"  {label} {link}: {wall:.1f}s wall, {cpu:.1f}s CPU, "
                          f"{rss:.1f} MB, trips {trips}, exit {code}", flush=True)
                    if code != 0:
                        print(out[-2000:])
        print(f"\n{'twinbox':12} {'link':7} {'RTT':>4} {'copied':>7} {'wall s':>7} "
              f"{'CPU s':>6} {'RSS MB':>6} {'trips src':>9} {'trips dst':>9} {'dst/msg':>7}")
        for label, link, rtt, wall, cpu, rss, trips, copied, code in rows:
            per = f"{trips[1] / a.messages:7.3f}" if trips else f"{'-':>7}"
            print(f"{label:12} {link:7} {rtt if rtt is not None else '-':>4} "
                  f"{copied if copied is not None else '?':>7} {wall:7.1f} {cpu:6.1f} "
                  f"{rss:6.1f} {trips[0] if trips else '-':>9} {trips[1] if trips else '-':>9} "
                  f"{per}{'' if code == 0 else f'  exit {code}'}")
    finally:
        stop_all(src, dst)
        tmp.cleanup()


if __name__ == "__main__":
    main()
