"""Migration benchmark: `twinbox migrate SRC DST` from one private Dovecot to another, and
`twinbox migrate --accounts FILE --jobs 4`, and prints a table of wall time, messages/s,
MB/s (message bytes, 1 MB = 10^6 bytes), twinbox's peak RSS and the round trips its summary
line reports. Not a test: nothing is asserted.

Rows:
- one account of --messages messages of ~--size bytes over --mailboxes folders, through a
  relay in front of each server, at 0 ms and at --rtt ms (the relays hold every chunk
  rtt/2 each way), then the same command again (a no-op rerun);
- --accounts FILE --jobs 4 with 4 accounts of --messages/4 messages each (the same total,
  separate source and destination users), through the relays at 0 ms; peak RSS is the one
  process's, and also shown divided by the 4 accounts. Then its no-op rerun.

Peak RSS is the twinbox process's own (threads included, nothing else): /usr/bin/time's
%M, or VmHWM sampled from /proc without it. Every run writes into fresh destination users
of one DST Dovecot.

usage: python3 bench/migrate_bench.py [--messages 5000] [--size 45200] [--mailboxes 20]
                                      [--rtt 50] [--jobs 4] [--quick] [--build DIR]
"""
import argparse
import imaplib
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


def boxes_for(n):
    """INBOX and n-1 folders two levels deep (Folder0/Sub0 ...): the '/' separator."""
    return ["INBOX"] + [f"Folder{i // 5}/Sub{i}" for i in range(n - 1)]


def load(dv, user, boxes, count, size, seed):
    """count messages of ~size bytes spread over boxes (created), every other one \\Seen,
    through a PREAUTH tunnel; returns the bytes appended."""
    c = imaplib.IMAP4_stream(dv.tunnel_command(user) + " 2>/dev/null")
    nbytes = 0
    try:
        n = 0
        for k, b in enumerate(boxes):
            if b != "INBOX":
                c.create(ic.quote(b))
            per = count // len(boxes) + (1 if k < count % len(boxes) else 0)
            for i in range(per):
                msg, day = ic.make_message(n, size=size, seed=seed, mailbox=b)
                ic.append(c, b, msg, flags=("\\Seen",) if i % 2 else (), date=day)
                nbytes += len(msg)
                n += 1
    finally:
        c.logout()
    return nbytes


def url(user, port):
    return f"imap://{user}@127.0.0.1:{port}/?starttls=no"


TIME = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None


def _vm_hwm_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _child_of(pid):
    """The child /usr/bin/time started (twinbox), or None."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            kids = f.read().split()
        return int(kids[0]) if kids else None
    except (OSError, ValueError):
        return None


class Run:
    """One twinbox process: wall time, exit code, output and its own peak RSS (KiB).

    Peak RSS: /usr/bin/time's %M (the ru_maxrss of twinbox, its child: /usr/bin/time is
    tiny, so the RSS inherited across fork/exec does not count). Not ru_maxrss of our own
    child: Linux keeps the forking process's high-water mark across exec, so a child of
    this Python process would report at least Python's RSS. Without /usr/bin/time: VmHWM
    of twinbox from /proc, sampled every 20 ms until it exits."""

    def __init__(self, args, env, tmp):
        out_path = os.path.join(tmp, "out.txt")
        err_path = os.path.join(tmp, "err.txt")
        rss_path = os.path.join(tmp, "rss.txt")
        cmd = [TIME, "-f", "%M", "-o", rss_path] + args if TIME else args
        hwm = 0
        cpu0 = time.process_time()
        with open(out_path, "w") as out, open(err_path, "w") as err:
            t0 = time.monotonic()
            p = subprocess.Popen(cmd, stdout=out, stderr=err, env=env,
                                 stdin=subprocess.DEVNULL)
            tb_pid = None if TIME else p.pid
            try:
                while p.poll() is None:
                    if tb_pid is None:
                        tb_pid = _child_of(p.pid)
                    if tb_pid is not None:
                        hwm = max(hwm, _vm_hwm_kb(tb_pid))
                    time.sleep(0.02)
            except BaseException:
                if tb_pid is None and TIME:
                    tb_pid = _child_of(p.pid)
                for pid in (tb_pid, p.pid):
                    if pid is not None:
                        try:
                            os.kill(pid, 9)
                        except OSError:
                            pass
                p.wait()
                raise
            self.wall = time.monotonic() - t0
        # This process's CPU meanwhile: almost all of it the relays' thread.
        self.relay_cpu = time.process_time() - cpu0
        self.code = p.returncode
        self.rss_kb = hwm
        if TIME:
            with open(rss_path) as f:
                lines = f.read().strip().splitlines()
            # "Command exited with non-zero status N" may come first; %M is the last line.
            self.rss_kb = int(lines[-1]) if lines and lines[-1].isdigit() else hwm
        self.hwm_kb = hwm
        with open(out_path) as f:
            self.out = f.read()
        with open(err_path) as f:
            self.err = f.read()

    def check(self, what):
        if self.code != 0:
            sys.exit(f"{what} failed ({self.code}):\n{self.out}\n{self.err}")
        return self

    def turns(self):
        """(source, destination) round trips summed over the summary lines, or None."""
        m = re.findall(r"round trips source (\d+) destination (\d+)", self.out)
        if not m:
            return None
        return sum(int(s) for s, _d in m), sum(int(d) for _s, d in m)

    def copied(self):
        m = re.findall(r"copied (\d+),", self.out)
        return sum(int(x) for x in m) if m else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=5000)
    ap.add_argument("--size", type=int, default=45200)
    ap.add_argument("--mailboxes", type=int, default=20)
    ap.add_argument("--rtt", type=float, default=50.0, help="ms; relays hold rtt/2 each way")
    ap.add_argument("--jobs", type=int, default=4, help="accounts and --jobs of the last row")
    ap.add_argument("--quick", action="store_true", help="500 messages")
    ap.add_argument("--build", default="build")
    a = ap.parse_args()
    if a.quick:
        a.messages = 500
    twinbox = os.path.abspath(os.path.join(a.build, "twinbox"))
    if not os.access(twinbox, os.X_OK):
        sys.exit(f"no twinbox at {twinbox} (--build DIR)")
    accounts = [f"u{i}" for i in range(a.jobs)]
    single = ["m0", "m_rtt"]  # destination users of the single-account rows
    src = Dovecot(users={u: PW for u in ["alice"] + accounts}, separator="/")
    dst = Dovecot(users={u: PW for u in single + accounts}, separator="/")
    relays = []
    tmp = tempfile.TemporaryDirectory(prefix="twinbox-mbench-")
    try:
        src.start()
        dst.start()
        boxes = boxes_for(a.mailboxes)
        t0 = time.monotonic()
        total = load(src, "alice", boxes, a.messages, a.size, seed=21)
        per_acct = [a.messages // a.jobs + (1 if i < a.messages % a.jobs else 0)
                    for i in range(a.jobs)]
        acct_bytes = sum(load(src, u, boxes, n, a.size, seed=30 + i)
                         for i, (u, n) in enumerate(zip(accounts, per_acct)))
        print(f"loaded {a.messages} messages ({total / 1e6:.1f} MB, ~{a.size} bytes each) into "
              f"{len(boxes)} mailboxes of alice, and {a.jobs} accounts of "
              f"{'/'.join(map(str, sorted(set(per_acct))))} ({acct_bytes / 1e6:.1f} MB), "
              f"in {time.monotonic() - t0:.1f}s; twinbox {twinbox}", flush=True)
        env = dict(os.environ, TWINBOX_PASSWORD_SRC=PW, TWINBOX_PASSWORD_DST=PW,
                   XDG_STATE_HOME=os.path.join(tmp.name, "state"))
        rows = []

        def row(name, rtt, r, nbytes, accounts=1):
            rows.append((name, rtt, r, nbytes, accounts))
            t = r.turns()
            print(f"  {name} ({rtt:g} ms): {r.wall:.1f}s, copied {r.copied()}, "
                  f"peak RSS {r.rss_kb / 1024:.1f} MB (VmHWM sampled {r.hwm_kb / 1024:.1f}), "
                  f"round trips {t}; relays' CPU {r.relay_cpu:.1f}s", flush=True)

        for dst_user, rtt in (("m0", 0.0), ("m_rtt", a.rtt)):
            delay = rtt / 2000.0
            rs, rd = Relay(src.imap_port, delay=delay), Relay(dst.imap_port, delay=delay)
            relays += [rs, rd]
            args = [twinbox, "migrate", url("alice", rs.port), url(dst_user, rd.port),
                    "--state", os.path.join(tmp.name, f"{dst_user}.db")]
            row("migrate", rtt, Run(args, env, tmp.name).check("migrate"), total)
            row("  no-op rerun", rtt, Run(args, env, tmp.name).check("rerun"), 0)
            rs.stop()
            rd.stop()
            relays = []

        rs, rd = Relay(src.imap_port), Relay(dst.imap_port)
        relays += [rs, rd]
        acct_file = os.path.join(tmp.name, "accounts.csv")
        with open(acct_file, "w") as f:
            f.write("# src,dst,src password,dst password\n")
            for u in accounts:
                f.write(f"{url(u, rs.port)},{url(u, rd.port)},env:PW_SRC,env:PW_DST\n")
        env_many = dict(env, PW_SRC=PW, PW_DST=PW)
        args = [twinbox, "migrate", "--accounts", acct_file, "--jobs", str(a.jobs)]
        name = f"--accounts ({a.jobs}) --jobs {a.jobs}"
        row(name, 0.0, Run(args, env_many, tmp.name).check("migrate --accounts"), acct_bytes,
            a.jobs)
        row("  no-op rerun", 0.0, Run(args, env_many, tmp.name).check("rerun --accounts"), 0,
            a.jobs)

        print(f"\n{'run':26} {'RTT ms':>6} {'copied':>7} {'MB':>7} {'wall s':>7} {'msg/s':>7} "
              f"{'MB/s':>6} {'peak RSS MB':>11} {'RSS/acct MB':>11} {'trips src':>9} "
              f"{'trips dst':>9}")
        for name, rtt, r, nbytes, n_acct in rows:
            copied = r.copied()
            t = r.turns()
            rate = (f"{copied / r.wall:7.0f} {nbytes / 1e6 / r.wall:6.1f}" if nbytes
                    else f"{'-':>7} {'-':>6}")
            print(f"{name:26} {rtt:6g} {copied if copied is not None else '?':>7} "
                  f"{nbytes / 1e6:7.1f} {r.wall:7.2f} {rate} {r.rss_kb / 1024:11.1f} "
                  f"{r.rss_kb / 1024 / n_acct:11.1f} "
                  f"{t[0] if t else '-':>9} {t[1] if t else '-':>9}")
        print("\nMB: message bytes copied (10^6); peak RSS: the twinbox process's "
              "(/usr/bin/time %M); "
              "round trips: twinbox's summary line(s), '-' when it prints none")
    finally:
        for r in relays:
            r.stop()
        stop_all(src, dst)
        tmp.cleanup()


if __name__ == "__main__":
    main()
