"""Comparison benchmark (issue 12): twinbox, InterIMAP and mbsync syncing the same pair of
private Dovecots, each tool through a relay (tests/fixture/relay.py) in front of each
server; prints ONE table of wall time, the tool's CPU time and peak RSS, round trips and
bytes per server, and for twinbox the issue's targets with the measured values.
Not a test: nothing is asserted. A tool that is not installed is skipped with a line
saying so (this script never installs anything).

Rows (--rows, comma separated; all but `big` by default):
  init0      initial sync at 0 ms, unlimited (twinbox's default, compress = yes and no)
  init-rtt   initial sync at --rtt ms (unlimited, but each relay holds at most --window MiB
             per direction, which with the delay caps the rate: 4 MiB by default, ~136 MB/s)
  init-rate  initial sync at --rate Mbit/s per direction and --rtt ms (default and yes)
  noop20     no-op rerun at --rtt ms, the corpus's --mailboxes folders
  incr       incremental at --rtt ms: per side 50 new, 200 flag changes, 30 expunges over 5
             folders, plus one folder created (on a) and one renamed (on b)
  noop1000   no-op rerun at --rtt ms, an account of --many-mailboxes folders
  big        --big-messages small messages in ONE mailbox, copied at 0 ms (needs --big)

Every initial sync runs into a fresh destination user with fresh tool state, from a fresh
source user (hard links to the corpus's message files). The corpus is written straight
into the source Dovecot's Maildir and indexed once before any tool runs.

usage: python3 bench/compare_bench.py [--rtt 50] [--rate 20] [--window 4] [--messages 5000]
        [--mailboxes 20] [--size 45200] [--runs 3] [--rows init0,noop20] [--quick]
        [--big [--big-messages 100000]] [--many-mailboxes 1000] [--build DIR]
"""
import argparse
import base64
import imaplib
import os
import platform
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tests.fixture import imapcheck as ic  # noqa: E402
from tests.fixture.dovecot import Dovecot, stop_all  # noqa: E402
from tests.fixture.relay import Relay  # noqa: E402

PW = "secret"
TIME = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None
ALL_ROWS = ("init0", "init-rtt", "init-rate", "noop20", "incr", "noop1000", "big")
TB, TB_YES, TB_NC = "twinbox", "twinbox compress=yes", "twinbox compress=no"
BARE = "bare client"  # bare_noop: no tool, the floor of a no-op
IMI, MBS = "interimap", "mbsync"
# twinbox configs per row (the default, compress = auto, always runs)
VARIANTS = {"init0": (TB_YES, TB_NC), "init-rtt": (TB_YES, TB_NC), "init-rate": (TB_YES,)}

# ---- corpus ---------------------------------------------------------------------------


def boxes_for(n):
    """INBOX and n-1 folders two levels deep (Folder0/Sub0 ...), '/' as the separator."""
    return ["INBOX"] + [f"Folder{i // 5}/Sub{i}" for i in range(n - 1)]


def box_dir(dv, user, box):
    """A mailbox's Maildir++ directory (Dovecot stores Folder0/Sub0 as .Folder0.Sub0)."""
    root = dv.mail_dir(user)
    return root if box == "INBOX" else os.path.join(root, "." + box.replace("/", "."))


def write_maildir(dv, user, boxes, count, size, seed):
    """count messages of ~size bytes spread over boxes as Maildir files (INTERNALDATE =
    mtime, every other one \\Seen); returns the bytes written."""
    nbytes = n = 0
    for k, b in enumerate(boxes):
        cur = os.path.join(box_dir(dv, user, b), "cur")
        for sub in ("cur", "new", "tmp"):
            os.makedirs(os.path.join(os.path.dirname(cur), sub), exist_ok=True)
        for i in range(count // len(boxes) + (1 if k < count % len(boxes) else 0)):
            msg, day = ic.make_message(n, size=size, seed=seed, mailbox=b)
            t = int(day.timestamp())
            path = os.path.join(cur, f"{t}.M{n}P1.bench,S={len(msg)}:2,{'S' if i % 2 else ''}")
            with open(path, "wb") as f:
                f.write(msg)
            os.utime(path, (t, t))
            nbytes += len(msg)
            n += 1
    chown_tree(dv, dv.home(user))
    return nbytes


def chown_tree(dv, top):
    if not dv.privileged:
        return
    for root, dirs, files in os.walk(top):
        os.lchown(root, dv.uid, dv.gid)
        for x in dirs + files:
            os.lchown(os.path.join(root, x), dv.uid, dv.gid)


def tunnel(dv, user):
    return imaplib.IMAP4_stream(dv.tunnel_command(user) + " 2>/dev/null")


def mailboxes(c):
    """Selectable mailboxes of a session, raw names."""
    typ, data = c.list('""', "*")
    out = []
    for line in data or []:
        if isinstance(line, bytes) and b"\\Noselect" not in line and \
                b"\\NonExistent" not in line:
            out.append(ic.parse_sexp([line])[2].decode())
    return out


def index_user(dv, user):
    """SELECTs and FETCHes every mailbox once, so Dovecot's index exists before a timed run
    (and every clone starts from the same index)."""
    c = tunnel(dv, user)
    for b in mailboxes(c):
        typ, data = c.select(ic.quote(b))
        if int(data[0]):
            c.fetch("1:*", "(FLAGS INTERNALDATE RFC822.SIZE)")
    c.logout()


def count_messages(dv, user):
    c = tunnel(dv, user)
    total = 0
    for b in mailboxes(c):
        typ, data = c.status(ic.quote(b), "(MESSAGES)")
        total += int(data[0].rsplit(b"MESSAGES ", 1)[1].split(b")")[0])
    c.logout()
    return total


def clone_user(dv, corpus, user):
    """A new user whose Maildir is the corpus user's: message files hard-linked (Dovecot
    never rewrites one; flag changes rename, expunges unlink), index files copied."""
    def link_or_copy(src, dst):
        if os.path.basename(os.path.dirname(src)) in ("cur", "new"):
            os.link(src, dst)
        else:
            shutil.copy2(src, dst)
    shutil.copytree(dv.home(corpus), dv.home(user), copy_function=link_or_copy,
                    symlinks=True)
    chown_tree(dv, dv.home(user))
    dv.add_user(user, PW)


# ---- tools ----------------------------------------------------------------------------


class Pair:
    """A source user, a destination user and one tool's state directory."""

    def __init__(self, bench, tool, corpus):
        self.tool, self.corpus = tool, corpus
        bench.seq += 1
        self.src, self.dst = f"s{bench.seq}", f"d{bench.seq}"
        self.dir = os.path.join(bench.tmp, f"p{bench.seq}")
        os.makedirs(self.dir)
        clone_user(bench.src, corpus, self.src)
        bench.dst.add_user(self.dst, PW)

    def drop(self, bench):
        for dv, u in ((bench.src, self.src), (bench.dst, self.dst)):
            shutil.rmtree(dv.home(u), ignore_errors=True)
        shutil.rmtree(self.dir, ignore_errors=True)


def write_private(path, text):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)


def twinbox_argv(bench, pair, pa, pb):
    comp = {TB_NC: "compress = no\n", TB_YES: "compress = yes\n"}.get(pair.tool, "")
    cfg = os.path.join(pair.dir, "twinbox.conf")
    text = "".join(f"[account {n}]\ntype = imap\nhost = 127.0.0.1\nport = {p}\nuser = {u}\n"
                   f"password = {PW}\nstarttls = no\n{comp}\n"
                   for n, p, u in (("a", pa, pair.src), ("b", pb, pair.dst)))
    write_private(cfg, text + f"[pair p]\na = a\nb = b\nstate = {pair.dir}/p.db\n")
    return [bench.twinbox, "-c", cfg, "sync"]


def interimap_argv(bench, pair, pa, pb):
    """remote = the source, local = the destination; COMPRESS on both (its default is
    remote only)."""
    cfg = os.path.join(pair.dir, "interimap.conf")
    text = f"database = {pair.dir}/interimap.db\n" + "".join(
        f"\n[{n}]\ntype = imap\nhost = 127.0.0.1\nport = {p}\nSTARTTLS = NO\n"
        f"username = {u}\npassword = {PW}\ncompress = YES\n"
        for n, p, u in (("remote", pa, pair.src), ("local", pb, pair.dst)))
    write_private(cfg, text)
    return [shutil.which("interimap"), "--config=" + cfg]


def mbsync_argv(bench, pair, pa, pb):
    cfg = os.path.join(pair.dir, "mbsyncrc")
    os.makedirs(os.path.join(pair.dir, "mbsync"), exist_ok=True)
    text = "".join(f"IMAPStore {n}\nHost 127.0.0.1\nPort {p}\nUser {u}\nPass {PW}\n"
                   f"SSLType None\n\n"
                   for n, p, u in (("a", pa, pair.src), ("b", pb, pair.dst)))
    text += ("Channel p\nFar :a:\nNear :b:\nPatterns *\nCreate Both\nExpunge Both\n"
             f"CopyArrivalDate yes\nSyncState {pair.dir}/mbsync/\n")
    write_private(cfg, text)
    return [shutil.which("mbsync"), "-c", cfg, "-a", "-q"]


ARGV = {TB: twinbox_argv, TB_YES: twinbox_argv, TB_NC: twinbox_argv, IMI: interimap_argv,
        MBS: mbsync_argv}


def run_tool(argv, env, cwd):
    """(wall s, CPU s, peak RSS MB, exit code, output) of one process.

    CPU: user+sys from os.wait4 of /usr/bin/time (its child, the tool, included; time's
    own share is ~1 ms). Peak RSS: time's %M, the tool's ru_maxrss as a child of a tiny
    process; a direct child of this Python would report at least Python's own RSS (Linux
    keeps the forking process's high-water mark across exec)."""
    rss_path = os.path.join(cwd, "rss.txt")
    cmd = ([TIME, "-f", "%M", "-o", rss_path] if TIME else []) + argv
    with open(os.path.join(cwd, "out.txt"), "w+") as out:
        t0 = time.monotonic()
        p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd,
                             stdin=subprocess.DEVNULL)
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.monotonic() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read()
    rss_kb = ru.ru_maxrss
    if TIME:
        with open(rss_path) as f:
            lines = f.read().split()
        rss_kb = int(lines[-1]) if lines and lines[-1].isdigit() else rss_kb
    return wall, ru.ru_utime + ru.ru_stime, rss_kb / 1024, p.returncode, text


def bare_session(port, user, box):
    """What a no-op cannot do with less, on one server: wait for the greeting, send the
    login, ENABLE and the listing with STATUS in one flight, read to the listing's end,
    send LOGOUT and close without waiting for it (twinbox's no-op, without the process)."""
    with socket.create_connection(("127.0.0.1", port)) as s:
        buf = b""
        while b"\r\n" not in buf:
            buf += s.recv(65536) or b"\r\n"
        sasl = base64.b64encode(f"\0{user}\0{PW}".encode()).decode()
        s.sendall(f"a AUTHENTICATE PLAIN {sasl}\r\nb ENABLE CONDSTORE QRESYNC\r\n"
                  'c LIST "" "*" RETURN (STATUS (MESSAGES UIDNEXT UIDVALIDITY '
                  "HIGHESTMODSEQ))\r\n".encode())
        buf = b""
        while not any(t in buf for t in (b"\r\nc OK", b"\r\nc NO", b"\r\nc BAD")):
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            buf += chunk
        s.sendall(b"d LOGOUT\r\n")
        box.append(b"\r\nc OK" in buf)


def bare_noop(bench, pair, rtt):
    """Wall time of bare_session on both servers at once, through fresh relays at rtt: the
    floor the servers and the link set for a no-op on this machine."""
    relays = [Relay(dv.imap_port, delay=rtt / 2000.0) for dv in (bench.src, bench.dst)]
    try:
        ok = []
        t0 = time.monotonic()
        threads = [threading.Thread(target=bare_session, args=(r.port, u, ok))
                   for r, u in zip(relays, (pair.src, pair.dst))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.monotonic() - t0
    finally:
        for r in relays:
            r.stop()
    if ok != [True, True]:
        raise SystemExit("bench: the bare no-op client did not log in and list")
    return {"wall": wall}


def measure(bench, pair, rtt, rate_mbit=0.0, quiet=False):
    """One run of pair.tool through fresh relays; a sample dict."""
    rate = rate_mbit * 1e6 / 8 if rate_mbit else None
    os.sync()
    relays = [Relay(dv.imap_port, delay=rtt / 2000.0, rate=rate,
                    window=int(bench.a.window * (1 << 20)))
              for dv in (bench.src, bench.dst)]
    try:
        argv = ARGV[pair.tool](bench, pair, relays[0].port, relays[1].port)
        env = dict(os.environ, XDG_STATE_HOME=pair.dir, XDG_DATA_HOME=pair.dir,
                   HOME=pair.dir)
        wall, cpu, rss, code, out = run_tool(argv, env, pair.dir)
        for r in relays:
            r.wait_idle(30)
        sa, sb = relays[0].stats(), relays[1].stats()
    finally:
        for r in relays:
            r.stop()
    s = {"wall": wall, "cpu": cpu, "rss": rss, "code": code,
         "turns_a": sa["turns"], "turns_b": sb["turns"],
         "bytes_a": sa["bytes_c2s"] + sa["bytes_s2c"],
         "bytes_b": sb["bytes_c2s"] + sb["bytes_s2c"],
         "busiest": max(sa["bytes_c2s"], sa["bytes_s2c"], sb["bytes_c2s"], sb["bytes_s2c"])}
    if code != 0:
        bench.note(f"{pair.tool}: exit {code}: {out.strip()[-400:]}")
    elif not quiet:
        bench.progress(f"{pair.tool}: {wall:.2f}s cpu {cpu:.2f}s rss {rss:.1f}MB "
                       f"turns {s['turns_a']}/{s['turns_b']}")
    return s


def check_equal(bench, pair, want=None):
    """Notes a pair whose two sides do not hold the same number of messages (or want)."""
    a, b = count_messages(bench.src, pair.src), count_messages(bench.dst, pair.dst)
    if a != b or (want is not None and b != want):
        bench.note(f"{pair.tool}: after sync source has {a} messages, destination {b}"
                   + (f" (corpus {want})" if want is not None else ""))


# ---- changes for the incremental row ---------------------------------------------------


def change_side(c, boxes, side, r, size):
    """Per folder: 40 flag toggles, 6 expunges, 10 new messages (scaled down for small
    folders); side 0 and 1 touch different messages."""
    for b in boxes:
        typ, data = c.select(ic.quote(b))
        n = int(data[0])
        kf, ke = min(40, n // 4), min(6, n // 8)
        if kf:
            lo = 1 + side * kf
            c.store(f"{lo}:{lo + kf - 1}", "-FLAGS.SILENT" if r % 2 else "+FLAGS.SILENT",
                    "(\\Flagged)")
        if ke:
            hi = n - side * ke
            c.store(f"{hi - ke + 1}:{hi}", "+FLAGS.SILENT", "(\\Deleted)")
            c.expunge()
        for i in range(10):
            msg, day = ic.make_message(i, size=size, seed=1000 + 10 * r + side, mailbox=b)
            ic.append(c, b, msg, date=day)


def apply_changes(bench, pair, r):
    """Changes on both sides; the rename for twinbox only (see RENAME_NOTE)."""
    boxes = bench.boxes[1:6]
    c = tunnel(bench.src, pair.src)
    change_side(c, boxes, 0, r, bench.a.size)
    c.create(ic.quote(f"Created{r}"))
    c.logout()
    c = tunnel(bench.dst, pair.dst)
    change_side(c, boxes, 1, r, bench.a.size)
    if pair.tool == TB and len(bench.boxes) > 6 + r:
        c.rename(ic.quote(bench.boxes[6 + r]), ic.quote(f"Renamed{r}"))
    c.logout()


# ---- scenarios ------------------------------------------------------------------------


class Bench:
    def __init__(self, a, tools):
        self.a, self.tools = a, tools
        self.twinbox = os.path.abspath(os.path.join(a.build, "twinbox"))
        self.seq = 0
        self.results = {}        # (tool, row) -> [samples]
        self.notes = []
        self.synced = {}         # tool -> a synced Pair of the main corpus
        self.boxes = boxes_for(a.mailboxes)
        self.tmpdir = tempfile.TemporaryDirectory(prefix="twinbox-cbench-")
        self.tmp = self.tmpdir.name
        users = {"alice": PW, "many": PW, "big": PW}
        self.src = Dovecot(users=users, separator="/")
        self.dst = Dovecot(users={"nobody0": PW}, separator="/")

    def progress(self, text):
        print("  " + text, file=sys.stderr, flush=True)

    def note(self, text):
        self.notes.append(text)
        self.progress("NOTE " + text)

    def add(self, tool, row, sample):
        self.results.setdefault((tool, row), []).append(sample)

    def initial(self, row, rtt, rate=0.0):
        tools = [t for t in self.tools if t in VARIANTS.get(row, ()) or t not in
                 (TB_YES, TB_NC)]
        # Tools take turns run by run, each run starting with the next tool: on a shared
        # machine slow spells then hit them all, and no tool always follows the same one
        # (tool after tool, the default's five runs at 0 ms took 1.61-3.40 s against
        # compress = no's 2.23-2.59; alternating the two, 1.85-3.40 against 2.10-2.53;
        # in a fixed order default, yes, no: 2.41-2.80 against 2.14-2.35).
        for r in range(self.a.runs):
            for tool in tools[r % len(tools):] + tools[:r % len(tools)]:
                pair = Pair(self, tool, "alice")
                self.add(tool, row, measure(self, pair, rtt, rate))
                check_equal(self, pair, self.a.messages)
                if r == self.a.runs - 1 and tool not in (TB_YES, TB_NC):
                    old = self.synced.get(tool)
                    if old:
                        old.drop(self)
                    self.synced[tool] = pair
                else:
                    pair.drop(self)

    def synced_pair(self, tool):
        pair = self.synced.pop(tool, None)
        if pair is None:
            pair = Pair(self, tool, "alice")
            measure(self, pair, 0.0, quiet=True)
        return pair

    def noop_and_incremental(self, rows):
        for tool in (t for t in self.tools if t not in (TB_YES, TB_NC)):
            pair = self.synced_pair(tool)
            if "noop20" in rows:
                for _ in range(self.a.runs):
                    self.add(tool, "noop20", measure(self, pair, self.a.rtt))
                    if tool == TB:
                        self.add(BARE, "noop20", bare_noop(self, pair, self.a.rtt))
            if "incr" in rows:
                for r in range(self.a.runs):
                    apply_changes(self, pair, r)
                    self.add(tool, "incr", measure(self, pair, self.a.rtt))
                    check_equal(self, pair)
            pair.drop(self)

    def noop_many(self):
        for tool in (t for t in self.tools if t not in (TB_YES, TB_NC)):
            pair = Pair(self, tool, "many")
            measure(self, pair, 0.0, quiet=True)
            for _ in range(self.a.runs):
                self.add(tool, "noop1000", measure(self, pair, self.a.rtt))
                if tool == TB:
                    self.add(BARE, "noop1000", bare_noop(self, pair, self.a.rtt))
            pair.drop(self)

    def big(self):
        for tool in (t for t in self.tools if t not in (TB_YES, TB_NC)):
            pair = Pair(self, tool, "big")
            self.add(tool, "big", measure(self, pair, 0.0))
            check_equal(self, pair, self.a.big_messages)
            pair.drop(self)


# ---- targets and the table ------------------------------------------------------------


def med(samples, key):
    return statistics.median(s[key] for s in samples)


def targets(bench, tool, row, s):
    """[(target, measured, ok)] for a twinbox row with samples s (all medians)."""
    a, res = bench.a, bench.results
    wall, rss = med(s, "wall"), med(s, "rss")
    turns = max(med(s, "turns_a"), med(s, "turns_b"))
    out = []

    def ref(tool, r):
        return med(res[(tool, r)], "wall") if (tool, r) in res else None

    def vs(text, base, factor):
        if base is None:
            return (text + " (not measured)", f"{wall:.2f} s", "-")
        return (f"{text} ({base:.2f} s)", f"{wall:.2f} s",
                "yes" if wall <= factor * base else "no")

    if row == "init-rtt" and tool in (TB_NC, TB_YES):  # latency hidden: the same config
        out.append(vs("<= 1.15 x 0 ms", ref(tool, "init0"), 1.15))
    elif tool == TB_NC:  # only the RSS target below
        pass
    elif row == "init0":  # the issue's: COMPRESS within 10% of compress = no
        out.append(vs("<= 1.10 x compress=no", ref(TB_NC, "init0"), 1.10))
    elif row == "init-rtt":
        out.append(vs("<= 1.15 x 0 ms", ref(TB, "init0"), 1.15))
    elif row == "init-rate":
        floor = med(s, "busiest") / (a.rate * 1e6 / 8) if a.rate else None
        out.append(vs("<= 1.1 x link floor", floor, 1.1))
    elif row in ("noop20", "noop1000"):
        out.append(("<= 2 turns per server", f"{med(s, 'turns_a'):g}/{med(s, 'turns_b'):g}",
                    "yes" if turns <= 2 else "no"))
        out.append(("<= 0.15 s", f"{wall:.2f} s", "yes" if wall <= 0.15 else "no"))
        if (BARE, row) in res:  # what the servers and the link leave to any client here
            out.append(("  (bare client, same flights)", f"{ref(BARE, row):.2f} s", "-"))
    elif row == "incr":
        out.append(("<= 1.0 s", f"{wall:.2f} s", "yes" if wall <= 1.0 else "no"))
        out.append(("<= 30 turns per server", f"{turns:g}", "yes" if turns <= 30 else "no"))
    elif row == "big":
        out.append(vs("<= interimap", ref(IMI, "big"), 1.0))
        per = turns / max(a.big_messages, 1)
        out.append(("< 0.02 turns per message", f"{per:.4f}", "yes" if per < 0.02 else "no"))
        out.append(("peak RSS <= 40 MB", f"{rss:.1f} MB", "yes" if rss <= 40 else "no"))
    if row.startswith("init"):
        out.append(("peak RSS <= 25 MB", f"{rss:.1f} MB", "yes" if rss <= 25 else "no"))
    return out


def scenario_name(a, row, tool):
    rtt = f"{a.rtt:g} ms"
    if a.window != 4.0:
        rtt += f" {a.window:g}MiB"
    return {"init0": "initial, 0 ms", "init-rtt": f"initial, {rtt}",
            "init-rate": f"initial, {a.rate:g} Mbit/s {rtt}",
            "noop20": f"no-op, {rtt}, {a.mailboxes} boxes",
            "noop1000": f"no-op, {rtt}, {a.many_mailboxes} boxes",
            "incr": f"incremental{'' if tool == TB else '*'}, {rtt}",
            "big": f"{a.big_messages} msgs in 1 box, 0 ms"}[row]


HEAD = (f"{'tool':20} {'scenario':28} {'n':>2} {'wall s':>7} {'CPU s':>6} {'RSS MB':>6} "
        f"{'turns a/b':>11} {'MB a/b':>13} | {'twinbox target':34} {'measured':>9} ok")


def print_table(bench, rows):
    print(HEAD)
    print("-" * len(HEAD))
    for row in rows:
        for tool in bench.tools:
            s = bench.results.get((tool, row))
            if not s:
                continue
            bad = "!" if any(x["code"] for x in s) else ""
            line = (f"{tool:20} {scenario_name(bench.a, row, tool):28} {len(s):2} "
                    f"{med(s, 'wall'):7.2f} {med(s, 'cpu'):6.2f} {med(s, 'rss'):6.1f} "
                    f"{med(s, 'turns_a'):>5g}/{med(s, 'turns_b'):<5g} "
                    f"{med(s, 'bytes_a') / 1e6:>6.1f}/{med(s, 'bytes_b') / 1e6:<6.1f}{bad}")
            tg = targets(bench, tool, row, s) if tool.startswith("twinbox") else []
            first = tg[0] if tg else ("", "", "")
            print(f"{line:{HEAD.index('|')}}| {first[0]:34} {first[1]:>9} {first[2]}")
            for t in tg[1:]:
                print(f"{'':{HEAD.index('|')}}| {t[0]:34} {t[1]:>9} {t[2]}")


FOOTNOTE = """
n: runs; every figure is the median over the runs (per column). wall: the tool's process,
  start to exit. CPU: user+sys of the tool's process alone (os.wait4 rusage; not Dovecot,
  not the relays, which run in this script's process and share the same cores). RSS: the
  tool's peak resident set (ru_maxrss of the tool process, via /usr/bin/time %M).
turns a/b: round trips counted by the relay in front of server a (source) / b
  (destination): a client chunk that follows server data, login and logout included.
MB a/b: bytes through each relay, both directions, 10^6 (after COMPRESS where used).
window: what each relay holds per direction (--window), like a TCP window: over the
  one-way delay it caps an unlimited link (4 MiB over 25 ms: 136 MB/s measured).
link floor: the busiest single direction's bytes / the rate. A '!' after MB: a run
  failed (see the notes). Targets are the issue's, checked for twinbox only.
bare client (no-op rows): this script's own minimal session on both servers at once,
  through the same relays: greeting, then login, ENABLE and LIST-STATUS in one flight,
  LOGOUT unanswered. No process start, no state: the time the servers and the link leave.
* without the folder rename: interimap and mbsync do not follow a rename made on a server
  (measured: interimap exits 1, "Mailbox ... exists. Run `interimap --target=database
  --delete ...`"; mbsync exits 1, "near side box ... cannot be opened").
The machine is shared with other jobs: figures are noisy, compare within one table."""


def machine():
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            model = next((ln.split(":", 1)[1].strip() for ln in f
                          if ln.startswith("model name")), "?")
    except OSError:
        pass
    return f"{os.cpu_count()} CPUs ({model}), {platform.system()} {platform.release()}"


def tool_versions(tools):
    out = []
    for t, argv in ((IMI, ["interimap", "--version"]), (MBS, ["mbsync", "--version"])):
        if t in tools:
            p = subprocess.run(argv, capture_output=True, text=True)
            out.append((p.stdout or p.stderr).splitlines()[0].split("/")[-1])
    return out


# ---- main -----------------------------------------------------------------------------


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rtt", type=float, default=50.0, help="ms; relays hold rtt/2 each way")
    ap.add_argument("--window", type=float, default=4.0,
                    help="MiB each relay holds per direction (a TCP window: with the delay "
                         "it caps the rate; unlimited links only)")
    ap.add_argument("--rate", type=float, default=20.0,
                    help="Mbit/s per direction for init-rate (0 = unlimited)")
    ap.add_argument("--messages", type=int, default=5000)
    ap.add_argument("--mailboxes", type=int, default=20)
    ap.add_argument("--size", type=int, default=45200, help="average message bytes")
    ap.add_argument("--many-mailboxes", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--rows", default=",".join(r for r in ALL_ROWS if r != "big"))
    ap.add_argument("--big", action="store_true", help="add the large-mailbox row")
    ap.add_argument("--big-messages", type=int, default=100000)
    ap.add_argument("--quick", action="store_true", help="a small corpus, to check it works")
    ap.add_argument("--build", default="build")
    ap.add_argument("--without", default="", help="comma-separated: interimap,mbsync")
    a = ap.parse_args()
    a.without = {t.strip() for t in a.without.split(",") if t.strip()}
    if a.quick:
        a.messages, a.size, a.many_mailboxes = 400, 20000, 100
        a.big_messages = min(a.big_messages, 2000)
    rows = [r.strip() for r in a.rows.split(",") if r.strip()]
    if a.big and "big" not in rows:
        rows.append("big")
    unknown = set(rows) - set(ALL_ROWS)
    if unknown or a.runs < 1 or a.mailboxes < 7:
        sys.exit(f"bad --rows {sorted(unknown)}, --runs or --mailboxes (>= 7)")
    return a, [r for r in ALL_ROWS if r in rows]


def pick_tools(a):
    tools = [TB, TB_YES, TB_NC]
    if not os.access(os.path.join(a.build, "twinbox"), os.X_OK):
        sys.exit(f"no twinbox in {a.build} (--build DIR)")
    for t, exe, pkg in ((IMI, "interimap", "interimap"), (MBS, "mbsync", "isync")):
        if t in a.without:
            print(f"{t}: left out (--without)")
        elif shutil.which(exe):
            tools.append(t)
        else:
            print(f"{t}: not installed ({exe} not on PATH; Debian package {pkg}): skipped")
    return tools


def load(bench, rows):
    a, t0 = bench.a, time.monotonic()
    main_corpus = set(rows) & {"init0", "init-rtt", "init-rate", "noop20", "incr"}
    nbytes = (write_maildir(bench.src, "alice", bench.boxes, a.messages, a.size, seed=21)
              if main_corpus else 0)
    if "noop1000" in rows:
        write_maildir(bench.src, "many", boxes_for(a.many_mailboxes), a.many_mailboxes,
                      400, seed=22)
    if "big" in rows:
        write_maildir(bench.src, "big", ["INBOX"], a.big_messages, 300, seed=23)
    bench.src.start()
    bench.dst.start()
    for u in ("alice", "many", "big"):
        if os.path.isdir(bench.src.mail_dir(u)):
            index_user(bench.src, u)
    print("corpus: " + (f"{a.messages} messages, {nbytes / 1e6:.1f} MB (~{a.size} bytes "
                         f"each) over {len(bench.boxes)} mailboxes" if main_corpus else "-")
          + (f"; {a.many_mailboxes} mailboxes of 1 message" if "noop1000" in rows else "")
          + (f"; {a.big_messages} messages in one mailbox" if "big" in rows else "")
          + f"; written and indexed in {time.monotonic() - t0:.0f}s", flush=True)


def main():
    a, rows = parse_args()
    print("command: " + " ".join(shlex.quote(x) for x in [sys.executable] + sys.argv))
    print("machine: " + machine())
    tools = pick_tools(a)
    bench = Bench(a, tools)
    print("tools: " + ", ".join([f"{bench.twinbox}"] + tool_versions(tools)), flush=True)
    try:
        load(bench, rows)
        for row, rtt, rate in (("init0", 0.0, 0.0), ("init-rtt", a.rtt, 0.0),
                               ("init-rate", a.rtt, a.rate)):
            if row in rows:
                bench.progress(f"row {row}")
                bench.initial(row, rtt, rate)
        if "noop20" in rows or "incr" in rows:
            bench.progress("rows noop20/incr")
            bench.noop_and_incremental(rows)
        if "noop1000" in rows:
            bench.progress("row noop1000")
            bench.noop_many()
        if "big" in rows:
            bench.progress("row big")
            bench.big()
        print()
        print_table(bench, rows)
        print(FOOTNOTE)
        for n in bench.notes:
            print("note: " + n)
    finally:
        stop_all(bench.src, bench.dst)
        bench.tmpdir.cleanup()


if __name__ == "__main__":
    main()
