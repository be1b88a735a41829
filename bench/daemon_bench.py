"""`twinbox watch` daemon benchmark: N idle pairs (tunnel accounts, users u0..uN-1 on two
Dovecots with the X-REPLICATE plugin, so each pair waits on XREPLICATE WATCH) in one
process. Prints the daemon's memory (RSS, peak), threads, file descriptors and child
processes once every pair waits, its CPU time over an idle window (and per idle hour), and
the time for a change to reach the other side when every pair gets one at once (measured
with imaplib, and the daemon's own twinbox_propagation_seconds). Not a test: nothing is
asserted.

usage: python3 bench/daemon_bench.py [--pairs N ...] [--idle SECONDS] [--build DIR]
                                     [--plugin-dir DIR]
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tests.fixture import imapcheck as ic  # noqa: E402
from tests.fixture.dovecot import Dovecot, stop_all  # noqa: E402


def proc_figures(pid):
    fig = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, v = line.split(":", 1)
            if k in ("VmRSS", "VmHWM", "Threads"):
                fig[k] = int(v.split()[0])
    fig["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    fig["cpu"] = (int(rest[11]) + int(rest[12])) / tick
    children = 0
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as f:
                    children += int(f.read().rsplit(")", 1)[1].split()[1]) == pid
            except OSError:
                pass
    fig["children"] = children
    return fig


def status(twinbox, control):
    out = subprocess.run([twinbox, "status", "--json", "--control", control],
                         capture_output=True, text=True, timeout=30).stdout
    return {p["name"]: p for p in json.loads(out)["pairs"]}


def wait(pred, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if pred():
                return True
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.5)
    return False


def arrived(dv, user, mid):
    c = dv.client(user)
    try:
        return any(m["message_id"] == mid for m in ic.fetch_all(c, "INBOX"))
    finally:
        c.logout()


def scenario(n, args):
    users = {f"u{i}": "secret" for i in range(n)}
    mod = dict(users=users, plugin_dir=args.plugin_dir, extra_imap_plugins=["imap_xreplicate"])
    dv = [Dovecot(**mod).start(), Dovecot(separator="/", **mod).start()]
    tmp = tempfile.TemporaryDirectory()
    twinbox = os.path.join(args.build, "twinbox")
    control = os.path.join(tmp.name, "control")
    metrics = os.path.join(tmp.name, "metrics.prom")
    p = None
    try:
        cfg = os.path.join(tmp.name, "config")
        with open(cfg, "w") as f:
            for i in range(n):
                for k, d in zip("ab", dv):
                    f.write(f"[account p{i}-{k}]\ntype = tunnel\n"
                            f"command = {d.tunnel_command(f'u{i}')}\n\n")
                f.write(f"[pair p{i}]\na = p{i}-a\nb = p{i}-b\n"
                        f"state = {tmp.name}/p{i}.db\n\n")
        for i in range(n):
            ic.load_messages(dv[0], f"u{i}", "INBOX", 1, seed=i)
        log = open(os.path.join(tmp.name, "log"), "w")
        t0 = time.monotonic()
        p = subprocess.Popen([twinbox, "-c", cfg, "watch", "--interval", "3600",
                              "--control", control, "--metrics", metrics],
                             stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        ok = wait(lambda: all(s["state"] == "waiting" and s["runs"] >= 1
                              for s in status(twinbox, control).values())
                  and len(status(twinbox, control)) == n, 600)
        settle = time.monotonic() - t0
        if not ok:
            print(f"{n} pairs: did not settle in 600 s")
            return None
        time.sleep(2)
        before = proc_figures(p.pid)
        time.sleep(args.idle)
        after = proc_figures(p.pid)
        idle_cpu = after["cpu"] - before["cpu"]
        # A change on side a of every pair at once; time until each is on b.
        mids = {}
        t1 = time.monotonic()
        for i in range(n):
            mids[i] = ic.load_messages(dv[0], f"u{i}", "INBOX", 1, seed=1000 + i)[0]
        appended = time.monotonic() - t1
        lat = []
        left = set(range(n))
        deadline = time.monotonic() + 300
        while left and time.monotonic() < deadline:
            for i in sorted(left):
                if arrived(dv[1], f"u{i}", mids[i]):
                    lat.append(time.monotonic() - t1)
                    left.discard(i)
            time.sleep(0.1)
        prop_sum = prop_count = 0.0
        with open(metrics) as f:
            for line in f:
                if line.startswith("twinbox_propagation_seconds_sum"):
                    prop_sum += float(line.split()[-1])
                elif line.startswith("twinbox_propagation_seconds_count"):
                    prop_count += float(line.split()[-1])
        lat.sort()
        return dict(pairs=n, settle=settle, rss=after["VmRSS"] / 1024,
                    peak=after["VmHWM"] / 1024, threads=after["Threads"], fds=after["fds"],
                    children=after["children"], idle_cpu=idle_cpu,
                    cpu_hour=idle_cpu * 3600 / args.idle, appended=appended,
                    lat_med=lat[len(lat) // 2] if lat else float("nan"),
                    lat_max=lat[-1] if lat else float("nan"), missing=len(left),
                    prop_mean=prop_sum / prop_count if prop_count else float("nan"))
    finally:
        if p and p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(120)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        stop_all(*dv)
        tmp.cleanup()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, nargs="+", default=[20])
    ap.add_argument("--idle", type=float, default=30)
    ap.add_argument("--build", default=os.environ.get("TWINBOX_BUILD", "build"))
    ap.add_argument("--plugin-dir", default=os.environ.get("TWINBOX_PLUGIN_DIR"))
    args = ap.parse_args()
    if not args.plugin_dir:
        args.plugin_dir = os.path.join(args.build, "src", "dovecot")
    rows = [r for r in (scenario(n, args) for n in args.pairs) if r]
    print(f"{'pairs':>5} {'settle s':>8} {'RSS MB':>7} {'peak MB':>7} {'threads':>7} "
          f"{'fds':>5} {'procs':>5} {'idle CPU s/h':>12} {'change: all appended s':>22} "
          f"{'arrived median s':>16} {'max s':>6} {'missing':>7} {'metric mean s':>13}")
    for r in rows:
        print(f"{r['pairs']:>5} {r['settle']:>8.1f} {r['rss']:>7.1f} {r['peak']:>7.1f} "
              f"{r['threads']:>7} {r['fds']:>5} {r['children']:>5} {r['cpu_hour']:>12.1f} "
              f"{r['appended']:>22.2f} {r['lat_med']:>16.2f} {r['lat_max']:>6.2f} "
              f"{r['missing']:>7} {r['prop_mean']:>13.2f}")


if __name__ == "__main__":
    main()
