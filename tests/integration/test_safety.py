"""Never trust the server: hostile, faulty or unusual servers (played by tests/fixture/evil.py,
in front of a real Dovecot or alone) cannot make twinbox lose, leak or duplicate mail, crash
or wedge a pair. Every result is checked on the real servers with the independent imaplib
checker (tests/fixture/imapcheck.py)."""
import os
import re
import tempfile

from tests.fixture import imapcheck as ic
from tests.fixture.dovecot import Dovecot
from tests.fixture.evil import Evil, minimal_server, nested
from tests.integration.common import TestCase, twinbox


class Pair(TestCase):
    """Two private Dovecots, a and b; each account reached directly or through a proxy."""
    maxDiff = None

    def make_b(self):
        return Dovecot(users={"alice": "secret"})

    def setUp(self):
        self.a = Dovecot(users={"alice": "secret"})
        self.b = self.make_b()
        self.a.start()
        self.addCleanup(self.a.stop)
        self.b.start()
        self.addCleanup(self.b.stop)
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)
        self.cfg = os.path.join(self.tmp.name, "config")
        self.state = os.path.join(self.tmp.name, "p.db")
        self.write_config()

    def proxy(self, dv, **kw):
        ev = Evil(dv, **kw)
        self.addCleanup(ev.stop)
        return ev

    def write_config(self, a_port=None, b_port=None, a_extra="", b_extra="", pair_extra="",
                     a_starttls="no"):
        with open(self.cfg, "w") as f:
            for name, dv, port, extra, tls in (("a", self.a, a_port, a_extra, a_starttls),
                                               ("b", self.b, b_port, b_extra, "no")):
                port = port or dv.imap_port
                f.write(f"[account {name}]\ntype = imap\nhost = 127.0.0.1\nport = {port}\n"
                        f"user = alice\npassword = secret\nstarttls = {tls}\n{extra}\n")
            f.write(f"[pair p]\na = a\nb = b\nstate = {self.state}\n{pair_extra}\n")
        os.chmod(self.cfg, 0o600)

    def sync(self, *args, code=0):
        r = twinbox("-c", self.cfg, "sync", *args, timeout=600)
        self.assertEqual(r.code, code, r)
        return r

    def snap(self, dv):
        return ic.snapshot(dv, "alice", as_separator="/")

    def assertSame(self):
        sa, sb = self.snap(self.a), self.snap(self.b)
        self.assertEqual(sa, sb)
        return sa

    def warnings(self, r):
        return [l for l in r.err.splitlines() if "warning:" in l]

    def one_warning(self, r, *words):
        """The run's only warning, which must name each of words."""
        warn = self.warnings(r)
        self.assertEqual(len(warn), 1, r)
        for w in words:
            self.assertIn(w, warn[0])
        return warn[0]

    def counts(self, dv):
        return {name: len(msgs) for name, msgs in self.snap(dv).items()}


class PreauthTest(Pair):
    def probe(self, url):
        return twinbox("probe", url, env={"TWINBOX_PASSWORD": "secret"}, timeout=60)

    def test_cleartext_preauth_refused_where_starttls_is_required(self):
        ev = Evil(raw=b"* PREAUTH [CAPABILITY IMAP4rev1] hello\r\n")
        self.addCleanup(ev.stop)
        r = self.probe(f"imap://alice@127.0.0.1:{ev.port}")
        self.assertEqual(r.code, 4, r)
        self.assertOneLineError(r, "PREAUTH", "TLS")
        self.assertTrue(ev.wait_closed(timeout=10))
        self.assertEqual(bytes(ev.connections[0].raw_in), b"", "nothing sent after the greeting")

    def test_cleartext_preauth_refused_on_implicit_tls(self):
        ev = Evil(raw=b"* PREAUTH [CAPABILITY IMAP4rev1] hello\r\n")
        self.addCleanup(ev.stop)
        r = self.probe(f"imaps://alice@127.0.0.1:{ev.port}")
        self.assertEqual(r.code, 4, r)
        self.assertOneLineError(r, "TLS")
        self.assertTrue(ev.wait_closed(timeout=10))
        sent = bytes(ev.connections[0].raw_in)
        self.assertTrue(sent == b"" or sent.startswith(b"\x16\x03"), sent[:40])
        for word in (b"LOGIN", b"AUTHENTICATE", b"CAPABILITY", b"LIST"):
            self.assertNotIn(word, sent)

    def fake_a(self):
        """What someone on the path answers for account a: PREAUTH, only an empty INBOX,
        every other mailbox NONEXISTENT."""
        ev = minimal_server(user=None, mailboxes={"INBOX": {}})
        self.addCleanup(ev.stop)
        ev.greeting = "* PREAUTH [CAPABILITY IMAP4rev1 LITERAL+ UIDPLUS ENABLE] welcome"
        ev.on(r"STATUS ", reply="NO [NONEXISTENT] Mailbox doesn't exist")
        return ev

    def seed(self):
        c = self.a.client("alice")
        for box, n in (("INBOX", 30), ("Work", 120), ("Archive", 200)):
            ic.load_messages(self.a, "alice", box, n, size=600, seed=len(box), client=c)
        c.logout()
        self.sync()
        return self.snap(self.b)

    def test_attack_with_tls_required_stops_at_the_greeting(self):
        before = self.seed()
        ev = self.fake_a()
        # account a as configured by a careful user: STARTTLS required (the default)
        self.write_config(a_port=ev.port, a_starttls="yes")
        r = self.sync(code=4)
        self.assertIn("PREAUTH", r.err)
        self.assertEqual(self.snap(self.b), before, "b untouched")
        self.assertEqual([c.name for c in ev.commands], [])

    def test_attack_with_plaintext_allowed_is_stopped_by_the_guard(self):
        before = self.seed()
        ev = self.fake_a()
        self.write_config(a_port=ev.port)
        r = self.sync(code=7)
        self.assertIn("max-delete", r.err)
        self.assertRegex(r.out, r"would remove a: \d+ of \d+ messages, b: \d+ of 350")
        self.assertEqual(self.snap(self.b), before, "b untouched")
        writes = [c.text for c in ev.commands
                  if c.name.split()[-1] in ("APPEND", "STORE", "EXPUNGE", "CREATE", "DELETE",
                                            "RENAME", "COPY", "MOVE")]
        self.assertEqual(writes, [], "nothing was sent to the fake server either")


class EvidenceTest(Pair):
    def seed(self):
        c = self.a.client("alice")
        ic.load_messages(self.a, "alice", "INBOX", 4, size=500, seed=1, client=c)
        ic.load_messages(self.a, "alice", "Work", 5, size=500, seed=2, client=c)
        c.logout()
        self.sync()

    def left_alone_then_converges(self, ev, cause):
        """A run through ev stops at exit 5 naming cause, b unchanged since seed(); a run
        without ev then converges."""
        self.write_config(a_port=ev.port)
        r = self.sync(code=5)
        self.assertIn(cause, r.err)
        self.assertEqual(self.counts(self.b), {"INBOX": 4, "Work": 5})
        self.write_config()
        self.sync()
        self.assertSame()

    def test_status_no_without_nonexistent_deletes_nothing(self):
        self.seed()
        ic.load_messages(self.a, "alice", "INBOX", 1, size=500, seed=3, start=50)
        ev = self.proxy(self.a)
        ev.on(r"LIST ", drop=r'\* LIST .*"?Work"?$')
        ev.on(r"STATUS \"?Work", reply="NO [UNAVAILABLE] Try again later")
        self.write_config(a_port=ev.port)
        self.one_warning(self.sync(code=5), "Work", "UNAVAILABLE")
        self.assertEqual(self.counts(self.b), {"INBOX": 5, "Work": 5}, "Work kept, INBOX synced")
        self.write_config()
        self.assertIn("deleted 0", self.sync().out)
        self.assertSame()

    def test_listing_with_an_unreadable_line_proves_no_absence(self):
        self.seed()
        ev = self.proxy(self.a)
        ev.on(r"LIST ", drop=r'\* LIST .*"?Work"?$',
              inject=['* LIST (\\HasNoChildren "/" broken'])
        self.left_alone_then_converges(ev, "not complete")

    def test_create_answered_already_exists_goes_on_with_that_mailbox(self):
        """Someone else creates the mailbox between twinbox's LIST and its CREATE (played by
        the proxy: it creates Fresh on b, with one message that a also has and one of its
        own, then answers the CREATE with NO [ALREADYEXISTS]). The mailbox exists, which is
        what the CREATE was for: the run goes on with it, matches the shared message by
        identity and copies the rest both ways."""
        self.seed()
        ic.load_messages(self.a, "alice", "Fresh", 3, size=500, seed=4)

        def meanwhile(cmd):
            c = self.b.client("alice")
            try:
                ic.load_messages(self.b, "alice", "Fresh", 1, size=500, seed=4, client=c)
                ic.load_messages(self.b, "alice", "Fresh", 1, size=500, seed=5, start=9,
                                 client=c)
            finally:
                c.logout()
            return "NO [ALREADYEXISTS] Mailbox already exists"
        ev = self.proxy(self.b)
        rule = ev.on(r'CREATE "?Fresh', reply=meanwhile)
        self.write_config(b_port=ev.port)
        r = self.sync()
        self.assertEqual(rule.fired, 1)
        self.assertEqual(self.warnings(r), [])
        self.assertEqual(self.counts(self.b)["Fresh"], 4)
        self.assertSame()
        self.write_config()
        self.assertIn("copied a->b 0, b->a 0,", self.sync().out)

    def test_create_falsely_answered_already_exists_leaves_the_mailbox_alone(self):
        """A server that answers CREATE with NO [ALREADYEXISTS] for a mailbox it does not
        have: the listing behind the CREATE fails, the mailbox is left alone with a warning
        (exit 5, nothing recorded), the others are synced, and a run against an honest
        server creates and fills it."""
        self.seed()
        ic.load_messages(self.a, "alice", "Fresh", 3, size=500, seed=4)
        ic.load_messages(self.a, "alice", "INBOX", 1, size=500, seed=3, start=50)
        ev = self.proxy(self.b)
        ev.on(r'CREATE "?Fresh', reply="NO [ALREADYEXISTS] Mailbox already exists")
        self.write_config(b_port=ev.port)
        self.one_warning(self.sync(code=5), "Fresh")
        self.assertEqual(self.counts(self.b), {"INBOX": 5, "Work": 5})
        self.write_config()
        self.sync()
        self.assertSame()

    def test_really_deleted_mailbox_is_deleted(self):
        """Dovecot answers STATUS of a missing mailbox with a plain NO; with an exact LIST
        that does not show it, that is the server saying so."""
        self.seed()
        c = self.a.client("alice")
        c.delete("Work")
        c.logout()
        r = self.sync()
        self.assertIn("deleted 1", r.out)
        self.assertEqual(self.counts(self.b), {"INBOX": 4})

    def test_short_full_listing_expunges_nothing(self):
        # Without CONDSTORE/QRESYNC every changed mailbox is listed in full.
        ev = self.proxy(self.a, remove_caps=("COMPRESS=DEFLATE", "STARTTLS", "CONDSTORE",
                                             "QRESYNC"))
        self.write_config(a_port=ev.port)
        self.seed()
        ic.load_messages(self.a, "alice", "Work", 1, size=500, seed=4, start=60)
        rule = ev.on(r"UID FETCH 1:", drop=r"\* 2 FETCH ")
        r = self.sync(code=5)
        self.assertIn("EXISTS", r.err)
        self.assertGreaterEqual(rule.fired, 1)
        self.assertEqual(self.counts(self.b), {"INBOX": 4, "Work": 5}, "nothing expunged")
        ev.remove(rule)
        self.assertIn("expunged 0", self.sync().out)
        self.assertSame()

    def test_unparsable_fetch_line_skips_the_mailbox(self):
        self.seed()
        self.store_flag(self.a, "Work", "\\Seen")
        ev = self.proxy(self.a)
        ev.on(r"SELECT \"?Work", inject=["* 1 FETCH (UID 1 FLAGS (\\Seen) )) garbage"])
        self.left_alone_then_converges(ev, "unreadable response: * 1 FETCH")

    def test_endless_listing_is_cut_at_what_exists_announced(self):
        """A server listing far more messages than its EXISTS announced (a hostile stream
        of FETCH lines): twinbox stops keeping records past that count and a margin, and
        the mailbox is left alone this run: nothing copied, nothing expunged."""
        self.seed()
        self.store_flag(self.a, "Work", "\\Seen")
        ev = self.proxy(self.a)
        lines = [f"* {i} FETCH (UID {i} FLAGS (\\Seen) MODSEQ (1))" for i in range(1, 1300)]
        ev.on(r"SELECT \"?Work", inject=lines)
        self.left_alone_then_converges(ev, "more messages listed than EXISTS announced")

    def test_vanished_beyond_uidnext_expunges_nothing(self):
        self.seed()
        self.store_flag(self.a, "Work", "\\Flagged")
        ev = self.proxy(self.a)
        ev.on(r"SELECT \"?Work", inject=["* VANISHED (EARLIER) 1:20000000"])
        self.write_config(a_port=ev.port)
        r = self.sync(code=5)
        self.assertIn("UIDNEXT", r.err)
        self.assertEqual(self.counts(self.b), {"INBOX": 4, "Work": 5})

    def test_deep_nesting_is_a_protocol_error_not_a_crash(self):
        self.seed()
        before = self.snap(self.b)
        ev = self.proxy(self.a)
        ev.on(r"LIST ", inject=["* 1 FETCH (BODYSTRUCTURE " + nested(100000) + ")"])
        self.write_config(a_port=ev.port)
        r = self.sync(code=5)
        self.assertOneLineError(r, "nested")
        self.assertEqual(self.snap(self.b), before)

    def store_flag(self, dv, mailbox, flag):
        c = dv.client("alice")
        c.select(ic.quote(mailbox))
        c.store("1:*", "+FLAGS", "(" + flag + ")")
        c.logout()


class GuardTest(Pair):
    def setUp(self):
        super().setUp()
        c = self.a.client("alice")
        for box, n in (("INBOX", 500), ("Big", 300), ("Small", 50), ("Other", 150)):
            ic.load_messages(self.a, "alice", box, n, size=300, seed=len(box), client=c)
        c.logout()
        self.sync()

    def delete(self, box):
        c = self.a.client("alice")
        c.delete(box)
        c.logout()

    def test_mass_deletion_needs_force(self):
        self.delete("Big")
        r = self.sync(code=7)
        self.assertIn("would remove a: 0 of 700 messages, b: 300 of 1000 messages", r.out)
        self.assertIn("Big: deleted on a, so deleted on b with its 300 messages", r.out)
        self.assertOneLineError(r, "300 of the 1000 messages on b", "--force")
        self.assertEqual(self.counts(self.b)["Big"], 300, "nothing deleted")
        d = self.sync("--dry-run", code=7)
        self.assertIn("dry run: p: would remove a: 0 of 700 messages, b: 300 of 1000", d.out)
        self.assertEqual(self.counts(self.b)["Big"], 300)
        r = self.sync("--force")
        self.assertIn("deleted 1", r.out)
        self.assertNotIn("Big", self.counts(self.b))
        self.assertSame()

    def test_small_deletion_needs_no_force(self):
        self.delete("Small")
        r = self.sync()
        self.assertIn("deleted 1", r.out)
        self.assertSame()

    def test_mass_expunge_needs_force_and_setting_allows_it(self):
        c = self.a.client("alice")
        c.select("INBOX")
        c.store("1:200", "+FLAGS", "(\\Deleted)")
        c.expunge()
        c.logout()
        r = self.sync(code=7)
        self.assertIn("INBOX: 200 expunged on b", r.out)
        self.assertEqual(self.counts(self.b)["INBOX"], 500)
        self.write_config(pair_extra="max-delete = 25%")
        r = self.sync()
        self.assertIn("expunged 200", r.out)
        self.assertSame()


class LineLimitTest(Pair):
    def setUp(self):
        conf = "imap_max_line_length = 8192\n"
        self.a = Dovecot(users={"alice": "secret"}, extra_conf=conf)
        self.b = Dovecot(users={"alice": "secret"}, extra_conf=conf)
        for dv in (self.a, self.b):
            dv.start()
            self.addCleanup(dv.stop)
            # 10-digit UIDs from the first message on
            dv.doveadm("mailbox", "update", "-u", "alice", "--min-next-uid", "4000000000",
                       "INBOX", check=True)
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)
        self.cfg = os.path.join(self.tmp.name, "config")
        self.state = os.path.join(self.tmp.name, "p.db")
        self.write_config()

    def test_scattered_changes_fit_the_line_limit(self):
        ic.load_messages(self.a, "alice", "INBOX", 3000, size=200, seed=7)
        self.sync()
        ca, cb = self.a.client("alice"), self.b.client("alice")
        ma, mb = ic.fetch_all(ca, "INBOX"), ic.fetch_all(cb, "INBOX")
        self.assertEqual((len(ma), len(mb)), (3000, 3000))
        self.assertGreaterEqual(min(m["uid"] for m in ma + mb), 4000000000)
        flagged = {m["message_id"] for m in ma[0::2]}     # every other one flagged on a
        gone = {m["message_id"] for m in mb[0::3]}        # a third expunged on b
        ca.select("INBOX")
        cb.select("INBOX")
        for i in range(0, 3000, 200):
            ca.uid("STORE", ",".join(str(m["uid"]) for m in ma[i:i + 200:2]), "+FLAGS",
                   "(\\Flagged)")
            cb.uid("STORE", ",".join(str(m["uid"]) for m in mb[i:i + 200] if
                                     m["message_id"] in gone), "+FLAGS", "(\\Deleted)")
        cb.expunge()
        ca.logout()
        cb.logout()
        pa, pb = self.proxy(self.a), self.proxy(self.b)
        # a third of the mailbox goes: more than the default max-delete allows
        self.write_config(a_port=pa.port, b_port=pb.port, pair_extra="max-delete = 50%")
        r = self.sync()
        self.assertIn("expunged 1000", r.out)
        for ev in (pa, pb):
            self.assertTrue(ev.connections)
            for conn in ev.connections:
                self.assertLessEqual(conn.longest_line, 8000, conn.longest_command)
        inbox = self.assertSame()["INBOX"]
        ids = {m[0] for m in inbox}
        self.assertEqual(len(inbox), 2000)
        self.assertFalse(ids & gone)
        self.assertEqual({m[0] for m in inbox if "\\Flagged" in m[2]}, flagged - gone)
