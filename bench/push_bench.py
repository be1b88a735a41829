"""Push without X-REPLICATE: N pairs over 4 plain Dovecots (no plugin) in one
`twinbox watch --interval 600` process, woken by NOTIFY (Dovecot's default) or by IDLE
(mailbox_list_index = no, so NOTIFY is refused; watch-mailboxes = INBOX, Work). Changes are
APPENDs by imaplib to INBOX or Work of a random pair's random side, one at a time; the
figure is the time from the APPEND's OK to that pair's run summary line.

    TWINBOX_BUILD=build python3 bench/push_bench.py [--pairs 20] [--changes 20]
        [--mode notify|idle|both]

Prints a table (not a test: nothing is asserted but that every change arrived).
"""
import argparse
import os
import random
import selectors
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tests.fixture import imapcheck as ic  # noqa: E402
from tests.fixture.dovecot import Dovecot, stop_all  # noqa: E402
from tests.integration.common import binary  # noqa: E402


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def children(pid):
    n = 0
    for p in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open("/proc/%s/stat" % p) as f:
                n += int(f.read().rsplit(")", 1)[1].split()[1]) == pid
        except (OSError, ValueError, IndexError):
            pass
    return n


def run(mode, n_pairs, n_changes, seed=1):
    conf = "mailbox_list_index = no\n" if mode == "idle" else ""
    users = {"u%d" % i: "secret" for i in range(n_pairs)}
    dvs = [Dovecot(users=users, extra_conf=conf) for _ in range(4)]
    tmp = tempfile.TemporaryDirectory()
    p = None
    try:
        for dv in dvs:
            dv.start()
        cfg = os.path.join(tmp.name, "config")
        sides = {}
        with open(cfg, "w") as f:
            for i in range(n_pairs):
                u = "u%d" % i
                pair = (dvs[i % 4], dvs[(i + 1) % 4])
                sides["p%d" % i] = (u, pair)
                for k, dv in zip("ab", pair):
                    f.write(f"[account {u}{k}]\ntype = tunnel\n"
                            f"command = {dv.tunnel_command(u)}\n\n")
                f.write(f"[pair p{i}]\na = {u}a\nb = {u}b\nstate = {tmp.name}/p{i}.db\n"
                        f"watch-mailboxes = INBOX, Work\n\n")
                c = pair[0].client(u)
                ic.create(c, "Work")
                c.logout()
        os.chmod(cfg, 0o600)
        env = dict(os.environ, XDG_RUNTIME_DIR=tmp.name)
        p = subprocess.Popen([binary("twinbox"), "-c", cfg, "watch", "--interval", "600"],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             stdin=subprocess.DEVNULL, text=True, env=env)
        sel = selectors.DefaultSelector()
        sel.register(p.stdout, selectors.EVENT_READ)

        def summary(pair, timeout):
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if sel.select(max(0.01, deadline - time.monotonic())):
                    line = p.stdout.readline()
                    if line.startswith(pair + ": copied"):
                        return line
            return None

        seen = set()
        deadline = time.monotonic() + 300
        while len(seen) < n_pairs and time.monotonic() < deadline:
            if sel.select(1):
                line = p.stdout.readline()
                if ": copied" in line:
                    seen.add(line.split(":")[0])
        time.sleep(3)  # every watch in place (not measured)
        conns = children(p.pid)
        rnd = random.Random(seed)
        lat = []
        for j in range(n_changes):
            pair = "p%d" % rnd.randrange(n_pairs)
            u, dvp = sides[pair]
            dv = dvp[rnd.randrange(2)]
            box = rnd.choice(["INBOX", "Work"])
            c = dv.client(u)
            msg, _ = ic.make_message(1000 + j, mailbox=box)
            c.append(box, None, None, msg)
            t0 = time.monotonic()
            line = summary(pair, 60)
            lat.append(time.monotonic() - t0)
            c.logout()
            if not line:
                raise RuntimeError("change %d in %s of %s never arrived" % (j, box, pair))
            time.sleep(0.3)
        return lat, rss_kb(p.pid), conns
    finally:
        if p:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        stop_all(*dvs)
        tmp.cleanup()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=20)
    ap.add_argument("--changes", type=int, default=20)
    ap.add_argument("--mode", default="both", choices=("notify", "idle", "both"))
    a = ap.parse_args()
    modes = ("notify", "idle") if a.mode == "both" else (a.mode,)
    print("| mode | pairs | changes | min s | median s | max s | watch RSS MB | connections |")
    print("|---|---|---|---|---|---|---|---|")
    for m in modes:
        lat, rss, conns = run(m, a.pairs, a.changes)
        print("| %s | %d | %d | %.2f | %.2f | %.2f | %.1f | %d |" % (
            m, a.pairs, len(lat), min(lat), statistics.median(lat), max(lat), rss / 1024,
            conns), flush=True)


if __name__ == "__main__":
    main()
