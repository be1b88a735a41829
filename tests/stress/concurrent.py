#!/usr/bin/env python3
"""Concurrent-activity stress test: does `twinbox sync` converge while both accounts keep
changing under it?

Per run: two private Dovecots (tests/fixture/dovecot.py; a with '.' as separator, b with
'/'), the X-REPLICATE plugin loaded on both, on one side or on neither (--mode), an
initial sync, then for --duration seconds --clients imaplib clients per side, in threads,
change both accounts at --rate operations per second per side (APPEND with flags, STORE
+FLAGS / -FLAGS / FLAGS replace of system flags and keywords, UID EXPUNGE, CREATE of new
folders; half of the STOREs and expunges hit the newest messages, and some expunge the
newest message at once, as people and filters do with new mail, which is also what
twinbox has just copied) while `twinbox sync` runs back to back, reaching both servers
through a relay that adds --latency. Then the activity stops, two quiet syncs run, and
both accounts are compared with tests/fixture/imapcheck.py (every mailbox: message
identities, sizes, INTERNALDATEs and flags).

One line per run and a summary. On a divergence: the differing messages (UID, MODSEQ,
flags on both sides), the mailboxes' STATUS, the state DB rows of that mailbox (sqlite3),
and a kept directory with the -vv logs of the last syncs, the activity log, the state DB
and the Dovecot logs.

    python3 tests/stress/concurrent.py --mode both --runs 20 --seed 1
    TWINBOX_BUILD=build-stress TWINBOX_PLUGIN_DIR=build-stress/src/dovecot \
        python3 tests/stress/concurrent.py --mode all --runs 8 --keep-logs 0

$TWINBOX_BUILD (default build/) holds the twinbox binary, $TWINBOX_PLUGIN_DIR (default
$TWINBOX_BUILD/src/dovecot) the plugin. Exit status 0 when every run converged.

Importable: run_once() is one run, run_many() the loop (tests/integration/
test_concurrent.py uses them). Every wait is bounded; every process started here is
stopped by pid (the Dovecots by the fixture, twinbox by its Popen).
"""
import argparse
import collections
import datetime
import imaplib
import os
import random
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from tests.fixture import imapcheck as ic  # noqa: E402
from tests.fixture.dovecot import Dovecot, stop_all  # noqa: E402
from tests.fixture.relay import Relay  # noqa: E402

IMAP_PLUGIN = "lib95_imap_xreplicate_plugin.so"
MAIL_PLUGIN = "lib90_xreplicate_plugin.so"

# mode -> (plugin on a, plugin on b)
MODES = collections.OrderedDict([
    ("both", (True, True)),
    ("a", (True, False)),
    ("b", (False, True)),
    ("off", (False, False)),
])

SYSTEM_FLAGS = ("\\Seen", "\\Flagged", "\\Answered", "\\Draft")
KEYWORDS = ("$Label1", "$Label2", "$Label3", "$Label4", "$Label5")
BASE_BOXES = ("INBOX", "Work", "Lists")
SYNC_TIMEOUT = 180.0       # one twinbox run
JOIN_TIMEOUT = 30.0        # an activity thread after stop
KEEP_SYNC_LOGS = 12        # -vv logs of the last syncs kept per run (0: all)
MAX_CREATES = 3            # new folders per side and client per run
SAN_RE = re.compile(r"(AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|"
                    r"runtime error:)")


def build_dir():
    return os.path.abspath(os.environ.get("TWINBOX_BUILD", os.path.join(ROOT, "build")))


def default_plugin_dir():
    d = os.environ.get("TWINBOX_PLUGIN_DIR")
    if d:
        return os.path.abspath(d)
    return os.path.join(build_dir(), "src", "dovecot")


def plugin_available(pdir):
    return bool(pdir) and os.path.exists(os.path.join(pdir, IMAP_PLUGIN))


def make_dovecot(with_plugin, pdir, **kw):
    """A fixture Dovecot with the X-REPLICATE plugin, or certainly without it
    (TWINBOX_FIXTURE_XREPLICATE=1 would otherwise load it into every instance)."""
    if with_plugin:
        mail_plugins = ["notify", "xreplicate"] \
            if os.path.exists(os.path.join(pdir, MAIL_PLUGIN)) else []
        return Dovecot(plugin_dir=pdir, extra_mail_plugins=mail_plugins,
                       extra_imap_plugins=["imap_xreplicate"], **kw)
    saved = os.environ.pop("TWINBOX_FIXTURE_XREPLICATE", None)
    try:
        return Dovecot(**kw)
    finally:
        if saved is not None:
            os.environ["TWINBOX_FIXTURE_XREPLICATE"] = saved


def _now():
    return datetime.datetime.now().strftime("%H:%M:%S.%f")[:-3]


# ---- the activity ----------------------------------------------------------------------

class Activity(threading.Thread):
    """One imaplib client changing one account at about `rate` operations per second
    until stop is set. Every operation goes to self.log (wall clock, side, what)."""

    def __init__(self, side, dv, sep, rate, seed, stop, log, log_lock, client_no=0,
                 boxes=BASE_BOXES):
        super().__init__(name="activity-%s%d" % (side, client_no), daemon=True)
        self.side, self.dv, self.sep, self.rate = side, dv, sep, rate
        self.rnd = random.Random("%s/%s/%d" % (seed, side, client_no))
        # make_message's seed is a number: one series per run, side and client
        self.seed = int(seed) * 100 + (10 if side == "a" else 20) + client_no
        self.stop = stop
        self.log, self.log_lock = log, log_lock
        self.client_no = client_no
        self.c = None
        self.selected = None
        self.n_msg = 0
        self.n_create = 0
        self.ops = collections.Counter()
        self.errors = 0
        self.base_boxes = list(boxes)
        self.boxes = list(boxes)

    def note(self, text):
        with self.log_lock:
            self.log.append("%s %s%d %s" % (_now(), self.side, self.client_no, text))

    def connect(self):
        self.close()
        self.c = imaplib.IMAP4("127.0.0.1", self.dv.imap_port, timeout=20)
        self.c.login("alice", self.dv.users["alice"])
        self.c.enable("CONDSTORE")
        self.selected = None

    def close(self):
        c, self.c = self.c, None
        if c is None:
            return
        try:
            c.logout()
        except Exception:
            try:
                c.shutdown()
            except Exception:
                pass

    def refresh_boxes(self):
        """The mailboxes to work in: the chosen base ones and every new folder."""
        names = ic.list_mailboxes(self.c, selectable_only=True)
        self.boxes = [n for n in names if n in self.base_boxes or "New-" in n] \
            or list(self.base_boxes)

    def select(self, box):
        if self.selected != box:
            typ, data = self.c.select(ic.quote(box))
            if typ != "OK":
                raise RuntimeError("SELECT %s: %r" % (box, data))
            self.selected = box

    def uids(self):
        typ, data = self.c.uid("SEARCH", "ALL")
        if typ != "OK":
            raise RuntimeError("SEARCH: %r" % data)
        return [int(x) for x in (data[-1] or b"").split()]

    def pick(self, uids, n):
        """n UIDs; half the time among the newest (people act on new mail, which is also
        what twinbox has just copied)."""
        pool = uids[-4:] if self.rnd.random() < 0.5 else uids
        return sorted(self.rnd.sample(pool, min(len(pool), n)))

    def random_flags(self, lo=1, hi=3):
        pool = SYSTEM_FLAGS + KEYWORDS
        return sorted(self.rnd.sample(pool, self.rnd.randint(lo, hi)))

    def run(self):
        period = 1.0 / self.rate if self.rate > 0 else 1.0
        ops = (("append", 22), ("store", 40), ("expunge", 10), ("expunge_new", 8),
               ("create", 4), ("select", 6), ("refresh", 10))
        total = sum(w for _, w in ops)
        try:
            self.connect()
            self.refresh_boxes()
        except Exception as e:
            self.errors += 1
            self.note("connect failed: %s" % e)
        while not self.stop.is_set():
            # exponential inter-arrival around the rate, capped
            self.stop.wait(min(4 * period, self.rnd.expovariate(1.0 / period)))
            if self.stop.is_set():
                break
            r = self.rnd.uniform(0, total)
            for op, w in ops:
                r -= w
                if r <= 0:
                    break
            try:
                if self.c is None:
                    self.connect()
                getattr(self, "op_" + op)()
                self.ops[op] += 1
            except Exception as e:  # a broken connection: reconnect next time
                self.errors += 1
                self.note("%s failed: %r" % (op, e))
                self.close()
        self.close()

    def op_refresh(self):
        self.refresh_boxes()

    def op_select(self):
        self.select(self.rnd.choice(self.boxes))
        self.c.noop()

    def op_append(self):
        box = self.rnd.choice(self.boxes)
        msg, day = ic.make_message(self.n_msg, size=self.rnd.randint(300, 2500),
                                   seed=self.seed, mailbox=box)
        self.n_msg += 1
        flags = self.random_flags(0, 3)
        typ, data = self.c.append(ic.quote(box), "(" + " ".join(flags) + ")" if flags
                                  else None, ic._internaldate(day), msg)
        mid = re.search(rb"Message-ID: (<[^>]+>)", msg).group(1).decode()
        self.note("APPEND %s %s (%s) -> %s %s" % (box, mid, " ".join(flags), typ,
                                                   (data[0] or b"").decode(errors="replace")))

    def op_store(self):
        box = self.rnd.choice(self.boxes)
        self.select(box)
        uids = self.uids()
        if not uids:
            return
        pick = self.pick(uids, self.rnd.randint(1, 3))
        kind = self.rnd.choice(("+FLAGS", "+FLAGS", "-FLAGS", "-FLAGS", "FLAGS"))
        flags = self.random_flags(0 if kind == "FLAGS" else 1, 3)
        uidset = ",".join(str(u) for u in pick)
        typ, data = self.c.uid("STORE", uidset, kind, "(" + " ".join(flags) + ")")
        self.note("STORE %s %s %s (%s) -> %s %s" % (
            box, uidset, kind, " ".join(flags), typ,
            b" ".join(x if isinstance(x, bytes) else b"?" for x in data if x)[:400]
            .decode(errors="replace")))

    def op_expunge(self):
        box = self.rnd.choice(self.boxes)
        self.select(box)
        uids = self.uids()
        if len(uids) < 3:
            return
        uid = self.pick(uids, 1)[0]
        self.c.uid("STORE", str(uid), "+FLAGS.SILENT", "(\\Deleted)")
        typ, data = self.c.uid("EXPUNGE", str(uid))
        self.note("EXPUNGE %s %d -> %s" % (box, uid, typ))

    def op_expunge_new(self):
        """The newest message goes at once (a filter, or someone deleting what just came
        in): often a copy twinbox has just made."""
        box = self.rnd.choice(self.boxes)
        self.select(box)
        self.c.noop()  # see what arrived since the last command
        uids = self.uids()
        if len(uids) < 3:
            return
        uid = uids[-1]
        self.c.uid("STORE", str(uid), "+FLAGS.SILENT", "(\\Deleted)")
        typ, data = self.c.uid("EXPUNGE", str(uid))
        self.note("EXPUNGE-NEW %s %d -> %s" % (box, uid, typ))

    def op_create(self):
        if self.n_create >= MAX_CREATES:
            return self.op_append()
        self.n_create += 1
        name = "New-%s%d-%d" % (self.side, self.client_no, self.n_create)
        if self.rnd.random() < 0.4:
            name = "Work" + self.sep + name
        typ, data = self.c.create(ic.quote(name))
        self.note("CREATE %s -> %s" % (name, typ))
        if typ == "OK":
            self.boxes.append(name)


# ---- twinbox runs ------------------------------------------------------------------------

class Syncer:
    """Runs `twinbox -vv sync` and keeps the logs of the last KEEP_SYNC_LOGS runs."""

    def __init__(self, cfg, logdir, timeout=SYNC_TIMEOUT, keep=KEEP_SYNC_LOGS):
        self.cfg, self.logdir, self.timeout = cfg, logdir, timeout
        self.keep = keep  # 0: every log
        self.n = 0
        self.codes = collections.Counter()
        self.kept = collections.deque()
        self.failures = []  # (label, code, last stderr line)
        self.warnings = 0
        self.sanitizer = []  # (label, sync number, first report line)

    def sync(self, label):
        self.n += 1
        path = os.path.join(self.logdir, "sync-%03d-%s.log" % (self.n, label))
        argv = [os.path.join(build_dir(), "twinbox"), "-vv", "-c", self.cfg, "sync"]
        t0 = time.monotonic()
        with open(path, "w") as out:
            out.write("# %s %s\n# %s\n" % (_now(), label, " ".join(argv)))
            out.flush()
            p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                 stderr=subprocess.STDOUT)
            try:
                code = p.wait(self.timeout)
            except subprocess.TimeoutExpired:
                p.kill()  # by pid: our own child
                p.wait(10)
                code = "timeout"
            out.write("# %s exit %s after %.2f s\n" % (_now(), code, time.monotonic() - t0))
        self.codes[code] += 1
        if code != 0:
            self.failures.append((label, code, _last_error(path)))
        san = _sanitizer_line(path)
        if san:
            self.sanitizer.append((label, self.n, san))
        # twinbox's own lines (warnings, errors) of every run, also of the logs dropped
        warn = _twinbox_lines(path)
        if warn:
            self.warnings += len(warn)
            with open(os.path.join(self.logdir, "warnings.log"), "a") as f:
                f.writelines("sync %03d %s: %s\n" % (self.n, label, l) for l in warn)
        self.kept.append(path)
        while self.keep and len(self.kept) > self.keep:
            old = self.kept.popleft()
            try:
                os.unlink(old)
            except OSError:
                pass
        return code


def _twinbox_lines(path):
    try:
        with open(path, errors="replace") as f:
            return [l.rstrip() for l in f if l.startswith("twinbox:")]
    except OSError:
        return []


def _sanitizer_line(path):
    try:
        with open(path, errors="replace") as f:
            for line in f:
                if SAN_RE.search(line):
                    return line.rstrip()
    except OSError:
        pass
    return None


def _last_error(path):
    lines = _twinbox_lines(path)
    return lines[-1] if lines else ""


def write_config(path, a, b, state, ports=None, xreplicate=(True, True)):
    """twinbox's configuration: both accounts over plaintext IMAP on loopback, to the
    Dovecots' ports or to ports[side] (a relay)."""
    ports = ports or {}
    with open(path, "w") as f:
        for name, dv, xr in (("a", a, xreplicate[0]), ("b", b, xreplicate[1])):
            f.write("[account %s]\ntype = imap\nhost = 127.0.0.1\nport = %d\nuser = alice\n"
                    "password = %s\nstarttls = no\ncompress = yes\n%s\n"
                    % (name, ports.get(name, dv.imap_port), dv.users["alice"],
                       "" if xr else "xreplicate = no\n"))
        f.write("[pair p]\na = a\nb = b\nstate = %s\n" % state)
    os.chmod(path, 0o600)


# ---- comparing and explaining ----------------------------------------------------------

def _by_ident(rows):
    out = collections.defaultdict(list)
    for ident, size, flags, date in rows:
        out[ident].append((size, flags, date))
    return out


def diff_snapshots(sa, sb):
    """{mailbox: [text lines]} of what differs; {} when equal."""
    out = {}
    for name in sorted(set(sa) | set(sb)):
        if name not in sa or name not in sb:
            out[name] = ["mailbox only on %s" % ("a" if name in sa else "b")]
            continue
        if sa[name] == sb[name]:
            continue
        lines = []
        ia, ib = _by_ident(sa[name]), _by_ident(sb[name])
        for ident in sorted(set(ia) | set(ib)):
            va, vb = ia.get(ident, []), ib.get(ident, [])
            if sorted(va) == sorted(vb):
                continue
            lines.append("%s: a %s | b %s" % (
                ident, [" ".join(v[1]) for v in va] or "absent",
                [" ".join(v[1]) for v in vb] or "absent"))
        out[name] = lines or ["rows differ (order/size/date)"]
    return out


def _fetch_detail(dv, box_raw):
    """(status dict, {message-id: [(uid, modseq, flags)]}) of one mailbox."""
    c = dv.client("alice")
    try:
        c.enable("CONDSTORE")
        status = {}
        typ, data = c.status(ic.quote(box_raw), "(UIDVALIDITY UIDNEXT HIGHESTMODSEQ MESSAGES)")
        if typ == "OK" and data and data[0]:
            for k, v in re.findall(rb"([A-Z]+) (\d+)", data[0]):
                status[k.decode()] = int(v)
        msgs = collections.defaultdict(list)
        typ, _ = c.select(ic.quote(box_raw), readonly=True)
        if typ != "OK":
            return status, msgs
        typ, data = c.uid("FETCH", "1:*", "(UID FLAGS MODSEQ BODY.PEEK[HEADER.FIELDS "
                                           "(MESSAGE-ID)])")
        for resp in ic._responses(data or []):
            try:
                f = ic._fetch_map(resp)
            except ValueError:
                continue
            if b"UID" not in f:
                continue
            mid = None
            for k, v in f.items():
                if k.startswith(b"BODY[HEADER.FIELDS"):
                    mid = ic._message_id(bytes(v))
            modseq = f.get(b"MODSEQ")
            modseq = int(modseq[0]) if isinstance(modseq, list) and modseq else None
            flags = " ".join(sorted(bytes(x).decode() for x in f.get(b"FLAGS", [])
                                    if bytes(x).lower() != b"\\recent"))
            msgs[mid].append((int(f[b"UID"]), modseq, flags))
        return status, msgs
    finally:
        try:
            c.logout()
        except Exception:
            pass


def state_rows(db_path, canon, uids_a=(), uids_b=()):
    """Text lines: the state's mailbox row, the message rows for those UIDs, the
    X-REPLICATE numbers and the intents of one mailbox."""
    lines = []
    if not os.path.exists(db_path):
        return ["(no state database)"]
    db = sqlite3.connect("file:%s?mode=ro" % db_path, uri=True, timeout=10)
    try:
        row = db.execute("SELECT id, name, subscribed, uidvalidity_a, uidnext_a, hms_a, "
                         "uidvalidity_b, uidnext_b, hms_b FROM mailbox WHERE name=?",
                         (canon,)).fetchone()
        if not row:
            lines.append("mailbox %r: no row" % canon)
        else:
            lines.append("mailbox row: id %d name %r subscribed %d | a: uidvalidity %d "
                         "uidnext %d hms %d | b: uidvalidity %d uidnext %d hms %d" % row)
            for ua in sorted(set(uids_a)):
                for r in db.execute("SELECT uid_a, uid_b, flags FROM message WHERE "
                                    "mailbox=? AND uid_a=?", (row[0], ua)):
                    lines.append("message row (by uid a %d): uid_a %d uid_b %d base %r"
                                 % ((ua,) + r))
            for ub in sorted(set(uids_b)):
                for r in db.execute("SELECT uid_a, uid_b, flags FROM message WHERE "
                                    "mailbox=? AND uid_b=?", (row[0], ub)):
                    lines.append("message row (by uid b %d): uid_a %d uid_b %d base %r"
                                 % ((ub,) + r))
            n = db.execute("SELECT COUNT(*) FROM message WHERE mailbox=?",
                           (row[0],)).fetchone()[0]
            lines.append("message rows in mailbox: %d" % n)
        try:
            for side, hms in db.execute("SELECT side, hms FROM xrep_mailbox WHERE name=?",
                                        (canon,)):
                lines.append("xrep_mailbox: side %s hms %d" % ("ab"[side], hms))
            for k, in db.execute("SELECT key FROM meta WHERE key LIKE 'xrep%'"):
                lines.append("meta: %s present" % k)
            n = db.execute("SELECT COUNT(*) FROM intent WHERE mailbox=?", (canon,)).fetchone()
            lines.append("intents: %d" % n[0])
        except sqlite3.OperationalError:
            pass
    finally:
        db.close()
    return lines


def explain(diff, a, b, db_path, seps):
    """Lines describing every differing mailbox: messages with UID/MODSEQ/flags per
    side, STATUS, and the state's rows."""
    out = []
    for canon, lines in diff.items():
        out.append("  mailbox %s:" % canon)
        out.extend("    " + l for l in lines[:40])
        raw = {k: canon.replace("/", seps[k]) for k in "ab"}
        try:
            da = _fetch_detail(a, raw["a"]) if not lines[0].startswith("mailbox only") \
                else ({}, {})
            db_ = _fetch_detail(b, raw["b"]) if not lines[0].startswith("mailbox only") \
                else ({}, {})
        except Exception as e:
            out.append("    (detail fetch failed: %r)" % e)
            continue
        out.append("    STATUS a %s" % da[0])
        out.append("    STATUS b %s" % db_[0])
        uids = {"a": [], "b": []}
        for l in lines[:40]:
            ident = l.split(": a ", 1)[0]
            for k, d in (("a", da), ("b", db_)):
                for uid, modseq, flags in d[1].get(ident, []):
                    uids[k].append(uid)
                    out.append("    %s: %s uid %d modseq %s flags (%s)"
                               % (ident, k, uid, modseq, flags))
        out.extend("    state: " + l for l in state_rows(db_path, canon, uids["a"], uids["b"]))
    return out


# ---- one run ---------------------------------------------------------------------------

class RunResult:
    def __init__(self):
        self.converged = False
        self.diff = {}
        self.report = []
        self.syncs = 0
        self.warnings = 0
        self.sync_codes = {}
        self.sync_failures = []
        self.ops = {}
        self.op_errors = 0
        self.kept = None
        self.seconds = 0.0
        self.error = None

    def line(self):
        ops = " ".join("%s %d" % (k, sum(v.values())) for k, v in sorted(self.ops.items()))
        codes = ",".join("%s:%d" % (k, v) for k, v in sorted(self.sync_codes.items(),
                                                               key=lambda kv: str(kv[0])))
        what = "converged" if self.converged else \
            ("ERROR %s" % self.error if self.error else
             "DIVERGED in %s" % ", ".join(sorted(self.diff)) if self.diff else
             "FAILED (see below)")
        return "%s; %d syncs (exit %s, %d warning lines); ops %s; op errors %d; %.0f s%s" % (
            what, self.syncs, codes, self.warnings, ops, self.op_errors, self.seconds,
            "; kept %s" % self.kept if self.kept else "")


def _seed_accounts(a, b, seps, seed):
    """Both accounts start different: a with three mailboxes, b with its own INBOX
    messages; the initial sync merges them."""
    for i, box in enumerate(BASE_BOXES):
        ic.load_messages(a, "alice", box, 8, size=900, seed=int(seed) * 100 + 1,
                         flags=("\\Seen",) if i == 0 else ())
    ic.load_messages(b, "alice", "INBOX", 5, size=700, seed=int(seed) * 100 + 2, start=100)


def run_once(mode="both", seed=1, duration=30.0, rate=3.0, clients=1, keep_root=None,
             plugin_dir=None, latency=0.0, keep_always=False, keep_logs=KEEP_SYNC_LOGS,
             boxes=len(BASE_BOXES)):
    """One run; returns a RunResult. latency: one-way delay in seconds added between
    twinbox and both servers (a relay; the activity clients connect directly)."""
    res = RunResult()
    t_start = time.monotonic()
    pdir = plugin_dir or default_plugin_dir()
    plug = MODES[mode]
    if any(plug) and not plugin_available(pdir):
        raise RuntimeError("mode %s needs the plugin: %s not in %s" % (mode, IMAP_PLUGIN,
                                                                       pdir))
    work = tempfile.mkdtemp(prefix="twinbox-concurrent-")
    logdir = os.path.join(work, "logs")
    os.makedirs(logdir)
    cfg, state = os.path.join(work, "config"), os.path.join(work, "p.db")
    seps = {"a": ".", "b": "/"}
    a = b = None
    stop = threading.Event()
    threads = []
    relays = []
    log, log_lock = [], threading.Lock()
    keep = False
    try:
        a = make_dovecot(plug[0], pdir)
        b = make_dovecot(plug[1], pdir, separator="/")
        a.start()
        b.start()
        ports = {}
        if latency > 0:
            for side, dv in (("a", a), ("b", b)):
                relays.append(Relay(dv.imap_port, delay=latency))
                ports[side] = relays[-1].port
        write_config(cfg, a, b, state, ports)
        _seed_accounts(a, b, seps, seed)
        syncer = Syncer(cfg, logdir, keep=keep_logs)
        for label in ("initial", "initial-2"):
            code = syncer.sync(label)
            if code != 0:
                raise RuntimeError("%s sync failed: exit %s (%s)" % (
                    label, code, syncer.failures[-1][2] if syncer.failures else ""))
        for side, dv in (("a", a), ("b", b)):
            for n in range(clients):
                threads.append(Activity(side, dv, seps[side], rate / clients,
                                        seed, stop, log, log_lock, n, BASE_BOXES[:boxes]))
        for t in threads:
            t.start()
        deadline = time.monotonic() + duration
        while time.monotonic() < deadline:
            syncer.sync("busy")
        stop.set()
        for t in threads:
            t.join(JOIN_TIMEOUT)
        stuck = [t.name for t in threads if t.is_alive()]
        if stuck:
            raise RuntimeError("activity threads did not stop: %s" % stuck)
        for label in ("quiet-1", "quiet-2"):
            syncer.sync(label)
        sa = ic.snapshot(a, "alice", as_separator="/")
        sb = ic.snapshot(b, "alice", as_separator="/")
        res.diff = diff_snapshots(sa, sb)
        quiet_failed = [f for f in syncer.failures if f[0].startswith("quiet")]
        res.converged = not res.diff and not quiet_failed and not syncer.sanitizer
        if res.diff:
            res.report = explain(res.diff, a, b, state, seps)
        if quiet_failed:
            res.report.append("  a quiet sync failed: %r" % quiet_failed)
        for label, n, line in syncer.sanitizer:
            res.report.append("  sanitizer report in sync %03d (%s): %s" % (n, label, line))
        res.syncs = syncer.n
        res.warnings = syncer.warnings
        res.sync_codes = dict(syncer.codes)
        res.sync_failures = syncer.failures
        keep = not res.converged or keep_always
    except Exception as e:
        res.error = "%s: %s" % (type(e).__name__, e)
        keep = True
    finally:
        stop.set()
        for t in threads:
            t.join(JOIN_TIMEOUT)
        res.ops = {t.name: t.ops for t in threads}
        res.op_errors = sum(t.errors for t in threads)
        with open(os.path.join(logdir, "activity.log"), "w") as f:
            f.write("\n".join(log) + "\n")
        if keep:
            for name, dv in (("a", a), ("b", b)):
                for src in (dv.log_file, dv.master_log) if dv else ():
                    if os.path.exists(src):
                        shutil.copy(src, os.path.join(logdir, "dovecot-%s-%s" % (
                            name, os.path.basename(src))))
            if os.path.exists(state):
                shutil.copy(state, os.path.join(logdir, "p.db"))
            if res.report:
                with open(os.path.join(logdir, "divergence.txt"), "w") as f:
                    f.write("\n".join(res.report) + "\n")
        for r in relays:
            r.stop()
        try:
            stop_all(*[dv for dv in (a, b) if dv is not None])
        except Exception as e:
            if not res.error:
                res.error = "stopping dovecot: %s" % e
        if keep:
            dest = logdir
            if keep_root:
                os.makedirs(keep_root, exist_ok=True)
                dest = tempfile.mkdtemp(prefix="run-%s-%s-" % (mode, seed), dir=keep_root)
                shutil.rmtree(dest)
                shutil.copytree(logdir, dest)
                shutil.rmtree(work, ignore_errors=True)
            res.kept = dest
        else:
            shutil.rmtree(work, ignore_errors=True)
        res.seconds = time.monotonic() - t_start
    return res


def run_many(mode="both", runs=20, seed=1, duration=30.0, rate=3.0, clients=1,
             keep_root=None, plugin_dir=None, latency=0.0, out=print,
             stop_on_divergence=False, keep_always=False, keep_logs=KEEP_SYNC_LOGS,
             boxes=len(BASE_BOXES)):
    """The loop: one line per run, then a summary; returns the list of RunResults."""
    results = []
    for i in range(runs):
        s = seed * 1000 + i
        r = run_once(mode, s, duration, rate, clients, keep_root, plugin_dir, latency,
                     keep_always, keep_logs, boxes)
        results.append(r)
        out("run %d/%d mode=%s seed=%d: %s" % (i + 1, runs, mode, s, r.line()))
        for l in r.report:
            out(l)
        if not r.converged and stop_on_divergence:
            break
    ok = sum(1 for r in results if r.converged)
    bad = [i + 1 for i, r in enumerate(results) if not r.converged]
    out("summary mode=%s: %d/%d runs converged%s" % (
        mode, ok, len(results), "; not converged: runs %s" % bad if bad else ""))
    kept = [r.kept for r in results if r.kept]
    if kept:
        out("kept: %s" % " ".join(kept))
    return results


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mode", choices=list(MODES) + ["all"], default="both",
                    help="X-REPLICATE plugin on both sides, only a, only b, off, or all "
                         "four modes in turn (default both)")
    ap.add_argument("--runs", type=int, default=20, help="runs per mode (default 20)")
    ap.add_argument("--seed", type=int, default=1,
                    help="run i uses seed*1000+i for everything random (default 1)")
    ap.add_argument("--duration", type=float, default=40.0,
                    help="seconds of concurrent activity per run (default 40)")
    ap.add_argument("--rate", type=float, default=6.0,
                    help="operations per second per side, all its clients together "
                         "(default 6)")
    ap.add_argument("--clients", type=int, default=2,
                    help="imaplib clients per side (default 2)")
    ap.add_argument("--boxes", type=int, default=len(BASE_BOXES), choices=range(1, 4),
                    help="how many of INBOX, Work, Lists the activity uses besides the "
                         "folders it creates (default 3)")
    ap.add_argument("--keep-dir", default=None,
                    help="where the directories of runs that did not converge go "
                         "(default $TMPDIR/twinbox-concurrent-kept)")
    ap.add_argument("--latency", type=float, default=10.0,
                    help="one-way delay in ms between twinbox and the servers, 0 for none "
                         "(default 10)")
    ap.add_argument("--plugin-dir", default=None,
                    help="where lib95_imap_xreplicate_plugin.so is (default "
                         "$TWINBOX_PLUGIN_DIR, else $TWINBOX_BUILD/src/dovecot)")
    ap.add_argument("--stop", action="store_true", help="stop at the first divergence")
    ap.add_argument("--keep-logs", type=int, default=KEEP_SYNC_LOGS,
                    help="-vv logs of the last syncs kept per run, 0 for all (default %d)"
                    % KEEP_SYNC_LOGS)
    ap.add_argument("--keep-always", action="store_true",
                    help="keep every run's directory, not only those that diverged")
    o = ap.parse_args(argv)
    keep_root = o.keep_dir or os.path.join(tempfile.gettempdir(), "twinbox-concurrent-kept")
    modes = list(MODES) if o.mode == "all" else [o.mode]
    bad = 0
    for m in modes:
        rs = run_many(m, o.runs, o.seed, o.duration, o.rate, o.clients, keep_root,
                      o.plugin_dir, o.latency / 1000.0, out=lambda l: print(l, flush=True),
                      stop_on_divergence=o.stop, keep_always=o.keep_always,
                      keep_logs=o.keep_logs, boxes=o.boxes)
        bad += sum(1 for r in rs if not r.converged)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
