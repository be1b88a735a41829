"""`twinbox watch` as a daemon: many pairs in one process, each woken by XREPLICATE WATCH;
SIGHUP adding and removing pairs without touching the others' connections; `twinbox status
--json` and the metrics file; a server stopped and started again; a parked pair; SIGTERM.
Everything the daemon did is checked with imaplib; no timing is asserted (the waits are
generous deadlines)."""
import json
import os
import re
import signal
import subprocess
import tempfile
import time
import unittest

from tests.fixture import imapcheck as ic
from tests.fixture.dovecot import Dovecot, stop_all
from tests.integration.common import SAN_RE, TestCase, binary, twinbox
from tests.plugin.common import plugin_dir

USERS = [f"u{i}" for i in range(6)]


def controlling_tty():
    """In the child: stdin (a pty) becomes the controlling terminal, /dev/tty."""
    import fcntl
    import termios
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class Daemon:
    """A `twinbox watch` process logging into files (a pipe nobody reads could fill up and
    stall it), with its control socket in the test's directory."""

    def __init__(self, tmp, cfg, *args, stdin=subprocess.DEVNULL, tty=False):
        self.tmp = tmp
        self.control = os.path.join(tmp, "run", "control")
        self.metrics = os.path.join(tmp, "metrics.prom")
        self.out_path = os.path.join(tmp, "out.log")
        self.err_path = os.path.join(tmp, "err.log")
        self.out = open(self.out_path, "w")
        self.err = open(self.err_path, "w")
        self.p = subprocess.Popen(
            [binary("twinbox"), "-c", cfg, "watch", "--control", self.control,
             "--metrics", self.metrics, *args],
            stdout=self.out, stderr=self.err, stdin=stdin,
            preexec_fn=controlling_tty if tty else None)

    def log(self):
        with open(self.err_path, errors="replace") as f:
            return f.read()

    def status(self):
        r = twinbox("status", "--json", "--control", self.control)
        if r.code != 0:
            raise AssertionError(f"status --json: {r}")
        return json.loads(r.out)

    def pairs(self):
        return {p["name"]: p for p in self.status()["pairs"]}

    def wait_for(self, what, pred, timeout=90):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.p.poll() is not None:
                raise AssertionError(f"daemon exited {self.p.returncode}:\n{self.log()}")
            try:
                if pred():
                    return
            except (OSError, AssertionError, KeyError):
                pass
            time.sleep(0.3)
        raise AssertionError(f"timed out waiting for {what}\n{self.log()[-3000:]}")

    def settled(self, names):
        """All named pairs have run and wait for a change."""
        def ok():
            p = self.pairs()
            return all(p[n]["runs"] >= 1 and p[n]["state"] == "waiting" for n in names)
        self.wait_for(f"pairs {names} to settle", ok)

    def terminate(self, timeout=60):
        try:
            if self.p.poll() is None:
                self.p.send_signal(signal.SIGTERM)
            self.p.wait(timeout)
        finally:
            if self.p.poll() is None:
                self.p.kill()
                self.p.wait()
            self.out.close()
            self.err.close()
        err = self.log()
        if SAN_RE.search(err):
            raise AssertionError("sanitizer report:\n" + err[-4000:])
        return self.p.returncode, err

    def children(self):
        """{pid: user} of the processes the daemon started (its tunnels' imap sessions)."""
        found = {}
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                with open(f"/proc/{name}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                if ppid != self.p.pid:
                    continue
                # Dovecot's imap clears its environment but works in the user's home.
                cwd = os.readlink(f"/proc/{name}/cwd")
            except (OSError, ValueError, IndexError):
                continue
            parts = cwd.split("/")
            found[int(name)] = parts[-1] if len(parts) > 1 and parts[-2] == "home" else ""
        return found


def message_ids(dv, user, mailbox="INBOX"):
    c = dv.client(user)
    try:
        return [m["message_id"] for m in ic.fetch_all(c, mailbox)]
    finally:
        c.logout()


def parse_metrics(path):
    """{(name, frozenset(labels.items())): value} of a Prometheus text file."""
    out = {}
    line_re = re.compile(r'^([a-z_]+)\{(.*)\} (\S+)$')
    label_re = re.compile(r'([a-z_]+)="((?:[^"\\]|\\.)*)"')
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line or line.startswith("#"):
                continue
            m = line_re.match(line)
            if not m:
                raise AssertionError(f"malformed metrics line: {line!r}")
            labels = dict(label_re.findall(m.group(2)))
            out[(m.group(1), frozenset(labels.items()))] = float(m.group(3))
    return out


def metric(m, name, **labels):
    return m[(name, frozenset(labels.items()))]


class DaemonBase(TestCase):
    def setUp(self):
        pdir = plugin_dir()
        users = {u: "secret" for u in USERS + ["alice"]}
        self.dv = [Dovecot(users=users, plugin_dir=pdir, extra_imap_plugins=["imap_xreplicate"]),
                   Dovecot(users=users, separator="/", plugin_dir=pdir,
                           extra_imap_plugins=["imap_xreplicate"])]
        for d in self.dv:
            d.start()
        self.tmp = tempfile.TemporaryDirectory()
        self.cfg = os.path.join(self.tmp.name, "config")
        self.d = None

    def tearDown(self):
        if self.d and self.d.p.poll() is None:
            self.d.p.kill()
            self.d.p.wait()
        stop_all(*self.dv)
        self.tmp.cleanup()

    def tunnel_pair(self, f, name, user, flip=False, xreplicate=True):
        """[pair NAME] of two tunnel accounts, user's on each Dovecot (a on the second
        one when flip)."""
        sides = (self.dv[1], self.dv[0]) if flip else (self.dv[0], self.dv[1])
        for k, dv in zip("ab", sides):
            f.write(f"[account {name}-{k}]\ntype = tunnel\n"
                    f"xreplicate = {'yes' if xreplicate else 'no'}\n"
                    f"command = {dv.tunnel_command(user)}\n\n")
        f.write(f"[pair {name}]\na = {name}-a\nb = {name}-b\n"
                f"state = {self.tmp.name}/{name}.db\n\n")

    def tcp_pair(self, f, name, user, password="secret"):
        for k, dv in zip("ab", self.dv):
            f.write(f"[account {name}-{k}]\ntype = imap\nhost = 127.0.0.1\n"
                    f"port = {dv.imap_port}\nuser = {user}\npassword = {password}\n"
                    f"starttls = no\nallow-plaintext-password = yes\n\n")
        f.write(f"[pair {name}]\na = {name}-a\nb = {name}-b\n"
                f"state = {self.tmp.name}/{name}.db\n\n")

    def write_config(self, body):
        with open(self.cfg + ".new", "w") as f:
            body(f)
        os.chmod(self.cfg + ".new", 0o600)
        os.rename(self.cfg + ".new", self.cfg)

    def side(self, _i, k, flip):
        """The Dovecot of side k (0 a, 1 b) of a tunnel pair."""
        return self.dv[k ^ int(flip)]

    def wait_ids(self, dv, user, want, timeout=90):
        deadline = time.monotonic() + timeout
        got = None
        while time.monotonic() < deadline:
            got = message_ids(dv, user)
            if set(want) <= set(got):
                return got
            time.sleep(0.3)
        self.fail(f"{user}: {sorted(set(want) - set(got or []))} never arrived\n"
                  f"{self.d.log()[-3000:]}")


class DaemonTest(DaemonBase):
    def test_six_pairs_status_metrics_parked_pair_and_sigterm(self):
        flips = [i % 2 == 1 for i in range(6)]

        def body(f):
            for i, u in enumerate(USERS):
                self.tunnel_pair(f, f"p{i}", u, flips[i])
            self.tcp_pair(f, "bad", "alice", password="wrong")
        self.write_config(body)
        for i, u in enumerate(USERS):
            ic.load_messages(self.side(i, 0, flips[i]), u, "INBOX", 2, seed=i)
        self.d = Daemon(self.tmp.name, self.cfg, "--interval", "86400")
        names = [f"p{i}" for i in range(6)]
        for i, u in enumerate(USERS):  # the first runs copy a -> b
            self.wait_ids(self.side(i, 1, flips[i]), u,
                          message_ids(self.side(i, 0, flips[i]), u))
        self.d.settled(names)
        # A change on b of each pair arrives on a: woken by the watch (the interval is a day).
        for i, u in enumerate(USERS):
            ic.load_messages(self.side(i, 1, flips[i]), u, "INBOX", 1, seed=100 + i)
        for i, u in enumerate(USERS):
            want = message_ids(self.side(i, 1, flips[i]), u)
            got = self.wait_ids(self.side(i, 0, flips[i]), u, want)
            self.assertEqual(len(got), 3, u)
            self.assertEqual(sorted(got), sorted(want), u)
        self.d.wait_for("the runs that carried them to end",
                        lambda: all(p["messages_copied"] == 3 and p["state"] == "waiting"
                                    for n, p in self.d.pairs().items() if n != "bad"))
        st = self.d.status()
        self.assertEqual(st["pid"], self.d.p.pid)
        pairs = {p["name"]: p for p in st["pairs"]}
        self.assertEqual(set(pairs), set(names) | {"bad"})
        for n in names:
            p = pairs[n]
            self.assertGreaterEqual(p["runs"], 2, p)
            self.assertEqual(p["runs_failed"], 0, p)
            self.assertEqual(p["last_result"]["code"], 0, p)
            self.assertIsNone(p["last_error"], p)
            self.assertGreater(p["last_success"], 0, p)
        bad = pairs["bad"]
        self.assertEqual(bad["state"], "parked", bad)
        self.assertEqual(bad["last_result"]["code"], 4, bad)
        self.assertRegex(bad["last_error"], r"^bad-[ab]: login", bad)

        m = parse_metrics(self.d.metrics)
        for n in names:
            self.assertGreaterEqual(metric(m, "twinbox_runs_total", pair=n, result="ok"), 2)
            self.assertEqual(metric(m, "twinbox_runs_total", pair=n, result="failed"), 0)
            self.assertEqual(metric(m, "twinbox_messages_copied_total", pair=n), 3)
            self.assertGreater(metric(m, "twinbox_bytes_total", pair=n), 3 * 1000)
            self.assertEqual(metric(m, "twinbox_pair_up", pair=n), 1)
            self.assertGreater(metric(m, "twinbox_last_success_timestamp_seconds", pair=n), 0)
            count = metric(m, "twinbox_propagation_seconds_count", pair=n)
            self.assertGreaterEqual(count, 1)  # the change on b, seen by the watch
            self.assertEqual(metric(m, "twinbox_propagation_seconds_bucket", pair=n, le="+Inf"),
                             count)
            buckets = sorted((float(dict(k[1])["le"]), v) for k, v in m.items()
                             if k[0] == "twinbox_propagation_seconds_bucket"
                             and dict(k[1])["pair"] == n and dict(k[1])["le"] != "+Inf")
            self.assertEqual([v for _, v in buckets], sorted(v for _, v in buckets))
        self.assertEqual(metric(m, "twinbox_pair_up", pair="bad"), 0)
        self.assertEqual(metric(m, "twinbox_errors_total", pair="bad"), 1)
        self.assertFalse([f for f in os.listdir(self.tmp.name) if ".tmp." in f])
        mode = os.stat(self.d.control).st_mode & 0o777
        self.assertEqual(mode, 0o600)
        self.assertEqual(os.stat(os.path.dirname(self.d.control)).st_mode & 0o777, 0o700)

        # The password fixed and the file reloaded: the parked pair runs again.
        def fixed(f):
            for i, u in enumerate(USERS):
                self.tunnel_pair(f, f"p{i}", u, flips[i])
            self.tcp_pair(f, "bad", "alice")
        self.write_config(fixed)
        self.d.p.send_signal(signal.SIGHUP)
        self.d.wait_for("the parked pair to run again",
                        lambda: (self.d.pairs()["bad"]["last_result"] or {}).get("code") == 0)
        self.assertEqual(self.d.pairs()["p0"]["runs"], pairs["p0"]["runs"])  # untouched

        code, err = self.d.terminate()
        self.assertEqual(code, 0, err)
        lines = [l for l in err.splitlines() if l.strip()]
        # The parked pair's one line and the reload's, nothing else.
        self.assertEqual(len(lines), 2, err)
        self.assertIn("pair bad: ", lines[0])
        self.assertIn("parked until the configuration is reloaded", lines[0])
        self.assertIn("reload: ", lines[1])
        self.assertFalse(os.path.exists(self.d.control))
        r = twinbox("status", "--json", "--control", self.d.control)
        self.assertOneLineError(r, "no twinbox watch is running")
        self.assertEqual(r.code, 5)

    def test_pairs_without_x_replicate_are_woken_by_push(self):
        """xreplicate = no: the watch falls back to NOTIFY or IDLE; the interval is a day,
        so a change that arrives was pushed."""
        self.write_config(lambda f: [self.tunnel_pair(f, f"q{i}", f"u{i}", i % 2 == 1,
                                                      xreplicate=False) for i in range(4)])
        self.d = Daemon(self.tmp.name, self.cfg, "--interval", "86400")
        names = [f"q{i}" for i in range(4)]
        self.d.settled(names)
        for i in range(4):
            ic.load_messages(self.dv[i % 2], f"u{i}", "INBOX", 1, seed=200 + i)
        for i in range(4):
            want = message_ids(self.dv[i % 2], f"u{i}")
            self.assertEqual(self.wait_ids(self.dv[1 - i % 2], f"u{i}", want), want)
        code, err = self.d.terminate()
        self.assertEqual(code, 0, err)
        self.assertEqual(err.strip(), "")

    def test_never_prompts_for_a_password(self):
        """On a terminal, an account without a password source parks its pair instead of
        prompting (from a thread, again for every run); the other pair runs."""
        def body(f):
            self.tcp_pair(f, "nopw", "alice")
            self.tunnel_pair(f, "p", "u0")
        self.write_config(body)
        with open(self.cfg) as f:
            text = f.read()
        with open(self.cfg, "w") as f:
            f.write(text.replace("password = secret\n", "", 1))
        master, slave = os.openpty()
        try:
            self.d = Daemon(self.tmp.name, self.cfg, "--interval", "86400", stdin=slave,
                            tty=True)
            self.d.settled(["p"])
            self.d.wait_for("nopw to park", lambda: self.d.pairs()["nopw"]["state"] == "parked")
            code, err = self.d.terminate()  # before the terminal hangs up (a SIGHUP)
        finally:
            os.close(slave)
            os.close(master)
        self.assertEqual(code, 0, err)
        lines = [l for l in err.splitlines() if l.strip()]
        self.assertEqual(len(lines), 1, err)
        self.assertIn("pair nopw: nopw-a: no password configured", lines[0])

    def test_one_run_per_host_at_a_time(self):
        """--max-per-host 1: three pairs whose sides are all on 127.0.0.1 take turns (and
        none waits forever); everything arrives."""
        self.write_config(lambda f: [self.tcp_pair(f, f"h{i}", f"u{i}") for i in range(3)])
        for i in range(3):
            ic.load_messages(self.dv[i % 2], f"u{i}", "INBOX", 2, seed=300 + i)
        self.d = Daemon(self.tmp.name, self.cfg, "--interval", "86400", "--max-per-host", "1")
        for i in range(3):
            self.wait_ids(self.dv[1 - i % 2], f"u{i}", message_ids(self.dv[i % 2], f"u{i}"))
        self.d.settled([f"h{i}" for i in range(3)])
        for i in range(3):
            ic.load_messages(self.dv[1 - i % 2], f"u{i}", "INBOX", 1, seed=400 + i)
        for i in range(3):
            want = message_ids(self.dv[1 - i % 2], f"u{i}")
            self.assertEqual(len(self.wait_ids(self.dv[i % 2], f"u{i}", want)), 3)
        code, err = self.d.terminate()
        self.assertEqual(code, 0, err)
        self.assertEqual(err.strip(), "")

    def test_sigterm_ends_a_run_after_the_mailbox_in_progress(self):
        """A first sync of 60 mailboxes (48 MB) through relays with a 50 ms delay each way
        and 2 MB/s: SIGTERM during it ends the run once the mailboxes whose copies are
        under way are done (exit 0, most mailboxes not filled yet), and the next run
        completes it without duplicates."""
        from tests.fixture.relay import Relay
        boxes = [f"Box{i:02d}" for i in range(60)]
        c = self.dv[0].client("alice")
        try:
            for b in boxes:
                ic.load_messages(self.dv[0], "alice", b, 2, size=400_000, seed=7, client=c)
        finally:
            c.logout()
        # 2 MB/s: the copies of the 60 mailboxes are all under way only once 36 MB moved
        # (the 12 MiB window), 18 s, far longer than noticing the first mailbox (at 4 MB/s
        # one CI run under ASan saw the run complete: the time SIGTERM came is now shown)
        relays = [Relay(d.imap_port, delay=0.05, rate=2e6) for d in self.dv]
        try:
            def body(f):
                for k, r in zip("ab", relays):
                    f.write(f"[account {k}]\ntype = imap\nhost = 127.0.0.1\n"
                            f"port = {r.port}\nuser = alice\npassword = secret\n"
                            f"starttls = no\nallow-plaintext-password = yes\n\n")
                f.write(f"[pair p]\na = a\nb = b\nstate = {self.tmp.name}/p.db\n")
            self.write_config(body)
            t0 = time.monotonic()
            self.d = Daemon(self.tmp.name, self.cfg, "--interval", "86400")
            def progressed():
                c = self.dv[1].client("alice")
                try:
                    return any(n.startswith("Box") for n in ic.list_mailboxes(c))
                finally:
                    c.logout()
            self.d.wait_for("the first mailbox", progressed)
            seen = time.monotonic() - t0
            self.d.p.send_signal(signal.SIGTERM)
            code, err = self.d.terminate(timeout=60)
            self.assertEqual(code, 0, err)
            self.assertRegex(err, r"pair p: stopped after \d+ of \d+ mailboxes; the next run",
                             f"SIGTERM {seen:.1f} s after the daemon started; relays "
                             f"{[r.stats() for r in relays]}")
            for r in relays:
                r.rate = None  # the next run's connections: unlimited
            c = self.dv[1].client("alice")
            try:
                made = [n for n in ic.list_mailboxes(c) if n.startswith("Box")]
            finally:
                c.logout()
            filled = [b for b in made if message_ids(self.dv[1], "alice", b)]
            self.assertLess(len(filled), 30, "the run went on after SIGTERM")
            r = twinbox("-c", self.cfg, "sync", timeout=600)
            self.assertEqual(r.code, 0, r)
        finally:
            for r in relays:
                r.stop()
        for b in ["INBOX"] + boxes:
            want = message_ids(self.dv[0], "alice", b)
            self.assertEqual(sorted(message_ids(self.dv[1], "alice", b)), sorted(want), b)

    def test_lock_held_by_another_run_is_waited_out_quietly(self):
        import fcntl
        self.write_config(lambda f: self.tunnel_pair(f, "p", "u0"))
        ic.load_messages(self.dv[0], "u0", "INBOX", 2, seed=3)
        with open(os.path.join(self.tmp.name, "p.db.lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # as a `twinbox sync p` running meanwhile
            self.d = Daemon(self.tmp.name, self.cfg, "--interval", "86400")
            self.d.wait_for("the lock to be noticed", lambda: "retrying" in self.d.log())
            self.d.wait_for("a second attempt", lambda: self.d.pairs()["p"]["runs"] >= 2)
        self.wait_ids(self.dv[1], "u0", message_ids(self.dv[0], "u0"))
        self.d.wait_for("the recovery line", lambda: "succeed again" in self.d.log())
        code, err = self.d.terminate()
        self.assertEqual(code, 0, err)
        lines = [l for l in err.splitlines() if l.strip()]
        self.assertEqual(len(lines), 2, err)
        self.assertRegex(lines[0], r"^twinbox: pair p: another twinbox run holds .*; retrying$")
        self.assertRegex(lines[1], r"^twinbox: pair p: runs succeed again after \d+ s$")

    def test_sighup_adds_and_removes_pairs_and_keeps_the_others(self):
        def chg(f, exclude):
            self.tunnel_pair(f, "chg", "u3")
            if exclude:
                f.write("exclude = Junk\n\n")
        self.write_config(lambda f: (self.tunnel_pair(f, "keep", "u0"),
                                     self.tunnel_pair(f, "gone", "u1"), chg(f, False)))
        ic.load_messages(self.dv[0], "u2", "INBOX", 2, seed=2)
        self.d = Daemon(self.tmp.name, self.cfg, "--interval", "86400")
        self.d.settled(["keep", "gone", "chg"])
        # keep's and chg's two watch connections, one per side.
        self.d.wait_for("the watch connections",
                        lambda: sorted(self.d.children().values()).count("u0") == 2
                        and list(self.d.children().values()).count("u3") == 2)
        keep_pids = {p for p, u in self.d.children().items() if u == "u0"}
        chg_pids = {p for p, u in self.d.children().items() if u == "u3"}

        # A file that no longer parses: one line, and the daemon goes on as it was.
        with open(self.cfg, "a") as f:
            f.write("[nonsense\n")
        self.d.p.send_signal(signal.SIGHUP)
        self.d.wait_for("the reload error", lambda: "reload: " in self.d.log())
        self.assertEqual(set(self.d.pairs()), {"keep", "gone", "chg"})

        self.write_config(lambda f: (self.tunnel_pair(f, "keep", "u0"),
                                     self.tunnel_pair(f, "new", "u2"), chg(f, True)))
        self.d.p.send_signal(signal.SIGHUP)
        self.wait_ids(self.dv[1], "u2", message_ids(self.dv[0], "u2"))
        self.d.settled(["keep", "new", "chg"])
        self.d.wait_for("gone to leave the status",
                        lambda: set(self.d.pairs()) == {"keep", "new", "chg"})
        self.d.wait_for("gone's connections to close",
                        lambda: "u1" not in self.d.children().values())
        # keep was not touched: the same watch connections, no new run.
        now = {p for p, u in self.d.children().items() if u == "u0"}
        self.assertEqual(now, keep_pids)
        self.assertEqual(self.d.pairs()["keep"]["runs"], 1)
        # chg's settings changed: a new worker (its counters start again), new connections.
        self.d.wait_for("chg's new watch connections",
                        lambda: list(self.d.children().values()).count("u3") == 2)
        self.assertFalse(chg_pids & {p for p, u in self.d.children().items() if u == "u3"})
        self.assertEqual(self.d.pairs()["chg"]["runs"], 1)
        # The removed pair syncs no more; keep still does.
        ic.load_messages(self.dv[0], "u1", "INBOX", 1, seed=11)
        ic.load_messages(self.dv[0], "u0", "INBOX", 1, seed=10)
        self.wait_ids(self.dv[1], "u0", message_ids(self.dv[0], "u0"))
        self.d.wait_for("keep's second run", lambda: self.d.pairs()["keep"]["runs"] == 2)
        self.assertEqual(message_ids(self.dv[1], "u1"), [])
        code, err = self.d.terminate()
        self.assertEqual(code, 0, err)
        lines = [l for l in err.splitlines() if l.strip()]
        self.assertEqual(len([l for l in lines if "reload: " in l and "keeping" in l]), 1, err)
        self.assertIn("pair gone: removed from the configuration", err)
        self.assertFalse([l for l in lines if "warning" in l or "unreachable" in l], err)

    def test_server_stopped_and_started_again(self):
        self.write_config(lambda f: (self.tcp_pair(f, "tcp", "alice"),
                                     self.tunnel_pair(f, "other", "u3")))
        ic.load_messages(self.dv[0], "alice", "INBOX", 3, seed=1)
        # A short interval: the other pair runs every 2 s throughout, unaffected.
        self.d = Daemon(self.tmp.name, self.cfg, "--interval", "2")
        self.wait_ids(self.dv[1], "alice", message_ids(self.dv[0], "alice"))
        self.d.settled(["tcp"])
        # Its tunnel sessions are the daemon's: a stopping server does not end them.
        self.dv[1].stop(remove=False, keep_tunnels=True)
        down = time.monotonic()
        try:
            ic.load_messages(self.dv[0], "alice", "INBOX", 4, seed=2)
            self.d.wait_for("the outage to be noticed",
                            lambda: "unreachable" in self.d.log(), timeout=60)
            self.assertEqual(self.d.pairs()["tcp"]["state"] in ("backoff", "syncing"), True)
            # Down for 30 s as issue 14 has it: a dozen retries, all silent.
            time.sleep(max(0.0, 30 - (time.monotonic() - down)))
        finally:
            self.dv[1].start()
        want = message_ids(self.dv[0], "alice")
        self.assertEqual(len(want), 7)
        got = self.wait_ids(self.dv[1], "alice", want)
        self.d.wait_for("the recovery line", lambda: "reachable again" in self.d.log())
        self.assertEqual(sorted(got), sorted(want))  # no duplicates
        self.assertEqual(sorted(message_ids(self.dv[0], "alice")), sorted(want))
        self.assertEqual(self.d.pairs()["other"]["runs_failed"], 0, self.d.log())
        code, err = self.d.terminate()
        self.assertEqual(code, 0, err)
        lines = [l for l in err.splitlines() if l.strip()]
        self.assertEqual(len([l for l in lines if "unreachable" in l]), 1, err)
        self.assertEqual(len([l for l in lines if "reachable again" in l]), 1, err)
        self.assertIn("pair tcp: account tcp-b unreachable: ", err)
        # Nothing else, but the line of a SIGTERM that lands while the other pair (every
        # 2 s, a tunnel) is in a run: seen once in CI.
        rest = [l for l in lines if "reachable" not in l and not
                re.search(r"pair other: stopped after \d+ of \d+ mailboxes", l)]
        self.assertEqual(rest, [], err)



class TwentyPairsTest(DaemonBase):
    """Issue 14's acceptance: 20 pairs over 4 private Dovecots in one watch process; a
    change on either side of any pair arrives on the other. With X-REPLICATE (WATCH), and
    without it (NOTIFY, or IDLE on the pair's watch-mailboxes: INBOX and Work). The
    interval is a day: what arrives was pushed. Arrival times are printed (the bench
    table's business), never asserted."""

    N = 20

    def setUp(self):
        super().setUp()
        pdir = plugin_dir()
        users = {f"v{i}": "secret" for i in range(self.N)}
        for d in self.dv:
            for u in users:
                d.add_user(u, "secret")
        for sep in (".", "/"):
            d = Dovecot(users=users, separator=sep, plugin_dir=pdir,
                        extra_imap_plugins=["imap_xreplicate"])
            d.start()
            self.dv.append(d)

    def sides(self, i):
        """Pair i's a and b: two different Dovecots of the four."""
        return self.dv[i % 4], self.dv[(i % 4 + 1 + (i // 4) % 3) % 4]

    def pair(self, f, i, xreplicate):
        name, user = f"t{i}", f"v{i}"
        for k, dv in zip("ab", self.sides(i)):
            f.write(f"[account {name}-{k}]\ntype = tunnel\n"
                    f"xreplicate = {'yes' if xreplicate else 'no'}\n"
                    f"command = {dv.tunnel_command(user)}\n\n")
        f.write(f"[pair {name}]\na = {name}-a\nb = {name}-b\n"
                f"state = {self.tmp.name}/{name}.db\nwatch-mailboxes = INBOX, Work\n\n")

    def round_trip(self, xreplicate):
        for i in range(self.N):
            c = self.sides(i)[0].client(f"v{i}")
            c.create("Work")
            c.logout()
        self.write_config(lambda f: [self.pair(f, i, xreplicate) for i in range(self.N)])
        self.d = Daemon(self.tmp.name, self.cfg, "--interval", "86400")
        names = [f"t{i}" for i in range(self.N)]
        self.d.settled(names)
        # One change per pair, on side a for even pairs and b for odd ones, into INBOX or
        # Work; then every pair polled until its change is on the other side.
        made = {}
        for i in range(self.N):
            k, box = i % 2, "Work" if i % 4 >= 2 else "INBOX"
            ic.load_messages(self.sides(i)[k], f"v{i}", box, 1, seed=300 + i)
            want = message_ids(self.sides(i)[k], f"v{i}", box)
            made[i] = (k, box, want, time.monotonic())
        took, deadline = {}, time.monotonic() + 90
        while len(took) < self.N:
            if time.monotonic() > deadline:
                self.fail(f"pairs {sorted(set(made) - set(took))}: changes never arrived\n"
                          f"{self.d.log()[-3000:]}")
            for i, (k, box, want, t) in made.items():
                if i not in took and not set(want) - set(
                        message_ids(self.sides(i)[1 - k], f"v{i}", box)):
                    took[i] = time.monotonic() - t
            time.sleep(0.1)
        ts = sorted(took.values())
        print(f"\nTWENTY-PAIRS {'WATCH' if xreplicate else 'NOTIFY/IDLE'}: change to arrival "
              f"(imaplib polling of 20 accounts included) median {ts[len(ts) // 2]:.2f} s, "
              f"max {ts[-1]:.2f} s")
        for i in range(self.N):  # no duplicate on either side
            for dv in self.sides(i):
                for box in ("INBOX", "Work"):
                    ids = message_ids(dv, f"v{i}", box)
                    self.assertEqual(len(ids), len(set(ids)), (i, box))
        code, err = self.d.terminate()
        self.assertEqual(code, 0, err)
        self.assertEqual(err.strip(), "")

    def test_twenty_pairs_over_four_dovecots_with_watch(self):
        self.round_trip(True)

    def test_twenty_pairs_over_four_dovecots_with_notify_or_idle(self):
        self.round_trip(False)


if __name__ == "__main__":
    unittest.main()
