"""Scale benchmark (issue 12): one mailbox of N small messages, synced to an empty second
account, then a no-op rerun, then a run after 10,000 flag changes. Prints, per N and run:
wall time, twinbox's CPU time (user+sys of the twinbox process alone, from os.wait4), its
peak RSS and the round trips its summary line reports. What matters is how CPU grows with
N: n log n or better grows by at most ~2.2x per doubling. Not a test: nothing is asserted.

The messages are written straight into account a's Maildir (cur/, INTERNALDATE = mtime)
before Dovecot starts, instead of APPENDed one by one: 100,000 APPENDs would take longer
than the runs measured. Dovecot indexes them on the first SELECT (inside the first run's
wall time, not in twinbox's CPU time).

Measured on a 2-core machine shared with other jobs (Dovecot 2.3.19, debugoptimized),
twinbox CPU s of the initial sync at 25k / 50k / 100k: 1.61 / 3.54 / 10.23 before issue
12's fixes (x2.2, x2.9 per doubling), 1.44 / 2.97 / 6.21 after (x2.1, x2.1). Wall time is
mostly Dovecot's and varies with the machine's load.

usage: python3 bench/scale_bench.py [--sizes 25000 50000 100000] [--build DIR]
                                    [--flag-changes 10000] [--keep] [--wrap CMD]
"""
import argparse
import os
import re
import shlex
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tests.fixture.dovecot import Dovecot, stop_all  # noqa: E402

DAY0 = 1577836800  # 2020-01-01 UTC


def message(i):
    """A small, unique message (Message-ID per i) and its INTERNALDATE."""
    t = DAY0 + i * 61
    date = time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime(t))
    body = ("From: Sender %d <s%d@example.test>\r\nTo: alice@example.test\r\n"
            "Subject: scale %d\r\nDate: %s\r\nMessage-ID: <scale.%d@twinbox.test>\r\n\r\n"
            "message %d\r\n" % (i % 7, i % 7, i, date, i, i))
    return body.encode(), t


def fill_maildir(dv, user, n):
    """n messages into user's INBOX as Maildir files, every other one \\Seen."""
    root = dv.mail_dir(user)
    for sub in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    cur = os.path.join(root, "cur")
    for i in range(n):
        data, t = message(i)
        name = "%d.M%dP1.bench,S=%d:2,%s" % (t, i, len(data), "S" if i % 2 else "")
        path = os.path.join(cur, name)
        with open(path, "wb") as f:
            f.write(data)
        os.utime(path, (t, t))
    for dirpath, dirnames, filenames in os.walk(dv.home(user)):
        for x in [dirpath] + [os.path.join(dirpath, f) for f in filenames]:
            os.chown(x, dv.uid, dv.gid)


def run_rusage(twinbox, cfg, wrap=()):
    """(wall s, CPU s, peak RSS MB, round trips) of one `twinbox sync`."""
    t0 = time.monotonic()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: output into the pipe, then exec twinbox
        os.close(r)
        os.dup2(w, 1)
        os.dup2(w, 2)
        try:
            argv = list(wrap) + [twinbox, "-c", cfg, "sync"]
            os.execvp(argv[0], argv)
        finally:
            os._exit(127)  # never back into the parent's code
    os.close(w)
    chunks = []
    while True:
        b = os.read(r, 65536)
        if not b:
            break
        chunks.append(b)
    os.close(r)
    _, status, ru = os.wait4(pid, 0)
    dt = time.monotonic() - t0
    out = b"".join(chunks).decode(errors="replace")
    rc = os.waitstatus_to_exitcode(status)
    if rc != 0:
        sys.exit("sync failed (%d):\n%s" % (rc, out[-3000:]))
    trips = re.search(r"round trips a (\d+) b (\d+)", out)
    return (dt, ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024,
            "%s/%s" % trips.groups() if trips else "-")


def flag_changes(dv, n):
    """\\Flagged onto the first n messages of a's INBOX, in one UID STORE."""
    c = dv.client("alice", timeout=600)
    c.select("INBOX")
    typ, _ = c.uid("STORE", "1:%d" % n, "+FLAGS.SILENT", "(\\Flagged)")
    c.logout()
    if typ != "OK":
        sys.exit("STORE failed")


def one_size(twinbox, n, changes, keep, wrap):
    # Indexing a million-message maildir takes Dovecot's imap process past its default
    # 256 MB address-space limit (it then closes the connection): a larger one for both.
    big = "service imap {\n  vsz_limit = 4G\n}\n" if n > 200000 else ""
    A = Dovecot(users={"alice": "secret"}, extra_conf=big)
    B = Dovecot(users={"alice": "secret"}, extra_conf=big)
    tmp = tempfile.TemporaryDirectory()
    rows = []
    try:
        t0 = time.monotonic()
        fill_maildir(A, "alice", n)
        A.start()
        B.start()
        fill = time.monotonic() - t0
        cfg = os.path.join(tmp.name, "config")
        with open(cfg, "w") as f:
            for name, dv in (("a", A), ("b", B)):
                f.write("[account %s]\ntype = imap\nhost = 127.0.0.1\nport = %d\n"
                        "user = alice\npassword = secret\nstarttls = no\n\n"
                        % (name, dv.imap_port))
            f.write("[pair p]\na = a\nb = b\nstate = %s/p.db\n" % tmp.name)
        os.chmod(cfg, 0o600)
        def w(step):
            return [a.format(n=n, run=step) for a in shlex.split(wrap)] if wrap else []
        rows.append((n, "initial a->b") + run_rusage(twinbox, cfg, w("initial")))
        rows.append((n, "no-op rerun") + run_rusage(twinbox, cfg, w("noop")))
        k = min(changes, n)
        flag_changes(A, k)
        rows.append((n, "%d flag changes" % k) + run_rusage(twinbox, cfg, w("flags")))
        print("  N=%d: maildir written in %.1fs" % (n, fill), file=sys.stderr)
    finally:
        stop_all(A, B)
        if keep:
            print("  kept %s" % tmp.name, file=sys.stderr)
        else:
            tmp.cleanup()
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[25000, 50000, 100000])
    ap.add_argument("--flag-changes", type=int, default=10000)
    ap.add_argument("--build", default="build")
    ap.add_argument("--keep", action="store_true", help="keep the state dir")
    ap.add_argument("--wrap", default="",
                    help="command prefix for each run, {n} and {run} replaced, e.g. "
                    "'perf record -g -o /tmp/perf.{n}.{run}.data --' (its CPU counts too)")
    a = ap.parse_args()
    twinbox = os.path.abspath(os.path.join(a.build, "twinbox"))
    rows = []
    for n in a.sizes:
        rows += one_size(twinbox, n, a.flag_changes, a.keep, a.wrap)
    print("\n%8s %-20s %8s %8s %12s %14s" % ("N", "run", "wall s", "CPU s", "peak RSS MB",
                                            "round trips"))
    for r in rows:
        print("%8d %-20s %8.2f %8.2f %12.1f %14s" % r)
    print("\nCPU: user+sys of the twinbox process only (the servers are not its children); "
          "round trips: a/b as the summary line reports them")


if __name__ == "__main__":
    main()
