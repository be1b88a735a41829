"""X-REPLICATE benchmark: 100 mailboxes, then a no-op sync and syncs after changes in 3
mailboxes, with and without X-REPLICATE (plugin loaded in both Dovecots; `xreplicate = no`
for the comparison), through the counting relay with latency. Prints a table of time,
round trips and bytes per server. Not a test: nothing is asserted.

usage: python3 bench/xreplicate_bench.py [--mailboxes N] [--per-box N] [--delay SECONDS]
                                         [--build DIR]
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
from bench.sync_bench import load  # noqa: E402


def change_three(dv, boxes, round_no):
    """An append in one mailbox, a flag change in another, an expunge in a third."""
    c = imaplib.IMAP4_stream(dv.tunnel_command("alice") + " 2>/dev/null")
    msg, day = ic.make_message(100000 + round_no, seed=6)
    ic.append(c, boxes[10], msg, date=day)
    c.select(ic.quote(boxes[20]))
    c.uid("STORE", "1:*", "+FLAGS", "(\\Seen $Bench%d)" % round_no)
    c.select(ic.quote(boxes[30]))
    typ, data = c.uid("SEARCH", "ALL")
    first = data[0].split()[0].decode()
    c.uid("STORE", first, "+FLAGS", "(\\Deleted)")
    c.uid("EXPUNGE", first)
    c.logout()


def flags_three(dv, boxes, round_no):
    """Flag changes only, in 3 mailboxes: what X-REPLICATE's deltas serve without SELECT."""
    c = imaplib.IMAP4_stream(dv.tunnel_command("alice") + " 2>/dev/null")
    for b in (boxes[40], boxes[50], boxes[60]):
        c.select(ic.quote(b))
        c.uid("STORE", "1:*", "+FLAGS", "($Only%d)" % round_no)
    c.logout()


def scenario(twinbox, plugin_dir, xreplicate, a_args):
    mod = dict(plugin_dir=plugin_dir, extra_imap_plugins=["imap_xreplicate"])
    A = Dovecot(users={"alice": "secret"}, **mod).start()
    B = Dovecot(users={"alice": "secret"}, separator="/", **mod).start()
    ra, rb = Relay(A.imap_port, delay=a_args.delay), Relay(B.imap_port, delay=a_args.delay)
    tmp = tempfile.TemporaryDirectory()
    rows = []
    try:
        boxes = ["INBOX"] + [f"Box{i // 10}.Sub{i}" for i in range(a_args.mailboxes - 1)]
        load(A, boxes, a_args.per_box, 1500, seed=5, seen=False)
        cfg = os.path.join(tmp.name, "config")
        with open(cfg, "w") as f:
            for name, r in (("a", ra), ("b", rb)):
                f.write(f"[account {name}]\ntype = imap\nhost = 127.0.0.1\nport = {r.port}\n"
                        f"user = alice\npassword = secret\nstarttls = no\n"
                        f"xreplicate = {xreplicate}\n\n")
            f.write(f"[pair p]\na = a\nb = b\nstate = {tmp.name}/p.db\n")
        os.chmod(cfg, 0o600)

        def step(name):
            ra.reset_counters()
            rb.reset_counters()
            t0 = time.monotonic()
            p = subprocess.run([twinbox, "-c", cfg, "sync"], capture_output=True, text=True)
            dt = time.monotonic() - t0
            if p.returncode != 0:
                sys.exit(f"sync failed: {p.stderr}")
            sa, sb = ra.stats(), rb.stats()
            rows.append((name, dt, sa["turns"], sb["turns"], sa["bytes_c2s"] + sa["bytes_s2c"],
                         sb["bytes_c2s"] + sb["bytes_s2c"]))

        step("initial sync a->b")
        step("first rerun")
        step("no-op")
        change_three(A, boxes, 1)
        step("3 mailboxes changed on a")
        step("no-op")
        flags_three(A, boxes, 2)
        step("flags only, 3 mailboxes")
    finally:
        ra.stop()
        rb.stop()
        stop_all(A, B)
        tmp.cleanup()
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mailboxes", type=int, default=100)
    ap.add_argument("--per-box", type=int, default=5)
    ap.add_argument("--delay", type=float, default=0.025)
    ap.add_argument("--build", default="build")
    a = ap.parse_args()
    twinbox = os.path.abspath(os.path.join(a.build, "twinbox"))
    plugin_dir = os.path.abspath(os.path.join(a.build, "src", "dovecot"))
    if not os.path.exists(os.path.join(plugin_dir, "lib95_imap_xreplicate_plugin.so")):
        sys.exit(f"no X-REPLICATE plugin in {plugin_dir} (build with dovecot-dev installed)")
    print(f"{a.mailboxes} mailboxes x {a.per_box} messages; relay delay "
          f"{a.delay * 1000:.0f} ms each way\n")
    print(f"{'mode':12} {'run':26} {'time s':>7} {'turns a':>8} {'turns b':>8} "
          f"{'bytes a':>9} {'bytes b':>9}")
    for mode, xr in (("X-REPLICATE", "yes"), ("QRESYNC", "no")):
        for r in scenario(twinbox, plugin_dir, xr, a):
            print(f"{mode:12} {r[0]:26} {r[1]:7.2f} {r[2]:8} {r[3]:8} {r[4]:9} {r[5]:9}")
    print("\nturns include login (3) and LOGOUT (1). 'first rerun' also stores positions "
          "for the mailboxes the initial run wrote to.")


if __name__ == "__main__":
    main()
