"""twinbox migrate: one-way migration between the fixture's servers, checked with imaplib.
SRC must be unchanged (a listing with flags and STATUS before and after); DST must hold every
selected SRC message with its flags, keywords (where DST keeps them) and INTERNALDATE; a
rerun copies nothing; kill -9 at random moments never duplicates nor loses a message."""
import os
import random
import re
import signal
import subprocess
import tempfile
import time

from tests.fixture import imapcheck as ic
from tests.fixture.dovecot import Dovecot
from tests.integration.common import TestCase, binary, twinbox
from tests.integration.interop import DovecotSide, canon


def full_view(fx):
    """{canonical mailbox: sorted [(message-id, flags, INTERNALDATE)]} and STATUS numbers."""
    c = fx.client()
    try:
        out, status = {}, {}
        for wire in ic.list_mailboxes(c, selectable_only=True):
            name = canon(fx, wire)
            if name is None:
                continue
            typ, data = c.status(ic.quote(wire), "(MESSAGES UIDNEXT UIDVALIDITY)")
            status[name] = data[0]
            rows = [(m.get("message_id"), m["flags"], m["internaldate"])
                    for m in ic.fetch_all(c, wire)]
            c.close()
            out[name] = sorted(rows, key=lambda r: (r[0] or "", r[1], r[2]))
        return out, status
    finally:
        c.logout()


class MigrateBase(TestCase):
    maxDiff = None

    def make_src(self):
        return DovecotSide(Dovecot(users={"alice": "secret"}, separator="/")).start()

    def make_dst(self):
        return DovecotSide(Dovecot(users={"alice": "secret"}, separator="/")).start()

    def setUp(self):
        self.src = self.make_src()
        try:
            self.dst = self.make_dst()
        except BaseException:
            self.src.stop()
            raise
        self.tmp = tempfile.TemporaryDirectory()
        self.env = dict(os.environ, TWINBOX_PASSWORD_SRC="secret",
                        TWINBOX_PASSWORD_DST="secret", XDG_STATE_HOME=self.tmp.name)

    def tearDown(self):
        try:
            self.dst.stop()
        finally:
            self.src.stop()
            self.tmp.cleanup()

    def url(self, fx):
        port = fx.dv.imap_port if isinstance(fx, DovecotSide) else fx.port
        login = fx.login("alice") if hasattr(fx, "login") else "alice"
        return f"imap://{login.replace('@', '%40')}@127.0.0.1:{port}/?starttls=no"

    def migrate(self, *args, code=0):
        r = twinbox("migrate", self.url(self.src), self.url(self.dst), *args, env=self.env,
                    timeout=600)
        self.assertEqual(r.code, code, r)
        return r

    def append(self, fx, name, n, seed, start=0, flags=(), size=1500):
        c = fx.client()
        try:
            wire = fx.mailbox(name)
            if name != "INBOX":
                c.create(ic.quote(wire))
            for i in range(start, start + n):
                msg, day = ic.make_message(i, size=size, seed=seed, mailbox=name)
                ic.append(c, wire, msg, flags=flags, date=day)
        finally:
            c.logout()

    def seed(self):
        self.append(self.src, "INBOX", 6, 1, flags=("\\Seen", "$Todo"))
        self.append(self.src, "Work", 4, 2, flags=("\\Flagged",))
        self.append(self.src, "Work/Sub", 3, 3)

    def assertCopied(self, names=None, keywords=True):
        sv, _ = full_view(self.src)
        dv, _ = full_view(self.dst)
        for name in names or sv:
            want = sv[name]
            if not keywords:
                want = [(m, tuple(f for f in fl if f.startswith("\\")), d) for m, fl, d in want]
            self.assertEqual(dv.get(name), want, f"mailbox {name}")
        return sv, dv


class DovecotToDovecotTest(MigrateBase):
    def test_copy_rerun_and_source_unchanged(self):
        self.seed()
        before = full_view(self.src)
        r = self.migrate()
        self.assertIn("migrate: copied 13,", r.out)
        self.assertIn("migrate: state ", r.err)
        self.assertCopied()
        r = self.migrate()
        self.assertIn("migrate: copied 0,", r.out)
        self.assertEqual(full_view(self.src), before, "SRC unchanged")

    def test_verdict_and_report(self):
        import json
        self.seed()
        report = os.path.join(self.tmp.name, "report.json")
        r = self.migrate("--report", report)
        self.assertIn("migrate: every selected source message is on the destination (13 of 13)",
                      r.out)
        self.assertRegex(r.out, r"\nINBOX +6 +6 +6 +0 +0 +0\n")
        with open(report) as f:
            rep = json.load(f)
        self.assertTrue(rep["complete"])
        self.assertEqual({x["folder"]: x["copied"] for x in rep["folders"]},
                         {"INBOX": 6, "Work": 4, "Work/Sub": 3})
        # A copy deleted on DST behind the migration's back: the verdict says so.
        c = self.dst.client()
        c.select("INBOX")
        c.uid("STORE", "1", "+FLAGS", "(\\Deleted)")
        c.expunge()
        c.logout()
        r = self.migrate("--report", report, code=7)
        self.assertIn("NOT complete: 12 of 13", r.out)
        with open(report) as f:
            self.assertFalse(json.load(f)["complete"])

    def test_source_changes_and_destination_changes(self):
        self.seed()
        self.migrate()
        self.append(self.src, "INBOX", 2, 1, start=50)
        c = self.src.client()
        c.select("INBOX")
        c.uid("STORE", "1", "+FLAGS", "(\\Answered)")
        c.logout()
        c = self.dst.client()  # the user already works on DST: that stays
        c.select("INBOX")
        c.uid("STORE", "2", "+FLAGS", "(\\Flagged)")
        c.logout()
        self.append(self.dst, "INBOX", 1, 9, start=70)
        r = self.migrate()
        self.assertIn("migrate: copied 2,", r.out)
        sv, _ = full_view(self.src)
        dv, _ = full_view(self.dst)
        src_ids = {m for m, _f, _d in sv["INBOX"]}
        dst = {m: f for m, f, _d in dv["INBOX"]}
        self.assertTrue(src_ids <= set(dst), "every source message on DST")
        self.assertEqual(len(dst), len(src_ids) + 1, "DST's own message stays, not copied back")
        self.assertEqual(sum("\\Answered" in f for f in dst.values()), 1, "SRC's flag change")
        self.assertEqual(sum("\\Flagged" in f for f in dst.values()), 1, "DST's flag stays")
        self.assertEqual(len(sv["INBOX"]), 8, "nothing went back to SRC")

    def test_delete_mirrors_only_when_asked(self):
        self.seed()
        self.migrate()
        c = self.src.client()
        c.select("INBOX")
        c.uid("STORE", "1:2", "+FLAGS", "(\\Deleted)")
        c.expunge()
        c.logout()
        r = self.migrate()
        self.assertIn("kept (gone from the source) 2", r.out)
        self.assertEqual(len(full_view(self.dst)[0]["INBOX"]), 6, "kept without --delete")
        self.append(self.src, "INBOX", 1, 1, start=60)
        c = self.src.client()
        c.select("INBOX")
        c.uid("STORE", "3", "+FLAGS", "(\\Deleted)")
        c.expunge()
        c.logout()
        r = self.migrate("--delete")
        self.assertIn("expunged 1,", r.out)
        self.assertEqual(len(full_view(self.dst)[0]["INBOX"]), 6)

    def test_messages_already_on_destination_are_matched(self):
        self.seed()
        self.append(self.dst, "INBOX", 6, 1, flags=("\\Seen", "$Todo"))
        r = self.migrate()
        self.assertIn("migrate: copied 7,", r.out)
        self.assertIn("already there 6,", r.out)
        self.assertCopied()

    def test_dry_run_changes_nothing_and_matches_the_run(self):
        self.seed()
        before = full_view(self.src), full_view(self.dst)
        r = self.migrate("--dry-run")
        self.assertEqual((full_view(self.src), full_view(self.dst)), before)
        self.assertEqual(os.listdir(self.tmp.name), [], "no state written")
        planned = sum(int(x.split("copy a->b ")[1].split(",")[0])
                      for x in r.out.splitlines() if "copy a->b" in x)
        self.assertEqual(planned, 13)
        r = self.migrate()
        self.assertIn(f"migrate: copied {planned},", r.out)

    def test_source_is_never_written(self):
        """Every command sent to SRC is read-only (EXAMINE, BODY.PEEK, no STORE/APPEND)."""
        from tests.fixture.evil import Evil
        self.seed()
        ev = Evil(self.src.dv)
        try:
            url = f"imap://alice@127.0.0.1:{ev.port}/?starttls=no"
            p = subprocess.run([binary("twinbox"), "migrate", url, self.url(self.dst)],
                               capture_output=True, text=True, env=self.env, timeout=300)
            self.assertEqual(p.returncode, 0, p.stderr)
            names = {c.name for c in ev.commands}
            self.assertFalse(names & {"SELECT", "STORE", "APPEND", "EXPUNGE", "CREATE",
                                      "DELETE", "RENAME", "SUBSCRIBE", "COPY", "MOVE"}, names)
            fetches = [c.text for c in ev.commands if c.name == "FETCH" or "FETCH" in c.text]
            self.assertTrue(all("BODY[" not in f for f in fetches), fetches)
        finally:
            ev.stop()


class ThrottleTest(MigrateBase):
    def test_throttled_and_dropped_connections_are_survived(self):
        """DST answers NO [THROTTLED] now and then and drops the connection mid-copy: the
        migration pauses, reconnects, resumes, and reports it; nothing is lost or doubled."""
        from tests.fixture.evil import Evil
        self.append(self.src, "INBOX", 60, 1)
        self.append(self.src, "Work", 30, 2)
        from tests.fixture.evil import DEFAULT_REMOVED_CAPS
        # One message per APPEND, so the refusals below fall on the 7th and 40th message
        # (tests/integration/test_multiappend.py throttles a MULTIAPPEND batch).
        ev = Evil(self.dst.dv, remove_caps=DEFAULT_REMOVED_CAPS + ("MULTIAPPEND",))
        try:
            ev.on(r"APPEND ", nth=7, times=1,
                  reply="NO [THROTTLED] Suggested Backoff Time: 40 milliseconds")
            ev.on(r"APPEND ", nth=40, times=1, disconnect="before")
            dst = f"imap://alice@127.0.0.1:{ev.port}/?starttls=no"
            ev_src = Evil(self.src.dv)
            self.addCleanup(ev_src.stop)
            ev_src.on(r"UID FETCH \d+ \(UID BODY", nth=60, times=1, reply="NO [UNAVAILABLE] try later")
            src = f"imap://alice@127.0.0.1:{ev_src.port}/?starttls=no"
            r = twinbox("migrate", src, dst, env=dict(
                self.env, TWINBOX_TEST_RETRY_SCALE="20"), timeout=600)
            self.assertEqual(r.code, 0, r)
            # Each refusal or hang-up ends one run (two may fall into the same run).
            m = re.search(r"(\d+) temporary failures? survived", r.out)
            self.assertTrue(m, r)
            self.assertGreaterEqual(int(m.group(1)), 2, r)
            self.assertIn("server asks to slow down", r.err)
            self.assertGreaterEqual(len(ev.connections), 3, "reconnected")
        finally:
            ev.stop()
        self.assertCopied()


class ManyAccountsTest(TestCase):
    def test_twenty_accounts_four_jobs_one_bad_password(self):
        users = {f"u{i:02d}": "pw" for i in range(20)}
        src = Dovecot(users=users).start()
        dst = Dovecot(users=users).start()
        tmp = tempfile.TemporaryDirectory()
        try:
            for u in users:
                ic.load_messages(src, u, "INBOX", 3, seed=hash(u) % 1000)
            bad = os.path.join(tmp.name, "bad")
            with open(bad, "w") as f:
                f.write("wrong\n")
            os.chmod(bad, 0o600)
            lines = ["# src,dst,src password,dst password"]
            for u in users:
                dpw = f"file:{bad}" if u == "u07" else "env:PW_DST"
                lines.append(f"imap://{u}@127.0.0.1:{src.imap_port}/?starttls=no,"
                             f"imap://{u}@127.0.0.1:{dst.imap_port}/?starttls=no,env:PW_SRC,{dpw}")
            accounts = os.path.join(tmp.name, "accounts.csv")
            with open(accounts, "w") as f:
                f.write("\n".join(lines) + "\n")
            env = {"PW_SRC": "pw", "PW_DST": "pw", "XDG_STATE_HOME": tmp.name}
            r = twinbox("migrate", "--accounts", accounts, "--jobs", "4", "--max-per-host", "4",
                        env=env, timeout=600)
            self.assertEqual(r.code, 4, r)
            self.assertIn("19 of 20 accounts migrated", r.out)
            self.assertRegex(r.out, r"\n9 +imap://u07@.* FAILED")
            for u in users:
                c = dst.client(u)
                typ, data = c.status("INBOX", "(MESSAGES)")
                c.logout()
                self.assertIn(b"MESSAGES 0" if u == "u07" else b"MESSAGES 3", data[0], u)
            r = twinbox("migrate", "--accounts", accounts, "--jobs", "4", env=env, timeout=600)
            self.assertEqual(r.code, 4, r)
            self.assertRegex(r.out, r"\n2 +imap://u00@\S+ +imap://u00@\S+ +ok +0 +0 ", r)
        finally:
            src.stop()
            dst.stop()
            tmp.cleanup()


class ConfigSectionTest(MigrateBase):
    def test_migration_section(self):
        self.seed()
        cfg = os.path.join(self.tmp.name, "config")
        with open(cfg, "w") as f:
            f.write(f"[migration move]\nsource = {self.url(self.src)}\n"
                    f"destination = {self.url(self.dst)}\nonly = INBOX\nonly = Work\n"
                    f"map = Work=Old/Work\ndelete = no\n")
        os.chmod(cfg, 0o600)
        r = twinbox("-c", cfg, "migrate", "move", "--dry-run", env=self.env)
        self.assertEqual(r.code, 0, r)
        self.assertEqual(full_view(self.dst)[0], {"INBOX": []}, "dry run wrote nothing")
        r = twinbox("-c", cfg, "migrate", "move", env=self.env)
        self.assertEqual(r.code, 0, r)
        got = {n: len(v) for n, v in full_view(self.dst)[0].items()}
        self.assertEqual(got.get("INBOX"), 6, got)
        self.assertEqual(got.get("Old/Work"), 4, got)
        self.assertNotIn("Work/Sub", got)
        with open(cfg, "a") as f:
            f.write("delete = maybe\n")
        r = twinbox("-c", cfg, "migrate", "move", env=self.env)
        self.assertIn("duplicate key 'delete'", r.err)
        r = twinbox("-c", cfg, "migrate", "nosuch", env=self.env)
        self.assertEqual(r.code, 3, r)


class SyncUrlsTest(MigrateBase):
    def test_two_way_without_a_config_file(self):
        self.append(self.src, "INBOX", 3, 1)
        self.append(self.dst, "Work", 2, 2)
        env = dict(self.env, TWINBOX_PASSWORD_A="secret", TWINBOX_PASSWORD_B="secret")
        a, b = self.url(self.src), self.url(self.dst)
        r = twinbox("sync", a, b, env=env)
        self.assertEqual(r.code, 0, r)
        self.assertIn("sync: copied a->b 3, b->a 2,", r.out)
        states = os.listdir(os.path.join(self.tmp.name, "twinbox"))
        self.assertTrue(any(n.startswith("sync-") and n.endswith(".db") for n in states), states)
        r = twinbox("sync", a, b, env=env)
        self.assertIn("sync: copied a->b 0, b->a 0,", r.out)
        self.assertEqual(full_view(self.src)[0], full_view(self.dst)[0])


class MappingTest(MigrateBase):
    def setUp(self):
        super().setUp()
        self.append(self.src, "INBOX", 2, 1)
        self.append(self.src, "Sent Items", 2, 2)
        self.append(self.src, "Deleted Items", 1, 3)
        self.append(self.src, "Work", 2, 4)
        self.append(self.src, "Old/Stuff", 1, 5)
        for name in ("Sent", "Trash"):
            c = self.dst.client()
            c.create(name)
            c.logout()

    def counts(self):
        return {n: len(rows) for n, rows in full_view(self.dst)[0].items()}

    def test_special_use_map_and_rename(self):
        self.migrate("--map", "Work=Archive/Work", "--rename", "s|^Old|New|")
        got = self.counts()
        self.assertEqual(got.get("Sent"), 2, got)
        self.assertEqual(got.get("Trash"), 1, got)
        self.assertEqual(got.get("Archive/Work"), 2, got)
        self.assertEqual(got.get("New/Stuff"), 1, got)
        self.assertNotIn("Sent Items", got)
        self.assertNotIn("Work", got)
        r = self.migrate("--map", "Work=Archive/Work", "--rename", "s|^Old|New|")
        self.assertIn("migrate: copied 0,", r.out)

    def test_into_a_folder(self):
        self.migrate("--into", "Imported", "--no-special-use-map")
        got = self.counts()
        self.assertEqual(got.get("Imported/INBOX"), 2, got)
        self.assertEqual(got.get("Imported/Sent Items"), 2, got)
        self.assertEqual(got.get("Imported/Old/Stuff"), 1, got)
        self.assertEqual(got.get("INBOX"), 0, got)

    def test_names_in_utf8(self):
        """Folder names are typed and shown in UTF-8 (modified UTF-7 is only the wire form)."""
        self.append(self.src, "Caf&AOk-", 2, 7)
        r = self.migrate("--only", "Caf\u00e9", "--map", "Caf\u00e9=Bistro/Caf\u00e9")
        self.assertRegex(r.out, "\nBistro/Caf\u00e9 +2 +2 +2 ")
        self.assertNotIn("&AOk-", r.out)
        got = self.counts()
        self.assertEqual(got.get("Bistro/Caf&AOk-"), 2, got)
        self.assertNotIn("Sent", [n for n in got if n.startswith("Sent ")])

    def test_bad_mapping_options(self):
        for args in (["--map", "Work"], ["--map", "=x"], ["--rename", "s|(|x|"],
                     ["--rename", "x"], ["--into", "/abs"]):
            self.migrate(*args, code=2)


class FilterTest(MigrateBase):
    def setUp(self):
        super().setUp()
        # INTERNALDATEs of make_message fall in 2020; sizes grow with size=.
        self.append(self.src, "INBOX", 8, 1)
        self.append(self.src, "Big", 2, 2, size=60000)
        self.append(self.src, "Work", 2, 3)

    def dst_ids(self):
        return {n: [r[0] for r in rows] for n, rows in full_view(self.dst)[0].items()}

    def test_since_and_before(self):
        sv, _ = full_view(self.src)
        dates = sorted(d for _m, _f, d in sv["INBOX"])
        cut = time.strftime("%Y-%m-%d", time.gmtime(dates[4] + 86400))
        r = self.migrate("--only", "INBOX", "--since", cut)
        got = full_view(self.dst)[0]["INBOX"]
        self.assertTrue(all(d >= dates[4] for _m, _f, d in got))
        self.assertIn(f"filtered out {8 - len(got)},", r.out)
        # A new state: what DST has is matched by identity, everything else is filtered.
        r = self.migrate("--only", "INBOX", "--before", "2000-01-01", "--state",
                         os.path.join(self.tmp.name, "other.db"))
        self.assertIn("copied 0,", r.out)
        self.assertIn(f"already there {len(got)},", r.out)
        self.assertIn(f"filtered out {8 - len(got)},", r.out)

    def test_max_size(self):
        self.migrate("--max-size", "20000")
        ids = self.dst_ids()
        self.assertEqual(ids.get("Big"), [], "large messages left out, folder created")
        self.assertEqual(len(ids["INBOX"]), 8)

    def test_only_and_exclude(self):
        self.migrate("--only", "INBOX", "--only", "Work")
        self.assertEqual(sorted(self.dst_ids()), ["INBOX", "Work"])
        self.migrate("--exclude", "Big", "--state", os.path.join(self.tmp.name, "x.db"))
        self.assertNotIn("Big", self.dst_ids())

    def test_subscribed_only_and_delete_spares_the_rest(self):
        c = self.src.client()
        c.subscribe("Work")
        c.logout()
        r = self.migrate("--subscribed-only")
        self.assertEqual(sorted(self.dst_ids()), ["INBOX", "Work"])
        # A folder migrated before and now left out is not "deleted on the source".
        self.migrate()
        r = self.migrate("--subscribed-only", "--delete")
        self.assertIn("deleted 0", r.out)
        self.assertEqual(sorted(self.dst_ids()), ["Big", "INBOX", "Work"])

    def test_bad_values_are_usage_errors(self):
        for args in (["--since", "2020-13-01"], ["--max-size", "-5"], ["--max-age", "x"],
                     ["--since", "2021-01-01", "--before", "2020-01-01"]):
            r = self.migrate(*args, code=2)
            self.assertIn("migrate:", r.err)


class DovecotToCyrusTest(MigrateBase):
    def make_dst(self):
        from tests.fixture.cyrus import Cyrus
        return Cyrus(users={"alice": "secret"}).start()

    def test_into_inbox_namespace(self):
        self.seed()
        before = full_view(self.src)
        self.migrate()
        self.assertCopied()
        self.assertIn("migrate: copied 0,", self.migrate().out)
        self.assertEqual(full_view(self.src), before)


class CourierToDovecotTest(MigrateBase):
    def make_src(self):
        from tests.fixture.courier import Courier
        return Courier(users={"alice": "secret"}).start()

    def test_from_courier(self):
        self.seed()
        before = full_view(self.src)
        self.migrate()
        self.assertCopied()
        self.assertIn("migrate: copied 0,", self.migrate().out)
        self.assertEqual(full_view(self.src), before)


class CyrusToDovecotTest(MigrateBase):
    def make_src(self):
        from tests.fixture.cyrus import Cyrus
        return Cyrus(users={"alice": "secret"}).start()

    def test_from_cyrus(self):
        self.seed()
        before = full_view(self.src)
        self.migrate()
        self.assertCopied()
        self.assertIn("migrate: copied 0,", self.migrate().out)
        self.assertEqual(full_view(self.src), before)


class KillTest(MigrateBase):
    ROUNDS = 10

    def test_kill_9_at_random_moments(self):
        rnd = random.Random(20261130)
        for box, n in (("INBOX", 800), ("A", 600), ("B", 600)):
            self.append(self.src, box, n, 5, size=800)
        expected = {n: sorted(r[0] for r in rows) for n, rows in full_view(self.src)[0].items()}
        for i in range(self.ROUNDS):
            p = subprocess.Popen([binary("twinbox"), "migrate", self.url(self.src),
                                  self.url(self.dst)], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL, env=self.env)
            time.sleep(rnd.uniform(0.05, 1.5))
            p.send_signal(signal.SIGKILL)
            p.wait(timeout=60)
            time.sleep(0.2)
        self.migrate()
        got = {n: sorted(r[0] for r in rows) for n, rows in full_view(self.dst)[0].items()}
        self.assertEqual(got, expected, "exactly the SRC set, no duplicate")
