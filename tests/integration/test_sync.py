"""Acceptance for the sync engine against two real Dovecot instances (different hierarchy
separators), checked with the independent imaplib client."""
import fcntl
import os
import random
import tempfile

from tests.fixture import imapcheck as ic
from tests.fixture.dovecot import Dovecot
from tests.fixture.relay import Relay
from tests.integration.common import TestCase, tb_client, twinbox


class SyncBase(TestCase):
    sep_b = "/"
    maxDiff = None

    def setUp(self):
        self.a = Dovecot(users={"alice": "secret"})
        self.b = Dovecot(users={"alice": "secret"}, separator=self.sep_b)
        self.a.start()
        self.b.start()
        self.tmp = tempfile.TemporaryDirectory()
        self.cfg = os.path.join(self.tmp.name, "config")
        self.state = os.path.join(self.tmp.name, "p.db")
        self.write_config()

    def tearDown(self):
        self.a.stop()
        self.b.stop()
        self.tmp.cleanup()

    def write_config(self, a_port=None, b_port=None, compress="yes", extra=""):
        with open(self.cfg, "w") as f:
            for name, dv, port in (("a", self.a, a_port), ("b", self.b, b_port)):
                if port:
                    f.write(f"[account {name}]\ntype = imap\nhost = 127.0.0.1\nport = {port}\n"
                            f"user = alice\npassword = secret\nstarttls = no\n"
                            f"compress = {compress}\n{extra}\n")
                else:
                    f.write(f"[account {name}]\ntype = tunnel\n"
                            f"command = {dv.tunnel_command('alice')}\n\n")
            f.write(f"[pair p]\na = a\nb = b\nstate = {self.state}\n")
        os.chmod(self.cfg, 0o600)

    def sync(self, *args, code=0, env=None):
        r = twinbox("-c", self.cfg, "sync", *args, timeout=600, env=env)
        self.assertEqual(r.code, code, r)
        return r

    def snap(self, dv):
        return ic.snapshot(dv, "alice", as_separator="/")

    def assertSame(self):
        sa, sb = self.snap(self.a), self.snap(self.b)
        self.assertEqual(sorted(sa), sorted(sb))
        for name in sa:
            self.assertEqual(sa[name], sb[name], f"mailbox {name} differs")
        return sa

    def flags_of(self, dv, mailbox):
        c = dv.client("alice")
        try:
            return {m["message_id"]: set(m["flags"]) for m in ic.fetch_all(c, mailbox)}
        finally:
            c.logout()

    def store(self, dv, mailbox, msgid, op, flags):
        c = dv.client("alice")
        try:
            c.select(ic.quote(mailbox))
            for m in ic.fetch_all(c, mailbox):
                if m["message_id"] == msgid:
                    c.select(ic.quote(mailbox))
                    typ, data = c.uid("STORE", str(m["uid"]), op, "(" + flags + ")")
                    self.assertEqual(typ, "OK", data)
                    return m["uid"]
            self.fail(f"{msgid} not in {mailbox}")
        finally:
            c.logout()

    def expunge(self, dv, mailbox, msgid):
        uid = self.store(dv, mailbox, msgid, "+FLAGS", "\\Deleted")
        c = dv.client("alice")
        try:
            c.select(ic.quote(mailbox))
            c.uid("EXPUNGE", str(uid))
        finally:
            c.logout()


class InitialSyncTest(SyncBase):
    def test_initial_sync_then_noop(self):
        names = ["INBOX", "Archive", "Archive.2024", "Archive.2025", "Archive.2025.Q1",
                 "Archive.2025.Q2", "Work", "Work.Projects", "Work.Projects.twinbox",
                 "Work.Projects.twinbox.&AMQ-rger", "&AMQ-rger", "Caf&AOk-",
                 "&ZeVnLIqe-", "Lists", "Lists.dovecot", "Lists.imap", "Drafts", "Sent", "Junk",
                 "Trash"]
        rnd = random.Random(1)
        c = self.a.client("alice")
        for i, name in enumerate(names):
            flags = [("\\Seen",), ("\\Flagged", "$Work"), ()][i % 3]
            ic.load_messages(self.a, "alice", name, 90 + rnd.randrange(30), size=1500,
                             seed=i, flags=flags, client=c)
        c.logout()
        r = self.sync()
        self.assertIn("copied a->b", r.out)
        snap = self.assertSame()
        self.assertIn("&AMQ-rger", snap)
        self.assertIn("Work/Projects/twinbox/&AMQ-rger", snap)
        self.assertIn("&ZeVnLIqe-", snap)
        total = sum(len(v) for v in snap.values())
        self.assertGreater(total, 1900)
        # Second run: nothing to copy, nothing changes.
        r = self.sync()
        self.assertIn("copied a->b 0, b->a 0, flag updates 0, expunged 0", r.out)
        self.assertEqual(self.assertSame(), snap)

    def test_settling_passes_share_one_round_trip(self):
        """After copying into 10 mailboxes, the passes that confirm the writes settled go out
        together: side b pays one round trip for all of them, not one per mailbox."""
        names = [f"M{i}" for i in range(10)]
        for n in names:
            ic.load_messages(self.a, "alice", n, 2, seed=len(n))
        self.sync()
        for i, n in enumerate(names):
            ic.load_messages(self.a, "alice", n, 1, seed=5, start=100 + i)
        rb = Relay(self.b.imap_port)
        try:
            self.write_config(b_port=rb.port)
            rb.reset_counters()
            r = self.sync()
            self.assertIn("copied a->b 10, b->a 0", r.out)
            # login 3 + LIST 1 + per mailbox (SELECT, APPEND) 2 + settling 1 + LOGOUT 1;
            # one round trip per mailbox more if the settling SELECTs were not pipelined
            self.assertLessEqual(rb.stats()["turns"], 3 + 1 + 2 * len(names) + 1 + 1,
                                 r.out)
            self.assertSame()
            self.assertIn("copied a->b 0, b->a 0, flag updates 0, expunged 0", self.sync().out)
        finally:
            rb.stop()

    def test_noop_rerun_turns(self):
        ic.load_messages(self.a, "alice", "INBOX", 20)
        ic.load_messages(self.a, "alice", "Box", 20)
        self.sync()
        ra, rb = Relay(self.a.imap_port), Relay(self.b.imap_port)
        try:
            self.write_config(ra.port, rb.port)
            self.sync()  # first TCP run may settle what the tunnel run left (none expected)
            base = []
            for relay in (ra, rb):
                relay.reset_counters()
                r = tb_client(f"imap://alice@127.0.0.1:{relay.port}/?starttls=no", "noop", "0",
                              env={"TWINBOX_PASSWORD": "secret"})
                self.assertEqual(r.code, 0, r)
                base.append(relay.stats()["turns"])
            ra.reset_counters()
            rb.reset_counters()
            r = self.sync()
            self.assertIn("copied a->b 0, b->a 0", r.out)
            for relay, b in ((ra, base[0]), (rb, base[1])):
                self.assertLessEqual(relay.stats()["turns"] - b, 2,
                                     f"no-op sync used {relay.stats()['turns']} turns "
                                     f"(login+logout alone: {b})")
        finally:
            ra.stop()
            rb.stop()


    def test_noop_in_two_round_trips(self):
        # Dovecot, no X-REPLICATE: login, session set-up and the listing in one flight, then
        # LOGOUT (not waited for). COMPRESS = yes costs nothing here: nothing moves.
        ic.load_messages(self.a, "alice", "INBOX", 5)
        ic.load_messages(self.a, "alice", "Box", 5)
        ra, rb = Relay(self.a.imap_port), Relay(self.b.imap_port)
        try:
            self.write_config(ra.port, rb.port, extra="xreplicate = no\n")
            self.sync()
            self.assertSame()
            ra.reset_counters()
            rb.reset_counters()
            r = self.sync()
            self.assertIn("copied a->b 0, b->a 0", r.out)
            self.assertEqual((ra.stats()["turns"], rb.stats()["turns"]), (2, 2), r.out)
            # Still a real listing: a mailbox created since is found and synced.
            c = self.a.client("alice")
            c.create("Later")
            c.logout()
            self.sync()
            self.assertIn("Later", self.assertSame())
        finally:
            ra.stop()
            rb.stop()


    def test_changed_mailboxes_written_in_one_batch(self):
        # Six mailboxes changed on both sides (new, flagged, expunged messages): their first
        # passes are written together, so the round trips do not grow with the number of
        # changed mailboxes (one mailbox after another took three each).
        boxes = ["INBOX"] + [f"Box{i}" for i in range(5)]
        ids = {b: ic.load_messages(self.a, "alice", b, 6, seed=i) for i, b in enumerate(boxes)}
        ra, rb = Relay(self.a.imap_port), Relay(self.b.imap_port)
        try:
            self.write_config(ra.port, rb.port, compress="no", extra="xreplicate = no\n")
            self.sync()
            self.assertSame()
            for i, b in enumerate(boxes):
                ic.load_messages(self.a, "alice", b, 1, seed=i, start=6)
                ic.load_messages(self.b, "alice", b, 1, seed=i, start=7)
                self.store(self.a, b, ids[b][0], "+FLAGS", "\\Flagged")
                self.store(self.b, b, ids[b][1], "+FLAGS", "\\Answered")
                self.expunge(self.a, b, ids[b][2])
                self.expunge(self.b, b, ids[b][3])
            ra.reset_counters()
            rb.reset_counters()
            r = self.sync()
            self.assertIn("copied a->b 6, b->a 6, flag updates 12, expunged 12", r.out)
            turns = (ra.stats()["turns"], rb.stats()["turns"])
            # Login and listing, the deltas, the batch's two flights, the settling pass, the
            # LOGOUT: 6. An APPEND goes out as soon as its body arrived, so on this fast
            # link the six APPENDs may take up to six writes that follow server data; one
            # mailbox after another took three round trips each (about 20 in all).
            self.assertLessEqual(max(turns), 11, f"{turns}: {r.out}")
            snap = self.assertSame()
            for i, b in enumerate(boxes):
                got = {row[0] for row in snap[b]}
                self.assertEqual(len(snap[b]), 6, b)
                self.assertFalse(got & {ids[b][2], ids[b][3]}, b)
            self.assertEqual(self.flags_of(self.b, "Box2")[ids["Box2"][0]], {"\\Flagged"})
            self.assertEqual(self.flags_of(self.a, "Box2")[ids["Box2"][1]], {"\\Answered"})
            r = self.sync()
            self.assertIn("copied a->b 0, b->a 0, flag updates 0, expunged 0", r.out)
        finally:
            ra.stop()
            rb.stop()


    def test_batch_in_many_rounds_commits_every_mailbox(self):
        # A batch split into one round per mailbox (TWINBOX_TEST_ROUND_BYTES): each round is
        # submitted before the one before it completed, and committed after it. Every
        # mailbox still ends the same on both sides, each message once, and is recorded: the
        # next run has nothing to do, also after changes on both sides written in rounds.
        boxes = [f"R{i}" for i in range(8)]
        c = self.a.client("alice")
        ids = {b: ic.load_messages(self.a, "alice", b, 3, size=3000, seed=i, client=c)
               for i, b in enumerate(boxes)}
        c.logout()
        env = {"TWINBOX_TEST_ROUND_BYTES": "1"}
        ra, rb = Relay(self.a.imap_port), Relay(self.b.imap_port)
        try:
            self.write_config(ra.port, rb.port, compress="no", extra="xreplicate = no\n")
            r = self.sync(env=env)
            self.assertIn("copied a->b 24, b->a 0", r.out)
            snap = self.assertSame()
            for b in boxes:
                self.assertEqual(sorted(row[0] for row in snap[b]), sorted(ids[b]), b)
            # every mailbox recorded: the next run is a no-op, login and listing then LOGOUT
            ra.reset_counters()
            rb.reset_counters()
            r = self.sync(env=env)
            self.assertIn("copied a->b 0, b->a 0, flag updates 0, expunged 0", r.out)
            self.assertEqual((ra.stats()["turns"], rb.stats()["turns"]), (2, 2), r.out)
            for i, b in enumerate(boxes):
                ic.load_messages(self.b, "alice", b, 1, size=3000, seed=i, start=5)
                self.store(self.a, b, ids[b][0], "+FLAGS", "\\Flagged")
                self.expunge(self.b, b, ids[b][1])
            r = self.sync(env=env)
            self.assertIn("copied a->b 0, b->a 8, flag updates 8, expunged 8", r.out)
            snap = self.assertSame()
            for b in boxes:
                got = [row[0] for row in snap[b]]
                self.assertEqual(len(got), 3, b)
                self.assertEqual(len(set(got)), 3, b)
                self.assertNotIn(ids[b][1], got, b)
                self.assertEqual(self.flags_of(self.b, b)[ids[b][0]], {"\\Flagged"})
            ra.reset_counters()
            rb.reset_counters()
            r = self.sync(env=env)
            self.assertIn("copied a->b 0, b->a 0, flag updates 0, expunged 0", r.out)
            self.assertEqual((ra.stats()["turns"], rb.stats()["turns"]), (2, 2), r.out)
        finally:
            ra.stop()
            rb.stop()

    def test_new_mailboxes_listed_and_written_together(self):
        # A first sync of 30 small folders: created and listed in one flight, copied in one
        # batch. One folder after another took at least two round trips each on the source.
        c = self.a.client("alice")
        for i in range(30):
            ic.load_messages(self.a, "alice", f"F{i:02d}", 2, size=800, seed=i, client=c)
        c.logout()
        ra, rb = Relay(self.a.imap_port), Relay(self.b.imap_port)
        try:
            self.write_config(ra.port, rb.port, compress="no", extra="xreplicate = no\n")
            r = self.sync()
            self.assertIn("copied a->b 60, b->a 0", r.out)
            # source: login and listing, the folders' listings, the copies' FETCHes, the
            # settling pass, LOGOUT
            self.assertLessEqual(ra.stats()["turns"], 8, r.out)
            snap = self.assertSame()
            self.assertEqual(sum(len(snap[f"F{i:02d}"]) for i in range(30)), 60)
            r = self.sync()
            self.assertIn("copied a->b 0, b->a 0", r.out)
        finally:
            ra.stop()
            rb.stop()


class CompressAutoTest(SyncBase):
    """compress = auto starts COMPRESS on a far link only once it proved slow: moving mail
    uncompressed, 2 MiB at a time, 6 MiB in all (src/protocol/compress_auto.c)."""

    def run_through(self, relay):
        """A first sync of 40 MiB of text from a (through relay) to b (a tunnel); whether a
        sent COMPRESS, and what the server sent through the relay."""
        self.write_config(relay.port, None, compress="auto", extra="xreplicate = no\n")
        r = twinbox("-vv", "-c", self.cfg, "sync", timeout=600)
        self.assertEqual(r.code, 0, r)
        self.assertIn("copied a->b 40,", r.out)
        sent = b"COMPRESS DEFLATE" in b"".join(relay.captured("c2s"))
        return sent, relay.stats()["bytes_s2c"], r

    def test_slow_far_link_compressed_after_the_probe(self):
        ic.load_messages(self.a, "alice", "INBOX", 40, size=1 << 20)
        relay = Relay(self.a.imap_port, capture="c2s", delay=0.02, rate=8e6)
        try:
            sent, s2c, r = self.run_through(relay)
        finally:
            relay.stop()
        self.assertTrue(sent, r.err)
        self.assertRegex(r.err, r"a: COMPRESS: the link moved [0-9.]+ MB/s")
        # The probe's 6 MiB and the FETCHes in flight when it ended (4 MiB while it probes)
        # went as they are, the rest compressed (this text to less than half).
        self.assertLess(s2c, 28 * (1 << 20), r.err)
        self.assertSame()

    def test_fast_far_link_left_uncompressed(self):
        ic.load_messages(self.a, "alice", "INBOX", 40, size=1 << 20)
        relay = Relay(self.a.imap_port, capture="c2s", delay=0.02)
        try:
            # A loaded machine can slow the relay below the threshold (the decision then
            # follows what was measured): one run of three must see the fast link.
            runs = []
            for _ in range(3):
                if os.path.exists(self.state):
                    os.remove(self.state)
                c = self.b.client("alice")
                if int(c.select("INBOX")[1][0]):
                    c.store("1:*", "+FLAGS", "(\\Deleted)")
                    c.expunge()
                c.logout()
                relay.clear_captured()
                relay.reset_counters()
                sent, s2c, r = self.run_through(relay)
                runs.append((sent, s2c))
                if not sent:
                    break
        finally:
            relay.stop()
        self.assertIn(False, [sent for sent, _ in runs], runs)
        self.assertRegex(r.err, r"a: COMPRESS left out: the link moved [0-9.]+ MB/s")
        self.assertGreater(runs[-1][1], 40 * (1 << 20))
        self.assertSame()


class MergeTest(SyncBase):
    def test_conflict_merge_and_expunge_wins(self):
        ids = ic.load_messages(self.a, "alice", "INBOX", 3, flags=("\\Flagged",))
        self.sync()
        self.assertSame()
        # base (\Flagged); A +\Answered; B +\Seen -\Flagged  ->  (\Answered \Seen)
        self.store(self.a, "INBOX", ids[0], "+FLAGS", "\\Answered")
        self.store(self.b, "INBOX", ids[0], "+FLAGS", "\\Seen")
        self.store(self.b, "INBOX", ids[0], "-FLAGS", "\\Flagged")
        # expunge on A, concurrent flag change on B: expunged on both
        self.expunge(self.a, "INBOX", ids[1])
        self.store(self.b, "INBOX", ids[1], "+FLAGS", "\\Seen")
        self.sync()
        for dv in (self.a, self.b):
            f = self.flags_of(dv, "INBOX")
            self.assertEqual(f[ids[0]], {"\\Answered", "\\Seen"})
            self.assertNotIn(ids[1], f)
            self.assertEqual(f[ids[2]], {"\\Flagged"})
        self.assertSame()

    def test_overlapping_accounts_first_sync(self):
        both = ic.load_messages(self.a, "alice", "INBOX", 10, seed=5)
        ic.load_messages(self.b, "alice", "INBOX", 10, seed=5)
        only_a = ic.load_messages(self.a, "alice", "INBOX", 3, seed=5, start=10)
        only_b = ic.load_messages(self.b, "alice", "INBOX", 4, seed=5, start=20)
        self.sync()
        snap = self.assertSame()
        ids = [row[0] for row in snap["INBOX"]]
        self.assertEqual(len(ids), len(set(ids)), "a message was duplicated")
        self.assertEqual(set(ids), set(both + only_a + only_b))

    def test_messages_without_message_id_are_told_apart(self):
        # Same size and INTERNALDATE, no Message-ID, different subjects: not the same message.
        day = 1700000000
        for dv, subj in ((self.a, "Subject: aaaa"), (self.b, "Subject: bbbb")):
            c = dv.client("alice")
            ic.append(c, "INBOX", f"{subj}\r\nFrom: x@example.org\r\n\r\nbody\r\n".encode(),
                      date=day)
            c.logout()
        self.sync()
        snap = self.assertSame()
        self.assertEqual(len(snap["INBOX"]), 2, snap)

    def test_uidvalidity_change_rematches(self):
        ids = ic.load_messages(self.a, "alice", "Box", 8)
        self.sync()
        # Recreate the mailbox on A with the same messages: a new UIDVALIDITY.
        c = self.a.client("alice")
        c.delete("Box")
        c.logout()
        ic.load_messages(self.a, "alice", "Box", 8)
        self.sync()
        snap = self.assertSame()
        self.assertEqual(sorted(r[0] for r in snap["Box"]), sorted(ids))

    def test_lock_held_exit_code(self):
        ic.load_messages(self.a, "alice", "INBOX", 1)
        with open(self.state + ".lock", "w") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            r = self.sync(code=6)
            self.assertIn("another twinbox run", r.err)
        self.sync()
        self.assertSame()

    def test_mailbox_create_and_delete(self):
        ic.load_messages(self.a, "alice", "Old", 2)
        self.sync()
        c = self.b.client("alice")
        c.delete("Old")
        c.create("New/Sub")
        c.logout()
        ic.load_messages(self.b, "alice", "New/Sub", 2)
        self.sync()
        snap = self.assertSame()
        self.assertNotIn("Old", snap)
        self.assertIn("New/Sub", snap)

    def test_rename_moves_no_message(self):
        ic.load_messages(self.a, "alice", "Proj", 200, size=3000)
        ic.load_messages(self.a, "alice", "Proj.Sub", 5)
        self.sync()
        c = self.b.client("alice")
        self.assertEqual(c.rename("Proj", "Old")[0], "OK")
        c.logout()
        r = self.sync()
        self.assertIn("copied a->b 0, b->a 0", r.out)
        self.assertIn("renamed 1", r.out)
        snap = self.assertSame()
        self.assertNotIn("Proj", snap)
        self.assertEqual(len(snap["Old"]), 200)
        self.assertEqual(len(snap["Old/Sub"]), 5)
        r = self.sync()
        self.assertIn("copied a->b 0, b->a 0, flag updates 0, expunged 0", r.out)

    def test_status_reports_changes(self):
        ic.load_messages(self.a, "alice", "INBOX", 2)
        self.sync()
        r = twinbox("-c", self.cfg, "status")
        self.assertEqual(r.code, 0, r)
        self.assertRegex(r.out, r"INBOX +a: \d+/\d+/\d+ in sync +b: \d+/\d+/\d+ in sync")
        ic.load_messages(self.b, "alice", "INBOX", 1, start=50)
        r = twinbox("-c", self.cfg, "status")
        self.assertRegex(r.out, r"INBOX +a: .* in sync +b: .* new messages")

    def test_auth_failure_is_one_line_exit_4(self):
        self.write_config(a_port=self.a.imap_port)
        with open(self.cfg) as f:
            text = f.read().replace("password = secret", "password = wrong", 1)
        with open(self.cfg, "w") as f:
            f.write(text)
        r = self.sync(code=4)
        lines = [l for l in r.err.splitlines() if l.strip()]
        self.assertEqual(len(lines), 1, r)
        self.assertIn("a: login: login failed", lines[0])
        self.assertNotIn("wrong", r.err + r.out)

    def test_delete_parent_and_children(self):
        ic.load_messages(self.a, "alice", "P", 2)
        ic.load_messages(self.a, "alice", "P.C", 2)
        ic.load_messages(self.a, "alice", "P.C.D", 2)
        self.sync()
        c = self.a.client("alice")
        for name in ("P.C.D", "P.C", "P"):
            self.assertEqual(c.delete(name)[0], "OK")
        c.logout()
        r = self.sync()
        self.assertIn("deleted 3", r.out)
        snap = self.assertSame()
        self.assertFalse([m for m in snap if m.startswith("P")], snap)
        r = self.sync()
        self.assertIn("copied a->b 0, b->a 0, flag updates 0, expunged 0, mailboxes created 0",
                      r.out)

    def test_mailbox_filters(self):
        for box in ("INBOX", "Keep", "Skip", "Trash"):
            ic.load_messages(self.a, "alice", box, 1, seed=hash(box) % 100)
        with open(self.cfg, "a") as f:
            f.write("exclude = Trash, Sk*\n")
        self.sync("--mailbox", "INBOX")
        sb = self.snap(self.b)
        self.assertEqual(len(sb["INBOX"]), 1)
        self.assertNotIn("Keep", sb)
        self.sync()
        sb = self.snap(self.b)
        self.assertIn("Keep", sb)
        self.assertNotIn("Skip", sb)
        self.assertNotIn("Trash", sb)

    def test_dry_run_changes_nothing(self):
        ic.load_messages(self.a, "alice", "INBOX", 3)
        r = self.sync("--dry-run")
        self.assertIn("dry run", r.out)
        self.assertEqual(self.snap(self.b).get("INBOX", []), [])
        self.sync()
        self.assertSame()


class RandomizedTest(SyncBase):
    ROUNDS = 30

    def test_random_two_sided_changes(self):
        rnd = random.Random(int(os.environ.get("TWINBOX_TEST_SEED", "20261123")))
        ic.load_messages(self.a, "alice", "INBOX", 10, seed=1)
        ic.load_messages(self.a, "alice", "Box", 10, seed=2)
        self.sync()
        counter = 100
        for rnd_i in range(self.ROUNDS):
            for dv in (self.a, self.b):
                for _ in range(rnd.randrange(1, 5)):
                    snap = self.snap(dv)
                    box = rnd.choice(sorted(snap))
                    rows = snap[box]
                    op = rnd.random()
                    flat = [b for b in sorted(snap) if "/" not in b and b != "INBOX"]
                    if op < 0.06:
                        counter += 1
                        ic.load_messages(dv, "alice", f"M{counter}", 1, seed=9, start=counter)
                    elif op < 0.10 and flat:
                        c = dv.client("alice")
                        c.delete(ic.quote(rnd.choice(flat)))
                        c.logout()
                    elif op < 0.14 and flat:
                        counter += 1
                        c = dv.client("alice")
                        c.rename(ic.quote(rnd.choice(flat)), ic.quote(f"R{counter}"))
                        c.logout()
                    elif op < 0.45 or not rows:
                        counter += 1
                        ic.load_messages(dv, "alice", box, 1, seed=9, start=counter)
                    elif op < 0.75:
                        # FLAGS replaces: Dovecot logs them as "add these, remove all
                        # others", which X-REPLICATE must not report as more than happened
                        kind = rnd.choice(["+FLAGS", "-FLAGS", "+FLAGS", "-FLAGS", "FLAGS"])
                        pool = ["\\Seen", "\\Flagged", "$Todo", "\\Answered", "$Label1",
                                "Work", "\\Draft"]
                        f = (" ".join(rnd.sample(pool, rnd.randint(0, 3))) if kind == "FLAGS"
                             else rnd.choice(pool))
                        self.store(dv, box, rnd.choice(rows)[0], kind, f)
                    else:
                        self.expunge(dv, box, rnd.choice(rows)[0])
            r = self.sync()
            print(f"round {rnd_i}: {r.out.strip()}")
            snap = self.assertSame()
            for name, rows in snap.items():
                ids = [r[0] for r in rows]
                self.assertEqual(len(ids), len(set(ids)), f"round {rnd_i}: duplicate in {name}")
