"""The private Courier IMAP fixture (tests/fixture/courier.py): it starts, serves the
personal namespace "INBOX." with separator ".", keeps keywords, runs alongside another
instance, stops cleanly, and `twinbox probe` works against it."""
import imaplib
import os
import re
import tempfile
import time

from tests.fixture.courier import Courier, _start_time
from tests.integration.common import TestCase, twinbox

MSG = (b"From: Alice <alice@example.org>\r\nTo: bob@example.org\r\n"
       b"Subject: courier fixture\r\nMessage-ID: <courier-fixture-1@example.org>\r\n"
       b"Date: Mon, 02 Jun 2025 10:00:00 +0000\r\n\r\nHello Courier.\r\n")


def untagged(c, name):
    return [v.decode() if isinstance(v, bytes) else v for v in c.untagged_responses.get(name, [])]


class CourierFixtureTest(TestCase):
    @classmethod
    def setUpClass(cls):
        t = time.monotonic()
        cls.srv = Courier().start()
        cls.start_time = time.monotonic() - t

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    def client(self):
        c = self.srv.client()
        self.addCleanup(self._logout, c)
        return c

    @staticmethod
    def _logout(c):
        try:
            c.logout()
        except (imaplib.IMAP4.error, OSError):
            pass

    def test_attributes(self):
        s = self.srv
        self.assertEqual((s.name, s.host, s.prefix, s.separator), ("courier", "127.0.0.1",
                                                                   "INBOX.", "."))
        self.assertEqual(s.users, {"alice": "secret"})
        self.assertEqual((s.login("alice"), s.password("alice")), ("alice", "secret"))
        self.assertEqual(s.mailbox("INBOX"), "INBOX")
        self.assertEqual(s.mailbox("Work"), "INBOX.Work")
        self.assertEqual(s.mailbox("Work/Sub"), "INBOX.Work.Sub")
        self.assertEqual(s.account_config("a"),
                         "[account a]\ntype = imap\nhost = 127.0.0.1\nport = %d\n"
                         "user = alice\npassword = secret\nstarttls = no\n\n" % s.port)
        self.assertLess(self.start_time, 10)

    def test_namespace_and_capabilities(self):
        c = self.client()
        self.assertIn("IMAP4REV1", c.capabilities)
        self.assertIn("UIDPLUS", c.capabilities)
        for absent in ("CONDSTORE", "QRESYNC", "LITERAL+", "MOVE", "LIST-STATUS"):
            self.assertNotIn(absent, c.capabilities)
        typ, data = c.namespace()
        self.assertEqual(typ, "OK")
        personal = re.match(r'\(\("([^"]*)" "([^"]*)"\)', data[0].decode())
        self.assertEqual(personal.groups(), ("INBOX.", "."), data)

    def test_create_append_fetch_keywords(self):
        c = self.srv
        cl = self.client()
        self.assertEqual(cl.create("Top")[0], "NO")  # outside the namespace
        work = c.mailbox("Work")
        typ, data = cl.create(work)
        self.assertEqual(typ, "OK", data)
        names = [l.decode().rsplit(" ", 1)[1].strip('"') for l in cl.list()[1]]
        self.assertIn("INBOX", names)
        self.assertIn(work, names)
        typ, data = cl.select(work)
        self.assertEqual(typ, "OK", data)
        self.assertIn("\\*", untagged(cl, "PERMANENTFLAGS")[-1])  # keywords can be kept
        date = imaplib.Time2Internaldate(time.time())
        typ, data = cl.append(work, "(\\Flagged tbKeyword)", date, MSG)
        self.assertEqual(typ, "OK", data)
        self.assertRegex(data[0].decode(), r"^\[APPENDUID \d+ 1\]")
        cl.noop()
        self.assertIn("tbKeyword", untagged(cl, "PERMANENTFLAGS")[-1])
        typ, data = cl.uid("FETCH", "1", "(FLAGS RFC822.SIZE BODY.PEEK[])")
        self.assertEqual(typ, "OK", data)
        meta, body = data[0]
        flags = re.search(rb"FLAGS \(([^)]*)\)", meta).group(1).decode().split()
        self.assertEqual(sorted(flags), sorted(["\\Flagged", "tbKeyword"]))
        self.assertIn(b"RFC822.SIZE %d" % len(MSG), meta)
        self.assertEqual(body, MSG)
        # Kept across sessions (stored in courierimapkeywords/).
        cl2 = self.client()
        cl2.select(work, readonly=True)
        typ, data = cl2.uid("FETCH", "1", "(FLAGS)")
        self.assertIn(b"tbKeyword", data[0])

    def test_two_instances(self):
        other = Courier(users={"bob": "pw2"})
        try:
            other.start()
            self.assertNotEqual(other.port, self.srv.port)
            ob = other.client("bob")
            ob.create(other.mailbox("OnlyHere"))
            ob.logout()
            cl = self.client()  # still served, and private to each instance
            self.assertNotIn(b"OnlyHere", b" ".join(cl.list()[1]))
            tmp = other.tmp
            procs = [(pid, _start_time(pid)) for pid, _cmd in other._our_processes()]
            self.assertGreaterEqual(len(procs), 4)  # unshare, init, authdaemond, tcpd
        finally:
            other.stop()
        self.assertFalse(os.path.exists(tmp))
        self.assertEqual([p for p in procs if _start_time(p[0], live=True) == p[1]], [])
        self.client().noop()  # the first instance is unaffected

    def test_probe(self):
        with tempfile.TemporaryDirectory() as d:
            cfg = os.path.join(d, "config")
            fd = os.open(cfg, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(self.srv.account_config("a"))
            r = twinbox("-c", cfg, "probe", "a")
        self.assertEqual(r.code, 0, r)
        self.assertIn('namespace: "INBOX." separator "."', r.out)
        self.assertRegex(r.out, r"INBOX uidvalidity=\d+ uidnext=\d+")

    def test_log_tail(self):
        self.client().noop()
        self.assertIn("authuserdb", self.srv.log_tail(200))
        self.assertIn("LOGIN, user=alice", self.srv.log_tail(200))
