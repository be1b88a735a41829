"""Self-test of tests/fixture/evil.py, the scriptable misbehaving IMAP server: standalone
scripts, forwarding to a real Dovecot with transforms, capability stripping, literals,
continuations, disconnects and the records tests assert on.
Run: python3 -m unittest tests.integration.test_evil_fixture -v
"""
import base64
import imaplib
import shutil
import os
import socket
import ssl
import threading
import time
import unittest

from tests.fixture import evil
from tests.fixture.dovecot import Dovecot
from tests.fixture.evil import Evil, minimal_server

HAVE_DOVECOT = os.path.exists("/usr/lib/dovecot/imap") and shutil.which(
    "dovecot", path="/usr/sbin:/usr/bin") is not None

TIMEOUT = 10


def connect(ev):
    s = socket.create_connection(("127.0.0.1", ev.port), timeout=TIMEOUT)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def recv_until(sock, marker, limit=1 << 20, timeout=TIMEOUT):
    """Reads until marker was received (or EOF, or limit, or timeout); returns all."""
    buf = b""
    deadline = time.monotonic() + timeout
    while marker not in buf and len(buf) < limit and time.monotonic() < deadline:
        sock.settimeout(max(deadline - time.monotonic(), 0.01))
        try:
            d = sock.recv(65536)
        except socket.timeout:
            break
        if not d:
            break
        buf += d
    return buf


def recv_all(sock, limit=1 << 20, timeout=TIMEOUT):
    """Reads until EOF (bounded)."""
    buf = b""
    deadline = time.monotonic() + timeout
    while len(buf) < limit and time.monotonic() < deadline:
        sock.settimeout(max(deadline - time.monotonic(), 0.01))
        try:
            d = sock.recv(65536)
        except (ConnectionResetError, socket.timeout):
            break
        if not d:
            break
        buf += d
    return buf


def close_client(c):
    try:
        c.shutdown()
    except OSError:
        pass   # already closed (LOGOUT, or the proxy disconnected)


class EvilTestCase(unittest.TestCase):
    def start(self, *args, **kw):
        ev = Evil(*args, **kw)
        self.addCleanup(ev.stop)
        return ev

    def minimal(self, **kw):
        ev = minimal_server(**kw)
        self.addCleanup(ev.stop)
        return ev

    def imap(self, ev, **kw):
        c = imaplib.IMAP4("127.0.0.1", ev.port, timeout=TIMEOUT, **kw)
        self.addCleanup(close_client, c)
        return c

    def assertNoErrors(self, ev):
        self.assertEqual(ev.errors, [])


class Standalone(EvilTestCase):
    def test_minimal_server_and_override_by_nth(self):
        ev = self.minimal(mailboxes={"INBOX": {"messages": 3, "uidnext": 9},
                                     "Archive": {"uidvalidity": 77}})
        # The 2nd SELECT of Archive (only that one) is refused.
        rule = ev.on(r'SELECT "?Archive"?$', nth=2,
                     reply="NO [NONEXISTENT] no such mailbox")
        c = self.imap(ev)
        self.assertIn("IDLE", c.capabilities)
        self.assertEqual(c.login("alice", "secret")[0], "OK")
        self.assertEqual(c.select("INBOX"), ("OK", [b"3"]))
        typ, data = c.list()
        self.assertEqual(typ, "OK")
        self.assertEqual(sorted(data), [b'(\\HasNoChildren) "/" "Archive"',
                                        b'(\\HasNoChildren) "/" "INBOX"'])
        self.assertEqual(c.status("INBOX", "(MESSAGES UIDNEXT)"),
                         ("OK", [b'"INBOX" (MESSAGES 3 UIDNEXT 9)']))
        self.assertEqual(c.status("Nope", "(MESSAGES)")[0], "NO")
        self.assertEqual(c.select("Archive")[0], "OK")
        self.assertEqual(c.response("UIDVALIDITY"), ("UIDVALIDITY", [b"77"]))
        typ, data = c.select("Archive")
        self.assertEqual((typ, data), ("NO", [b"[NONEXISTENT] no such mailbox"]))
        self.assertEqual(c.select("Archive")[0], "OK")
        self.assertEqual((rule.matched, rule.fired), (3, 1))
        self.assertEqual(c.logout()[0], "BYE")
        self.assertTrue(ev.wait_closed())
        conn = ev.connections[0]
        self.assertEqual([x.name for x in conn.commands],
                         ["CAPABILITY", "LOGIN", "SELECT", "LIST", "STATUS", "STATUS", "SELECT",
                          "SELECT", "SELECT", "LOGOUT"])
        self.assertEqual([x.outcome for x in conn.commands], ["scripted"] * 10)
        self.assertIs(conn.commands[7].rule, rule)
        self.assertEqual(conn.closed_by, "script")  # LOGOUT: disconnect after the answer
        self.assertEqual(ev.unscripted, [])
        self.assertNoErrors(ev)

    def test_wrong_password_refused(self):
        ev = self.minimal()
        c = self.imap(ev)
        with self.assertRaises(imaplib.IMAP4.error):
            c.login("alice", "wrong")
        self.assertEqual(c.login("alice", "secret")[0], "OK")

    def test_unscripted_command_gets_bad_and_is_recorded(self):
        ev = self.start()  # standalone, no rules at all
        s = connect(ev)
        self.addCleanup(s.close)
        self.assertEqual(recv_until(s, b"\r\n"), b"* OK evil.py ready\r\n")
        s.sendall(b"a1 FROB x y\r\n")
        self.assertEqual(recv_until(s, b"\r\n"), b"a1 BAD unscripted\r\n")
        self.assertTrue(ev.wait(lambda: ev.unscripted))
        self.assertEqual([(c.tag, c.text, c.name) for c in ev.unscripted],
                         [("a1", "FROB x y", "FROB")])
        self.assertEqual(ev.connections[0].unscripted[0].response, b"a1 BAD unscripted")
        with self.assertRaises(ValueError):
            ev.on("NOOP", transform=lambda lines: lines)  # nothing to forward to

    def test_greeting_replaced_and_nothing_sent_after_it(self):
        ev = self.start(greeting="* PREAUTH [CAPABILITY IMAP4rev1] hi")
        s = connect(ev)
        self.assertEqual(recv_until(s, b"\r\n"),
                         b"* PREAUTH [CAPABILITY IMAP4rev1] hi\r\n")
        s.close()
        self.assertTrue(ev.wait_closed())
        conn = ev.connections[0]
        self.assertEqual(conn.lines, [])
        self.assertEqual(conn.commands, [])
        self.assertEqual(conn.greeting, b"* PREAUTH [CAPABILITY IMAP4rev1] hi")
        self.assertEqual(conn.closed_by, "client")
        # A client that does talk is recorded, so the assertion above can fail.
        s = connect(ev)
        recv_until(s, b"\r\n")
        s.sendall(b"x LOGIN a b\r\n")
        recv_until(s, b"\r\n")
        s.close()
        self.assertTrue(ev.wait_closed())
        self.assertEqual(ev.connections[1].lines, [b"x LOGIN a b"])

    def test_literals_sync_and_nonsync(self):
        seen = []

        def append(cmd):
            seen.append((cmd.literals, cmd.args()))
            return "OK [APPENDUID 1 %d] done" % len(seen)
        ev = self.start()
        ev.on(r"APPEND ", reply=append)
        s = connect(ev)
        self.addCleanup(s.close)
        recv_until(s, b"\r\n")
        s.sendall(b"a APPEND INBOX (\\Seen) {5}\r\n")
        self.assertEqual(recv_until(s, b"\r\n"), b"+ go ahead\r\n")
        s.sendall(b"hello\r\n")
        self.assertEqual(recv_until(s, b"\r\n"), b"a OK [APPENDUID 1 1] done\r\n")
        # LITERAL+: no continuation; pipelined with the next command.
        s.sendall(b"b APPEND INBOX {3+}\r\nabc\r\nc APPEND Sent {0+}\r\n\r\n")
        self.assertEqual(recv_until(s, b"c OK"),
                         b"b OK [APPENDUID 1 2] done\r\nc OK [APPENDUID 1 3] done\r\n")
        self.assertEqual(seen[0], ([b"hello"], ["APPEND", "INBOX", ["\\Seen"], "hello"]))
        self.assertEqual(seen[1][0], [b"abc"])
        self.assertEqual(seen[2], ([b""], ["APPEND", "Sent", ""]))
        conn = ev.connections[0]
        self.assertEqual(conn.literal_sizes, [5, 3, 0])
        self.assertEqual(conn.lines, [b"a APPEND INBOX (\\Seen) {5}", b"",
                                      b"b APPEND INBOX {3+}", b"", b"c APPEND Sent {0+}",
                                      b""])
        self.assertEqual(conn.commands[0].text, "APPEND INBOX (\\Seen) {5}")
        self.assertNoErrors(ev)

    def test_longest_line_and_literal_login(self):
        ev = self.minimal()
        s = connect(ev)
        self.addCleanup(s.close)
        recv_until(s, b"\r\n")
        long_line = b'a ID ("name" "' + b"v" * 9000 + b'")'
        s.sendall(long_line + b"\r\n")
        self.assertIn(b"a OK", recv_until(s, b"a OK"))
        # LOGIN with synchronizing literals: the proxy says "+ go ahead" for each.
        s.sendall(b"b LOGIN {5}\r\n")
        self.assertEqual(recv_until(s, b"\r\n"), b"+ go ahead\r\n")
        s.sendall(b"alice {6}\r\n")
        self.assertEqual(recv_until(s, b"\r\n"), b"+ go ahead\r\n")
        s.sendall(b"secret\r\n")
        self.assertTrue(recv_until(s, b"\r\n").startswith(b"b OK [CAPABILITY "))
        conn = ev.connections[0]
        self.assertEqual(conn.longest_line, len(long_line))
        self.assertEqual(conn.longest_command, len(long_line))
        self.assertEqual(conn.lines[1:], [b"b LOGIN {5}", b" {6}", b""])
        self.assertEqual(conn.commands[1].text, "LOGIN {5} {6}")
        self.assertEqual(conn.commands[1].literal_sizes, [5, 6])
        self.assertEqual(conn.commands[1].args(), ["LOGIN", "alice", "secret"])
        self.assertGreater(conn.longest_line, 8000)

    def test_client_line_over_max_line_closes(self):
        ev = self.start(max_line=1000)
        s = connect(ev)
        self.addCleanup(s.close)
        recv_until(s, b"\r\n")
        s.sendall(b"a NOOP " + b"x" * 5000)   # no CRLF: the bound is still enforced
        self.assertEqual(recv_all(s), b"")
        self.assertTrue(ev.wait_closed())
        conn = ev.connections[0]
        self.assertEqual(conn.closed_by, "proxy")
        self.assertIn("max_line", conn.errors[0])

    def test_authenticate_and_idle_continuations(self):
        ev = self.minimal()
        s = connect(ev)
        self.addCleanup(s.close)
        recv_until(s, b"\r\n")
        s.sendall(b"a AUTHENTICATE PLAIN\r\n")
        self.assertEqual(recv_until(s, b"\r\n"), b"+ \r\n")
        s.sendall(base64.b64encode(b"\0alice\0secret") + b"\r\n")
        self.assertTrue(recv_until(s, b"\r\n").startswith(b"a OK [CAPABILITY"))
        s.sendall(b"b IDLE\r\n")
        self.assertEqual(recv_until(s, b"\r\n"), b"+ idling\r\n")
        s.sendall(b"DONE\r\n")
        self.assertEqual(recv_until(s, b"\r\n"), b"b OK Idle completed.\r\n")
        s.sendall(b"c NOOP\r\n")
        self.assertEqual(recv_until(s, b"\r\n"), b"c OK NOOP completed.\r\n")
        conn = ev.connections[0]
        self.assertEqual([c.name for c in conn.commands], ["AUTHENTICATE", "IDLE", "NOOP"])
        self.assertEqual(conn.commands[0].continuations,
                         [base64.b64encode(b"\0alice\0secret")])
        self.assertEqual(conn.commands[1].continuations, [b"DONE"])

    def test_out_of_order_completions_and_untagged_to_transform(self):
        # A standalone Evil as the backend of a forwarding one: SLOW is answered
        # after FAST (delay), and FAST's untagged EXISTS arrives while SLOW is in flight.
        back = self.start()
        back.on(r"SLOW", delay=1.0, reply=["* 2 RECENT", "OK slow"])
        back.on(r"FAST", reply=["* 1 EXISTS", "OK fast"])
        front = self.start(back.port)
        seen = []

        def spy(lines):
            seen.append(list(lines))
            return lines + []
        front.on(r"SLOW", transform=spy)
        s = connect(front)
        self.addCleanup(s.close)
        self.assertEqual(recv_until(s, b"\r\n"), b"* OK evil.py ready\r\n")
        s.sendall(b"a1 SLOW\r\na2 FAST\r\n")
        got = recv_until(s, b"a1 ")
        got += recv_until(s, b"\r\n") if not got.endswith(b"\r\n") else b""
        lines = got.split(b"\r\n")
        self.assertLess(lines.index(b"a2 OK fast"), lines.index(b"a1 OK slow"), got)
        self.assertEqual(seen, [[b"* 1 EXISTS", b"* 2 RECENT", b"a1 OK slow"]])
        self.assertEqual(front.connections[0].commands[0].response, b"a1 OK slow")
        self.assertNoErrors(front)
        self.assertNoErrors(back)

    def test_hang_and_delay(self):
        ev = self.minimal()
        ev.on(r"NOOP", hang=True, times=1)
        ev.on(r"CHECK", delay=0.4, reply="OK late")
        s = connect(ev)
        self.addCleanup(s.close)
        recv_until(s, b"\r\n")
        s.sendall(b"a NOOP\r\n")
        self.assertEqual(recv_until(s, b"\r\n", timeout=0.5), b"")  # never answered
        t0 = time.monotonic()
        s.sendall(b"b CHECK\r\n")
        self.assertEqual(recv_until(s, b"\r\n"), b"b OK late\r\n")
        self.assertGreaterEqual(time.monotonic() - t0, 0.35)
        s.sendall(b"c NOOP\r\n")   # times=1: the responder's NOOP rule is back
        self.assertEqual(recv_until(s, b"\r\n"), b"c OK NOOP completed.\r\n")
        self.assertEqual([c.outcome for c in ev.connections[0].commands],
                         ["hung", "scripted", "scripted"])

    def test_deep_nesting_and_literal_helpers(self):
        ev = self.start()
        deep = evil.nested(100000)
        ev.on(r"FETCH", reply=["* 1 FETCH (BODY[] " + evil.literal(b"ab\r\ncd") + ")",
                               "* 1 FETCH (BODYSTRUCTURE " + deep + ")", "OK done"])
        s = connect(ev)
        self.addCleanup(s.close)
        recv_until(s, b"\r\n")
        s.sendall(b"a FETCH 1 BODY[]\r\n")
        got = recv_until(s, b"a OK done\r\n", limit=1 << 22)
        self.assertTrue(got.startswith(b"* 1 FETCH (BODY[] {6}\r\nab\r\ncd)\r\n"), got[:80])
        self.assertIn(b"(" * 100000 + b"NIL" + b")" * 100000, got)

    def test_tls_listener(self):
        ev = self.minimal(tls=True)
        ctx = ssl.create_default_context(cafile=ev.ca_file)
        c = imaplib.IMAP4_SSL("127.0.0.1", ev.port, ssl_context=ctx, timeout=TIMEOUT)
        self.addCleanup(close_client, c)
        self.assertEqual(c.login("alice", "secret")[0], "OK")
        self.assertEqual(c.logout()[0], "BYE")
        self.assertTrue(ev.wait_closed())
        self.assertTrue(ev.connections[0].tls.startswith("TLS"))
        # Cleartext to the TLS port: no IMAP answer, a TLS error recorded.
        s = connect(ev)
        self.addCleanup(s.close)
        s.sendall(b"a LOGIN alice secret\r\n")
        self.assertNotIn(b"a OK", recv_all(s, timeout=3))
        self.assertTrue(ev.wait_closed())
        self.assertIsNotNone(ev.connections[1].tls_error)
        self.assertEqual(ev.connections[1].commands, [])

    def test_raw_cleartext_preauth_to_tls_client(self):
        ev = self.start(raw=b"* PREAUTH [CAPABILITY IMAP4rev1] hi\r\n")
        ctx = ssl.create_default_context()
        with socket.create_connection(("127.0.0.1", ev.port), timeout=TIMEOUT) as s:
            with self.assertRaises(ssl.SSLError):
                ctx.wrap_socket(s, server_hostname="localhost")
        self.assertTrue(ev.wait(lambda: ev.connections and ev.connections[0].raw_in))
        conn = ev.connections[0]
        self.assertEqual(conn.raw_in[:1], b"\x16")   # a TLS handshake record
        self.assertEqual(conn.greeting, b"* PREAUTH [CAPABILITY IMAP4rev1] hi\r\n")
        self.assertEqual(conn.commands, [])
        # raw_close: the bytes, then EOF.
        ev2 = self.start(raw=["* BYE ", b"go away\r\n"], raw_close=True)
        s = connect(ev2)
        self.addCleanup(s.close)
        self.assertEqual(recv_all(s), b"* BYE go away\r\n")

    def test_stop_closes_sockets_and_thread(self):
        ev = Evil(greeting="* OK hi")
        try:
            s = connect(ev)
            self.addCleanup(s.close)
            self.assertEqual(recv_until(s, b"\r\n"), b"* OK hi\r\n")
            thread = ev._thread
        finally:
            ev.stop()
        self.assertFalse(thread.is_alive())
        self.assertEqual(recv_all(s, timeout=3), b"")
        self.assertEqual(ev.connections[0].closed_by, "stop")
        with self.assertRaises(OSError):
            socket.create_connection(("127.0.0.1", ev.port), timeout=2).close()
        ev.stop()  # idempotent


@unittest.skipUnless(HAVE_DOVECOT, "dovecot-imapd is not installed")
class Forwarding(EvilTestCase):
    @classmethod
    def setUpClass(cls):
        cls.dv = Dovecot(users={"alice": "secret"})
        cls.dv.start()
        c = cls.dv.client()
        for name in ("Keep", "Trash"):
            c.create(name)
        c.logout()

    @classmethod
    def tearDownClass(cls):
        cls.dv.stop()

    def test_transforms_drop_status_inject(self):
        ev = self.start(self.dv)
        ev.on(r"LIST ", drop=r' "?Trash"?$')
        ev.on(r"STATUS ", status="NO [NONEXISTENT] gone", times=1)
        ev.on(r"NOOP", inject=["* 1 FETCH (UID 1 BODY[] NIL)"])
        ev.on(r"LSUB ", transform=lambda lines: [x.replace(b"Keep", b"Kept")
                                                 for x in lines])
        c = self.imap(ev)
        self.assertEqual(c.login("alice", "secret")[0], "OK")
        typ, data = c.list()
        self.assertEqual(typ, "OK")
        self.assertTrue(any(x.endswith(b" Keep") for x in data), data)
        self.assertFalse(any(b"Trash" in x for x in data), data)
        self.assertEqual(c.status("INBOX", "(MESSAGES)"),
                         ("NO", [b"[NONEXISTENT] gone"]))
        self.assertEqual(c.status("INBOX", "(MESSAGES)")[0], "OK")   # times=1
        c.subscribe("Keep")
        typ, data = c.lsub()
        self.assertEqual(typ, "OK")
        self.assertTrue(any(b"Kept" in x for x in data), data)
        self.assertEqual(c.noop()[0], "OK")
        self.assertEqual(c.response("FETCH"), ("FETCH", [b"1 (UID 1 BODY[] NIL)"]))
        # Directly, Dovecot does list Trash: the drop above is the proxy's doing.
        d = self.dv.client()
        self.assertTrue(any(b"Trash" in x for x in d.list()[1]))
        d.logout()
        conn = ev.connections[0]
        self.assertEqual([x.outcome for x in conn.commands], ["forwarded"] * len(conn.commands))
        self.assertNoErrors(ev)

    def test_capabilities_stripped_and_added(self):
        ev = self.start(self.dv, add_caps=["XEVIL"],
                        remove_caps=evil.DEFAULT_REMOVED_CAPS + ("LITERAL+", "AUTH=*"))
        direct = self.dv.client()
        self.assertIn("COMPRESS=DEFLATE", direct.capability()[1][0].decode())
        direct.logout()
        c = self.imap(ev)
        pre = set(c.capabilities)
        self.assertIn("XEVIL", pre)
        self.assertFalse({"STARTTLS", "LITERAL+", "AUTH=PLAIN"} & pre, pre)
        self.assertIn("IMAP4REV1", pre)
        self.assertEqual(c.login("alice", "secret")[0], "OK")
        # imaplib asked CAPABILITY first, so Dovecot answered LOGIN with an untagged
        # CAPABILITY line; a raw client gets OK [CAPABILITY ...] on LOGIN itself.
        s = connect(ev)
        self.addCleanup(s.close)
        recv_until(s, b"\r\n")
        s.sendall(b"a LOGIN alice secret\r\n")
        done = recv_until(s, b"\r\n")
        self.assertTrue(done.startswith(b"a OK [CAPABILITY IMAP4rev1 "), done)
        self.assertIn(b" XEVIL]", done)
        self.assertIn(b" QRESYNC ", done)
        self.assertNotIn(b"COMPRESS=DEFLATE", done)
        self.assertNotIn(b"LITERAL+", done)
        conn = ev.connections[0]
        after_login = [r for r in conn.responses if r.startswith(b"* CAPABILITY ")][-1]
        self.assertIn(b" QRESYNC ", after_login)
        self.assertNotIn(b"COMPRESS=DEFLATE", after_login)
        post = set(c.capability()[1][0].decode().split())
        self.assertIn("XEVIL", post)
        self.assertIn("QRESYNC", post)
        self.assertFalse({"COMPRESS=DEFLATE", "LITERAL+"} & post, post)
        self.assertNotIn(b"STARTTLS", conn.greeting)
        self.assertTrue(conn.greeting.startswith(b"* OK [CAPABILITY IMAP4rev1 "))
        # Greeting rewritten by a callable.
        ev2 = self.start(self.dv, greeting=lambda g: g.replace(b"Dovecot", b"Evilcot"))
        s = connect(ev2)
        self.addCleanup(s.close)
        g = recv_until(s, b"\r\n")
        self.assertIn(b"Evilcot", g)
        self.assertNotIn(b"STARTTLS", g)

    def test_append_with_synchronizing_literal(self):
        ev = self.start(self.dv, remove_caps=evil.DEFAULT_REMOVED_CAPS + ("LITERAL+",))
        c = self.imap(ev)
        self.assertNotIn("LITERAL+", c.capabilities)
        c.login("alice", "secret")
        msg = (b"From: a@example.test\r\nMessage-ID: <evil-append@twinbox.test>\r\n"
               b"Subject: through the proxy\r\n\r\n" + b"body line\r\n" * 50)
        typ, data = c.append("INBOX", None, None, msg)
        self.assertEqual(typ, "OK", data)
        self.assertIn(b"[APPENDUID ", data[0])
        d = self.dv.client()
        d.select("INBOX", readonly=True)
        typ, data = d.uid("SEARCH", "HEADER", "Message-ID", "<evil-append@twinbox.test>")
        self.assertEqual(len(data[0].split()), 1, data)
        uid = data[0].split()[0]
        typ, data = d.uid("FETCH", uid, "(BODY.PEEK[])")
        self.assertEqual(data[0][1], msg)
        d.logout()
        conn = ev.connections[0]
        self.assertEqual(conn.literal_sizes, [len(msg)])
        append = [x for x in conn.commands if x.name == "APPEND"][0]
        self.assertEqual(append.outcome, "forwarded")
        self.assertTrue(append.text.endswith("{%d}" % len(msg)))
        # The continuation came from Dovecot, not from the proxy.
        conts = [r for r in conn.responses if r.startswith(b"+")]
        self.assertEqual(conts, [b"+ OK"])
        self.assertNoErrors(ev)

    def test_literal_refused_by_backend_resyncs(self):
        # Dovecot refuses a too-large literal with a tagged NO instead of '+': the
        # client does not send it and its next command must be a command again.
        ev = self.start(self.dv)
        s = connect(ev)
        self.addCleanup(s.close)
        recv_until(s, b"\r\n")
        s.sendall(b"a LOGIN alice secret\r\n")
        recv_until(s, b"a OK")
        s.sendall(b"b APPEND Nonexistent {5}\r\n")
        self.assertTrue(recv_until(s, b"\r\n").startswith(b"b NO [TRYCREATE]"))
        s.sendall(b"c NOOP\r\n")
        self.assertTrue(recv_until(s, b"\r\n").startswith(b"c OK"))
        conn = ev.connections[0]
        self.assertEqual([x.name for x in conn.commands], ["LOGIN", "APPEND", "NOOP"])
        self.assertEqual(conn.literal_sizes, [5])
        # A literal over max_literal ends the connection (Dovecot would take it).
        s.sendall(b"d APPEND INBOX {99999999999}\r\n")
        self.assertEqual(recv_all(s), b"")
        self.assertTrue(ev.wait_closed())
        self.assertIn("max_literal", conn.errors[0])
        self.assertEqual(conn.closed_by, "proxy")

    def test_authenticate_idle_and_pipelining(self):
        ev = self.start(self.dv)
        ev.on(r"STATUS ", status="OK [ALERT] rewritten")
        s = connect(ev)
        self.addCleanup(s.close)
        recv_until(s, b"\r\n")
        s.sendall(b"a AUTHENTICATE PLAIN\r\n")
        self.assertTrue(recv_until(s, b"\r\n").startswith(b"+"))
        s.sendall(base64.b64encode(b"\0alice\0secret") + b"\r\n")
        got = recv_until(s, b"a ")
        got += recv_until(s, b"\r\n")
        self.assertIn(b"a OK", got)
        s.sendall(b"b SELECT INBOX\r\n")
        recv_until(s, b"b OK")
        s.sendall(b"c IDLE\r\n")
        self.assertTrue(recv_until(s, b"\r\n").startswith(b"+ idling"))
        s.sendall(b"DONE\r\n")
        self.assertIn(b"c OK", recv_until(s, b"c OK"))
        s.sendall(b"d NOOP\r\ne STATUS INBOX (MESSAGES)\r\nf NOOP\r\n")
        got = recv_until(s, b"f OK")
        got += recv_until(s, b"\r\n") if not got.endswith(b"\r\n") else b""
        self.assertIn(b"\r\ne OK [ALERT] rewritten\r\n", got)
        self.assertIn(b"* STATUS INBOX (MESSAGES ", got)
        self.assertIn(b"\r\nd OK", got)
        conn = ev.connections[0]
        self.assertEqual([x.name for x in conn.commands],
                         ["AUTHENTICATE", "SELECT", "IDLE", "NOOP", "STATUS", "NOOP"])
        self.assertEqual(conn.commands[0].continuations, [base64.b64encode(b"\0alice\0secret")])
        self.assertEqual(conn.commands[2].continuations, [b"DONE"])
        self.assertEqual(conn.commands[4].response, b"e OK [ALERT] rewritten")
        # imaplib's AUTHENTICATE exchange works through the proxy too.
        c = self.imap(ev)
        self.assertEqual(c.authenticate("PLAIN", lambda _: b"\0alice\0secret")[0], "OK")
        self.assertNoErrors(ev)

    def test_starttls_kept_becomes_opaque_relay(self):
        # Told not to strip STARTTLS, the proxy relays the TLS stream blindly.
        ev = self.start(self.dv, remove_caps=("COMPRESS=DEFLATE",))
        c = self.imap(ev)
        self.assertIn("STARTTLS", c.capabilities)
        c.starttls(ssl_context=ssl.create_default_context(cafile=self.dv.ca_file))
        self.assertEqual(c.login("alice", "secret")[0], "OK")
        self.assertEqual(c.select("INBOX")[0], "OK")
        conn = ev.connections[0]
        self.assertTrue(conn.opaque)
        self.assertEqual([x.name for x in conn.commands], ["CAPABILITY", "STARTTLS"])
        self.assertNotIn(b"LOGIN", bytes(conn.raw_in[conn.raw_in.index(b"STARTTLS"):]))
        # By default STARTTLS is not offered.
        c2 = self.imap(self.start(self.dv))
        self.assertNotIn("STARTTLS", c2.capabilities)

    def test_literal_plus_pipelined_append(self):
        ev = self.start(self.dv)
        s = connect(ev)
        self.addCleanup(s.close)
        recv_until(s, b"\r\n")
        msg = b"Subject: lp\r\nMessage-ID: <evil-lp@twinbox.test>\r\n\r\nx\r\n"
        s.sendall(b"a LOGIN alice secret\r\nb APPEND INBOX {%d+}\r\n%s\r\n"
                  b"c APPEND INBOX {2+}\r\nhi {3+}\r\nyou\r\nd NOOP\r\n" % (len(msg), msg))
        got = recv_until(s, b"d OK")
        self.assertNotIn(b"\r\n+ ", got)
        self.assertIn(b"\r\nb OK [APPENDUID ", got)
        self.assertTrue(b"\r\nc NO " in got or b"\r\nc BAD " in got or b"\r\nc OK " in got)
        conn = ev.connections[0]
        self.assertEqual([x.name for x in conn.commands], ["LOGIN", "APPEND", "APPEND", "NOOP"])
        self.assertEqual(conn.literal_sizes, [len(msg), 2, 3])
        self.assertEqual(conn.commands[2].text, "APPEND INBOX {2+} {3+}")

    def test_disconnect_before_and_after(self):
        ev = self.start(self.dv)
        before = ev.on(r"SELECT ", disconnect="before", connection=1)
        c = self.imap(ev)
        c.login("alice", "secret")
        with self.assertRaises((imaplib.IMAP4.abort, OSError)):
            c.select("INBOX")
        self.assertTrue(ev.wait(lambda: ev.connections[0].closed))
        conn = ev.connections[0]
        self.assertEqual(conn.closed_by, "script")
        self.assertEqual(conn.commands[-1].outcome, "disconnected")
        self.assertIsNone(conn.commands[-1].response)
        self.assertEqual(before.fired, 1)
        # After: the answer arrives, then the connection ends.
        ev.on(r"NOOP", disconnect="after", connection=2)
        c2 = self.imap(ev)
        c2.login("alice", "secret")
        self.assertEqual(c2.select("INBOX")[0], "OK")   # connection=1 rule not here
        self.assertEqual(c2.noop()[0], "OK")
        with self.assertRaises((imaplib.IMAP4.abort, OSError)):
            c2.noop()
        self.assertTrue(ev.wait(lambda: ev.connections[1].closed))
        self.assertEqual(ev.connections[1].closed_by, "script")

    def test_cut_mid_answer(self):
        ev = self.start(self.dv)
        ev.on(r"LIST ", cut=25)
        s = connect(ev)
        self.addCleanup(s.close)
        recv_until(s, b"\r\n")
        s.sendall(b"a LOGIN alice secret\r\n")
        recv_until(s, b"a OK")
        s.sendall(b'b LIST "" "*"\r\n')
        got = recv_all(s)
        self.assertEqual(len(got), 25, got)
        self.assertTrue(got.startswith(b"* LIST ("), got)
        self.assertTrue(ev.wait_closed())

    def test_forward_delay(self):
        ev = self.start(self.dv)
        rule = ev.on(r"NOOP", delay=0.4, times=1)
        c = self.imap(ev)
        c.login("alice", "secret")
        t0 = time.monotonic()
        self.assertEqual(c.noop()[0], "OK")
        self.assertGreaterEqual(time.monotonic() - t0, 0.35)
        self.assertEqual(c.noop()[0], "OK")
        self.assertEqual((rule.matched, rule.fired), (2, 1))


if __name__ == "__main__":
    unittest.main()
