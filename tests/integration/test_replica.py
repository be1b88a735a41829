"""Acceptance for replica mode (pair key `replica = yes`, issue 11) against two real Dovecot
instances loading the X-REPLICATE plugin: both sides keep the same UIDVALIDITY, mailbox
GUIDs and UIDs, HIGHESTMODSEQ on a written side never stays below the other's, and no UID
ever names two different messages. Everything is checked with imaplib (STATUS X-GUID,
UID FETCH, SELECT QRESYNC), not with twinbox.

Every test skips when the plugin is not built ($TWINBOX_PLUGIN_DIR)."""
import os
import random
import re
import signal
import subprocess
import tempfile
import time

from tests.fixture import imapcheck as ic
from tests.integration.common import TestCase, binary, twinbox
from tests.fixture.dovecot import available, plugin_dir_for
from tests.integration.test_xreplicate import make_dovecot

STATUS_RE = re.compile(rb"\((.*)\)\s*$")


def status(c, mailbox):
    """{ITEM: value} of STATUS (UIDVALIDITY UIDNEXT HIGHESTMODSEQ X-GUID MESSAGES)."""
    typ, data = c.status(ic.quote(mailbox), "(UIDVALIDITY UIDNEXT HIGHESTMODSEQ X-GUID MESSAGES)")
    assert typ == "OK", data
    m = STATUS_RE.search(data[0])
    words = m.group(1).decode().split()
    return {words[i].upper(): words[i + 1] for i in range(0, len(words), 2)}


def replica_view(dv, user="alice"):
    """{mailbox: (uidvalidity, guid, {uid: (message-id, flags)})} of every selectable
    mailbox, plus {mailbox: (uidnext, highestmodseq)}."""
    c = dv.client(user)
    try:
        view, nums = {}, {}
        for name in ic.list_mailboxes(c, selectable_only=True):
            st = status(c, name)
            msgs = {m["uid"]: (m.get("message_id"), m["flags"]) for m in ic.fetch_all(c, name)}
            c.close()
            view[name] = (st["UIDVALIDITY"], st["X-GUID"], msgs)
            nums[name] = (int(st["UIDNEXT"]), int(st["HIGHESTMODSEQ"]))
        return view, nums
    finally:
        c.logout()


def msg(msgid, body="hello"):
    return (f"From: a@example.org\r\nTo: b@example.org\r\nSubject: {msgid}\r\n"
            f"Message-ID: <{msgid}@twinbox.test>\r\nDate: Mon, 30 Nov 2026 10:00:00 +0000\r\n"
            f"\r\n{body}\r\n").encode()


class ReplicaBase(TestCase):
    maxDiff = None
    tcp = False
    versions = (None, None)  # the fixture's default on both sides

    def setUp(self):
        self.a = make_dovecot(True, version=self.versions[0], users={"alice": "secret"})
        self.b = make_dovecot(True, version=self.versions[1], users={"alice": "secret"})
        self.a.start()
        self.b.start()
        self.tmp = tempfile.TemporaryDirectory()
        self.cfg = os.path.join(self.tmp.name, "config")
        self.state = os.path.join(self.tmp.name, "p.db")
        self.write_config()
        self.seq = 0
        # (guid, uidvalidity, uid) -> message-id, over the whole test, both sides
        self.history = {}

    def tearDown(self):
        self.a.stop()
        self.b.stop()
        self.tmp.cleanup()

    def write_config(self, replica="yes"):
        with open(self.cfg, "w") as f:
            for name, dv in (("a", self.a), ("b", self.b)):
                if self.tcp:
                    f.write(f"[account {name}]\ntype = imap\nhost = 127.0.0.1\n"
                            f"port = {dv.imap_port}\nuser = alice\npassword = secret\n"
                            f"starttls = no\n\n")
                else:
                    f.write(f"[account {name}]\ntype = tunnel\n"
                            f"command = {dv.tunnel_command('alice')}\n\n")
            f.write(f"[pair p]\na = a\nb = b\nstate = {self.state}\nreplica = {replica}\n"
                    f"max-delete = unlimited\n")
        os.chmod(self.cfg, 0o600)

    def sync(self, *args, code=0):
        r = twinbox("-c", self.cfg, "sync", *args, timeout=600)
        self.assertEqual(r.code, code, r)
        return r

    def append(self, dv, box, n=1, flags=()):
        c = dv.client("alice")
        try:
            if box != "INBOX":
                c.create(ic.quote(box))
            ids = []
            for _ in range(n):
                self.seq += 1
                mid = f"m{self.seq}-{id(dv) % 1000}"
                ic.append(c, box, msg(mid, body="x" * (self.seq % 7 * 100)), flags=flags)
                ids.append(f"<{mid}@twinbox.test>")
            return ids
        finally:
            c.logout()

    def assertReplica(self, what=""):
        """Both sides identical UID for UID; every (mailbox, UID) seen so far still names
        the message it named before. Returns a's view."""
        va, na = replica_view(self.a)
        vb, nb = replica_view(self.b)
        self.assertEqual(sorted(va), sorted(vb), what)
        for name in va:
            if va[name] != vb[name]:
                ma, mb = va[name][2], vb[name][2]
                diff = {u: (ma.get(u), mb.get(u)) for u in set(ma) | set(mb)
                        if ma.get(u) != mb.get(u)}
                self.fail(f"{what}: mailbox {name} differs: identity a {va[name][:2]} "
                          f"b {vb[name][:2]}; UID: (a, b) {dict(sorted(diff.items())[:12])}"
                          f" ({len(diff)} UIDs differ)")
            uv, guid, msgs = va[name]
            ids = [m[0] for m in msgs.values()]
            dups = sorted((mid, u) for u, (mid, _f) in msgs.items() if ids.count(mid) > 1)
            self.assertEqual(dups, [], f"{what}: duplicates in {name} (message, UID)")
            for uid, (mid, _flags) in msgs.items():
                key = (guid, uv, uid)
                old = self.history.setdefault(key, mid)
                self.assertEqual(old, mid, f"{what}: {name} UID {uid} named {old}, now {mid}")
            self.assertEqual(na[name][0], nb[name][0], f"{what}: {name} UIDNEXT differs")
        return va


class InitialTest(ReplicaBase):
    def test_initial_sync_of_20_mailboxes(self):
        expect = {}
        expect["INBOX"] = self.append(self.a, "INBOX", 5, flags=("\\Seen",))
        for i in range(19):
            expect[f"F{i:02d}"] = self.append(self.a, f"F{i:02d}", 1 + i % 4)
        # gaps: the first message of some mailboxes expunged (UIDs do not start at 1)
        c = self.a.client("alice")
        for i in range(0, 19, 3):
            c.select(ic.quote(f"F{i:02d}"))
            c.uid("STORE", "1", "+FLAGS", "(\\Deleted)")
            c.uid("EXPUNGE", "1")
            c.close()
        c.logout()
        r = self.sync()
        va, na = replica_view(self.a)
        vb, nb = replica_view(self.b)
        self.assertEqual(len(va), 20)
        for name in va:
            self.assertEqual(va[name], vb[name], f"{name}: {r}")
            self.assertGreaterEqual(nb[name][1], na[name][1], f"{name}: HIGHESTMODSEQ")
            self.assertEqual(na[name][0], nb[name][0], f"{name}: UIDNEXT")
        # a no-op run after it changes nothing
        r2 = self.sync()
        self.assertIn("copied a->b 0, b->a 0", r2.out)
        self.assertReplica("after no-op")

    def test_requires_the_capability_on_both_sides(self):
        self.b.stop()
        self.b = make_dovecot(False, users={"alice": "secret"})
        self.b.start()
        self.write_config()
        r = self.sync(code=3)
        self.assertOneLineError(r, "X-REPLICATE-REPLICA", "b")

    def test_pair_synchronised_before_is_refused(self):
        self.append(self.a, "INBOX", 3)
        self.append(self.b, "INBOX", 2)
        self.write_config(replica="no")
        self.sync()
        self.write_config(replica="yes")
        r = self.sync(code=5)
        self.assertIn("replica-init", r.err)
        # nothing was written by the refused run
        va, _ = replica_view(self.a)
        self.assertEqual(len(va["INBOX"][2]), 5)


class ConflictTest(ReplicaBase):
    def test_same_uid_on_both_sides_gets_new_uids(self):
        self.append(self.a, "INBOX", 2)
        self.sync()
        self.assertReplica("first")
        ids_a = self.append(self.a, "INBOX", 2)  # UIDs 3, 4 on a
        ids_b = self.append(self.b, "INBOX", 1)  # UID 3 on b: a conflict
        r = self.sync()
        v = self.assertReplica("after conflict")
        mids = {m[0] for m in v["INBOX"][2].values()}
        self.assertTrue(set(ids_a + ids_b) <= mids, r)
        uids = {m[0]: u for u, m in v["INBOX"][2].items()}
        # UID 3 named different messages on a and b: neither keeps it
        self.assertGreater(uids[ids_a[0]], 4, r)
        self.assertGreater(uids[ids_b[0]], 4, r)
        self.assertEqual(uids[ids_a[1]], 4, r)  # free on b: kept
        self.assertIn("new UIDs", r.out)
        self.assertNotIn("falling back", r.err)  # the INBOX reset did not void the position

    def test_uid_used_by_an_expunged_message_is_not_reused(self):
        self.append(self.a, "INBOX", 2)
        self.sync()
        self.assertReplica("first")
        # a takes UID 3 and expunges it before any sync; b must never hand out 3
        self.append(self.a, "INBOX", 1)
        c = self.a.client("alice")
        c.select("INBOX")
        c.uid("STORE", "3", "+FLAGS", "(\\Deleted)")
        c.uid("EXPUNGE", "3")
        c.logout()
        self.sync()
        self.assertReplica("after")
        self.append(self.b, "INBOX", 1)
        self.sync()
        v = self.assertReplica("after b's append")
        self.assertNotIn(3, v["INBOX"][2])


class RandomizedTest(ReplicaBase):
    ROUNDS = int(os.environ.get("TWINBOX_REPLICA_ROUNDS", "12"))

    def change(self, rnd, dv, alive):
        c = dv.client("alice")
        try:
            boxes = ic.list_mailboxes(c, selectable_only=True)
            op = rnd.random()
            box = rnd.choice(boxes)
            if op < 0.08:
                self.seq += 1
                c.create(f"N{self.seq}")
            elif op < 0.14 and len(boxes) > 2:
                src = rnd.choice([b for b in boxes if b != "INBOX"])
                self.seq += 1
                c.rename(ic.quote(src), f"R{self.seq}")
            elif op < 0.55:
                self.seq += 1
                mid = f"m{self.seq}"
                ic.append(c, box, msg(mid))
                alive.add(f"<{mid}@twinbox.test>")
            else:
                msgs = ic.fetch_all(c, box)
                if not msgs:
                    return
                m = rnd.choice(msgs)
                c.select(ic.quote(box))
                if op < 0.85:
                    flag = rnd.choice(["\\Seen", "\\Flagged", "$Todo", "\\Answered"])
                    c.uid("STORE", str(m["uid"]), rnd.choice(["+FLAGS", "-FLAGS"]),
                          f"({flag})")
                else:
                    c.uid("STORE", str(m["uid"]), "+FLAGS", "(\\Deleted)")
                    c.uid("EXPUNGE", str(m["uid"]))
                    alive.discard(m["message_id"])
                c.close()
        finally:
            c.logout()

    def test_random_rounds_keep_uids_identical(self):
        rnd = random.Random(int(os.environ.get("TWINBOX_TEST_SEED", "20261130")))
        alive = set()
        for box in ("INBOX", "Work", "Lists"):
            ids = self.append(self.a, box, 3)
            alive.update(ids)
        self.sync()
        self.assertReplica("initial")
        for rnd_i in range(self.ROUNDS):
            for dv in (self.a, self.b):
                for _ in range(rnd.randrange(1, 6)):
                    self.change(rnd, dv, alive)
            r = self.sync()
            v = self.assertReplica(f"round {rnd_i}: {r.out.strip()}")
            present = [m[0] for box in v.values() for m in box[2].values()]
            self.assertEqual(len(present), len(set(present)), f"round {rnd_i}: duplicate")
            # an expunge on one side may win over the other's flag change, never over a
            # message the other side appended: everything alive is somewhere
            self.assertTrue(alive <= set(present),
                            f"round {rnd_i}: lost {sorted(alive - set(present))}")


class FailoverTest(ReplicaBase):
    def cache(self, dv, box):
        """A QRESYNC client's cache of one mailbox: UIDVALIDITY, HIGHESTMODSEQ and
        UID -> (message-id, flags)."""
        c = dv.client("alice")
        try:
            st = status(c, box)
            msgs = {m["uid"]: (m["message_id"], m["flags"]) for m in ic.fetch_all(c, box)}
            return int(st["UIDVALIDITY"]), int(st["HIGHESTMODSEQ"]), msgs
        finally:
            c.logout()

    def resync(self, dv, box, cache):
        """SELECT box (QRESYNC ...) with the cache: (UIDVALIDITY, vanished UIDs, changed
        {uid: flags}) as the server reports them."""
        uv, modseq, msgs = cache
        c = dv.client("alice")
        try:
            typ, data = c._simple_command("ENABLE", "QRESYNC")
            self.assertEqual(typ, "OK", data)
            known = ",".join(str(u) for u in sorted(msgs)) or "1"
            typ, data = c._simple_command("SELECT", ic.quote(box),
                                          f"(QRESYNC ({uv} {modseq} {known}))")
            self.assertEqual(typ, "OK", data)
            vanished = set()
            for v in c.untagged_responses.get("VANISHED", []):
                text = v.decode().replace("(EARLIER)", "").strip()
                for part in text.split(","):
                    lo, _, hi = part.partition(":")
                    vanished.update(range(int(lo), int(hi or lo) + 1))
            changed = {}
            for f in c.untagged_responses.get("FETCH", []):
                s = f.decode() if isinstance(f, bytes) else str(f)
                mu = re.search(r"UID (\d+)", s)
                mf = re.search(r"FLAGS \(([^)]*)\)", s)
                if mu and mf:
                    changed[int(mu.group(1))] = tuple(sorted(
                        x for x in mf.group(1).split() if x != "\\Recent"))
            uvs = c.untagged_responses.get("OK", [])
            return vanished, changed, uvs
        finally:
            c.logout()

    def test_client_cache_stays_valid_on_the_other_server(self):
        self.append(self.a, "INBOX", 6)
        self.append(self.a, "Work", 4)
        self.sync()
        caches = {box: self.cache(self.a, box) for box in ("INBOX", "Work")}
        # changes on both sides after the client cached a's state
        c = self.a.client("alice")
        c.select("INBOX")
        c.uid("STORE", "2", "+FLAGS", "(\\Flagged)")
        c.uid("STORE", "3", "+FLAGS", "(\\Deleted)")
        c.uid("EXPUNGE", "3")
        c.logout()
        c = self.b.client("alice")
        c.select("Work")
        c.uid("STORE", "1", "+FLAGS", "(\\Seen $Todo)")
        c.logout()
        self.append(self.b, "INBOX", 1)
        self.sync()
        self.assertReplica("after sync")
        for box, cache in caches.items():
            uv, _modseq, msgs = cache
            now = self.cache(self.b, box)
            self.assertEqual(now[0], uv, f"{box}: UIDVALIDITY")
            vanished, changed, _ = self.resync(self.b, box, cache)
            for uid, (mid, flags) in msgs.items():
                if uid in now[2]:
                    self.assertEqual(now[2][uid][0], mid, f"{box} UID {uid}")
                    if now[2][uid][1] != flags:
                        # a flag change since the cache must be reported to the client
                        self.assertIn(uid, changed, f"{box} UID {uid}: stale flags")
                        self.assertEqual(changed[uid], now[2][uid][1])
                else:
                    self.assertIn(uid, vanished, f"{box} UID {uid}: gone, not reported")


class KillTest(ReplicaBase):
    def test_kill_during_replica_syncs(self):
        rnd = random.Random(int(os.environ.get("TWINBOX_TEST_SEED", "7")))
        alive = set()
        for box in ("INBOX", "Work"):
            alive.update(self.append(self.a, box, 30))
        self.sync()
        for rnd_i in range(6):
            alive.update(self.append(self.a, "INBOX", 8))
            alive.update(self.append(self.b, "INBOX", 5))  # conflicting UIDs
            alive.update(self.append(self.b, f"K{rnd_i}", 10))
            p = subprocess.Popen([binary("twinbox"), "-c", self.cfg, "sync"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(rnd.uniform(0.05, 0.6))
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
            p.wait(timeout=120)
            self.sync()
            r = self.sync()  # settled: a second run finds nothing to do
            self.assertIn("copied a->b 0, b->a 0", r.out, r)
            v = self.assertReplica(f"kill round {rnd_i}")
            present = [m[0] for box in v.values() for m in box[2].values()]
            self.assertEqual(len(present), len(set(present)), f"round {rnd_i}: duplicate")
            self.assertTrue(alive <= set(present), f"lost {sorted(alive - set(present))}")


class TcpTest(ReplicaBase):
    """Over TCP (the others use tunnel accounts)."""
    tcp = True

    def test_initial_sync_and_conflict_over_tcp(self):
        self.append(self.a, "INBOX", 3)
        self.append(self.b, "Other", 2)
        self.sync()
        self.assertReplica("first")
        self.append(self.a, "Other", 1)
        self.append(self.b, "Other", 1)
        self.sync()
        self.assertReplica("conflict")


class ReplicaInitTest(ReplicaBase):
    """replica-init on a pair synchronised without replica mode: b's mailboxes take a's
    identity and UIDs; nothing is lost or duplicated, a's UIDs do not change (but for
    INBOX messages below b's old UIDNEXT), b's own new messages survive."""
    SIZES = {"INBOX": 400, "Work": 400, "Lists": 400, "Archive.2025": 400, "Sent": 400}

    def prepare(self):
        alive = set()
        for i, (box, n) in enumerate(self.SIZES.items()):
            alive.update(ic.load_messages(self.a, "alice", box, n, size=600, seed=i))
        # UID gaps on a, so a's and b's UIDs differ after a plain sync
        c = self.a.client("alice")
        for box in self.SIZES:
            c.select(ic.quote(box))
            c.uid("STORE", "1:40", "+FLAGS", "(\\Deleted)")
            c.uid("EXPUNGE", "1:40")
            c.close()
        c.logout()
        self.write_config(replica="no")
        self.sync()
        self.write_config(replica="yes")
        # b's own new mail after the last plain sync, and a flag change on a
        extra = self.append(self.b, "INBOX", 2) + self.append(self.b, "Work", 3)
        snap = {box: rows for box, rows in ic.snapshot(self.a, "alice").items()}
        present = {r[0] for rows in snap.values() for r in rows}
        return present | set(extra), extra

    def a_uids(self):
        v, _ = replica_view(self.a)
        return {box: {u: m[0] for u, m in msgs.items()} for box, (_uv, _g, msgs) in v.items()}

    def check(self, expected, before):
        r = twinbox("-c", self.cfg, "sync", timeout=600)
        self.assertEqual(r.code, 0, r)
        self.assertIn("copied a->b 0, b->a 0", r.out, r)
        v = self.assertReplica("after replica-init")
        present = [m[0] for box in v.values() for m in box[2].values()]
        self.assertEqual(len(present), len(set(present)), "duplicate")
        self.assertEqual(set(present), expected, "lost or extra messages")
        after = self.a_uids()
        for box in self.SIZES:
            if box != "INBOX":
                for uid, mid in before[box].items():
                    self.assertEqual(after[box].get(uid), mid, f"a's {box} UID {uid} changed")

    def test_replica_init_2000_messages(self):
        expected, extra = self.prepare()
        before = self.a_uids()
        r = twinbox("-c", self.cfg, "sync", timeout=600)
        self.assertEqual(r.code, 5, r)  # replica mode refuses the unconverted pair
        self.assertIn("replica-init", r.err)
        r = twinbox("-c", self.cfg, "replica-init", "p", "--reference", "a", timeout=900)
        self.assertEqual(r.code, 0, r)
        self.check(expected, before)

    def test_replica_init_killed_midway_and_rerun(self):
        expected, extra = self.prepare()
        before = self.a_uids()
        rnd = random.Random(int(os.environ.get("TWINBOX_TEST_SEED", "11")))
        log = []
        for _ in range(4):
            with tempfile.TemporaryFile("w+") as out:
                p = subprocess.Popen([binary("twinbox"), "-c", self.cfg, "replica-init", "p",
                                      "--reference", "a"],
                                     stdout=out, stderr=subprocess.STDOUT, text=True)
                time.sleep(rnd.uniform(0.2, 2.5))
                if p.poll() is None:
                    p.send_signal(signal.SIGKILL)
                p.wait(timeout=300)
                out.seek(0)
                log.append("init: " + out.read())
            # an interrupted init is never synchronised as if its mailboxes were deleted
            r = twinbox("-c", self.cfg, "sync", timeout=600)
            log.append(f"sync: {r}")
            self.assertIn(r.code, (0, 5, 7), r)
        r = twinbox("-c", self.cfg, "replica-init", "p", "--reference", "a", timeout=900)
        log.append(f"init: {r}")
        self.assertEqual(r.code, 0, r)
        try:
            self.check(expected, before)
        except AssertionError:
            print("\n".join(log))
            raise


class MixedVersionsTest(ReplicaBase):
    """A 2.3 server paired with a 2.4 one (the upgrade path): the same guarantees."""
    versions = ("2.3", "2.4")

    def setUp(self):
        if not available("2.4") or not plugin_dir_for("2.4") or not plugin_dir_for("2.3"):
            self.skipTest("needs Dovecot 2.4 and the plugin built for 2.3 and 2.4 "
                          "($TWINBOX_PLUGIN_DIR_23, $TWINBOX_PLUGIN_DIR_24)")
        super().setUp()

    def test_initial_conflict_and_expunge_across_versions(self):
        self.append(self.a, "INBOX", 4)
        self.append(self.b, "Notes", 3)
        self.sync()
        self.assertReplica("first")
        self.append(self.a, "INBOX", 2)
        self.append(self.b, "INBOX", 2)
        c = self.b.client("alice")
        c.select("Notes")
        c.uid("STORE", "2", "+FLAGS", "(\\Deleted)")
        c.uid("EXPUNGE", "2")
        c.logout()
        r = self.sync()
        self.assertIn("new UIDs", r.out)
        v = self.assertReplica("conflict")
        self.assertEqual(len(v["INBOX"][2]), 8)
        self.assertEqual(sorted(v["Notes"][2]), [1, 3])
