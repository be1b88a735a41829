"""Self-test of the integration fixture: if these fail, no other integration result
means anything. Run: python3 -m unittest tests.integration.test_fixture
"""
import imaplib
import os
import shutil
import socket
import ssl
import struct
import subprocess
import tempfile
import threading
import time
import unittest

from tests.fixture import imapcheck
from tests.fixture.dovecot import Dovecot, stop_all, TEST_USER
from tests.fixture.relay import Relay

HAVE_DOVECOT = os.path.exists("/usr/lib/dovecot/imap") and shutil.which(
    "dovecot", path="/usr/sbin:/usr/bin") is not None


def caps_of(client):
    typ, data = client.capability()
    return set(data[0].decode().upper().split())


def recv_until(sock, marker, limit=1 << 20):
    buf = b""
    while marker not in buf and len(buf) < limit:
        d = sock.recv(65536)
        if not d:
            break
        buf += d
    return buf


def recv_all(sock):
    buf = b""
    while True:
        try:
            d = sock.recv(65536)
        except ConnectionResetError:
            break
        if not d:
            break
        buf += d
    return buf


def proc_uid(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("Uid:"):
                return int(line.split()[1])
    return None


class Parser(unittest.TestCase):
    def test_fetch_with_two_literals_and_escapes(self):
        # What imaplib hands over for two FETCH responses, one with two literals.
        data = [(b'1 (UID 7 BODY[HEADER.FIELDS (MESSAGE-ID)] {5}', b"ab\r\n\r"),
                (b' BODY[] {3}', b"x)y"),
                b' FLAGS (\\Seen $K) INTERNALDATE " 2-Jan-2020 10:00:00 +0100")',
                b'2 (UID 9 FLAGS ())']
        resps = imapcheck._responses(data)
        self.assertEqual(len(resps), 2)
        f = imapcheck._fetch_map(resps[0])
        self.assertEqual(f[b"BODY[]"], b"x)y")
        self.assertEqual(f[b"BODY[HEADER.FIELDS (MESSAGE-ID)]"], b"ab\r\n\r")
        self.assertEqual(f[b"FLAGS"], [b"\\Seen", b"$K"])
        self.assertEqual(imapcheck._fetch_map(resps[1])[b"FLAGS"], [])
        self.assertEqual(imapcheck.parse_sexp([b'(\\Noselect) "/" "a \\"q\\" b"']),
                         [[b"\\Noselect"], b"/", b'a "q" b'])
        self.assertEqual(imapcheck.parse_sexp([b'() NIL [Gmail]/Sent']),
                         [[], b"NIL", b"[Gmail]/Sent"])


@unittest.skipUnless(HAVE_DOVECOT, "dovecot-imapd is not installed")
class MaildirInstance(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dv = Dovecot(users={"alice": "secret", "bob": "two words"})
        cls.dv.start()

    @classmethod
    def tearDownClass(cls):
        cls.dv.stop()

    def ctx(self):
        ctx = ssl.create_default_context(cafile=self.dv.ca_file)
        self.assertTrue(ctx.check_hostname)
        return ctx

    def test_plaintext_login_and_caps(self):
        c = imaplib.IMAP4("127.0.0.1", self.dv.imap_port, timeout=10)
        self.assertIn("STARTTLS", c.capabilities)
        self.assertIn("LITERAL+", c.capabilities)
        c.login("bob", "two words")
        caps = caps_of(c)
        self.assertIn("COMPRESS=DEFLATE", caps)
        self.assertIn("LITERAL+", caps)
        self.assertIn("QRESYNC", caps)
        c.logout()

    def test_runs_unprivileged(self):
        uid = proc_uid(self.dv.proc.pid)
        if os.geteuid() == 0:
            self.assertNotEqual(uid, 0)
            self.assertEqual(self.dv.run_user, TEST_USER)
        else:
            self.assertEqual(uid, os.geteuid())

    def test_starttls(self):
        c = imaplib.IMAP4("127.0.0.1", self.dv.imap_port, timeout=10)
        c.starttls(ssl_context=self.ctx())
        der = c.sock.getpeercert(binary_form=True)
        import hashlib
        self.assertEqual(hashlib.sha256(der).hexdigest(), self.dv.cert_sha256)
        c.login("alice", "secret")
        c.logout()

    def test_implicit_tls(self):
        c = imaplib.IMAP4_SSL("127.0.0.1", self.dv.imaps_port, ssl_context=self.ctx(),
                              timeout=10)
        self.assertNotIn("STARTTLS", c.capabilities)
        c.login("alice", "secret")
        self.assertIn("COMPRESS=DEFLATE", caps_of(c))
        c.logout()

    def test_tls_rejects_unknown_ca(self):
        ctx = ssl.create_default_context()  # system CAs only
        with self.assertRaises(ssl.SSLCertVerificationError):
            imaplib.IMAP4_SSL("127.0.0.1", self.dv.imaps_port, ssl_context=ctx, timeout=10)

    def test_tunnel_preauth(self):
        p = subprocess.run(["/bin/sh", "-c", self.dv.tunnel_command("alice")],
                           input=b"a SELECT INBOX\r\nb LOGOUT\r\n", capture_output=True,
                           timeout=20)
        self.assertEqual(p.returncode, 0, p.stderr)
        lines = p.stdout.split(b"\r\n")
        self.assertTrue(lines[0].startswith(b"* PREAUTH "), lines[0])
        self.assertIn(b"LITERAL+", lines[0])
        self.assertIn(b"a OK", p.stdout)
        # Nothing but IMAP on stdout: every line is untagged or one of our tags.
        for line in lines:
            self.assertTrue(line == b"" or line[:2] in (b"* ", b"a ", b"b "), line)

    def test_doveadm_save_and_snapshot(self):
        msg = (b"From: x@example.test\r\nSubject: doveadm\r\n"
               b"Message-ID: <doveadm-1@twinbox.test>\r\n\r\nhello\r\n")
        p = self.dv.doveadm("mailbox", "create", "-u", "bob", "Saved")
        self.assertEqual(p.returncode, 0, p.stderr)
        p = self.dv.doveadm("save", "-u", "bob", "-m", "Saved", input=msg)
        self.assertEqual(p.returncode, 0, p.stderr)
        p = self.dv.doveadm("flags", "add", "-u", "bob", "\\Flagged $Work", "mailbox",
                            "Saved", "all")
        self.assertEqual(p.returncode, 0, p.stderr)
        snap = imapcheck.snapshot(self.dv, "bob")
        self.assertEqual(len(snap["Saved"]), 1)
        ident, size, flags, _date = snap["Saved"][0]
        self.assertEqual(ident, "<doveadm-1@twinbox.test>")
        self.assertEqual(size, len(msg))
        self.assertEqual(flags, ("$Work", "\\Flagged"))

    def test_imapcheck_names_flags_dates(self):
        c = self.dv.client("alice")
        names = ["Sent Items", "&AMk-t&AOk-", 'Quote"d', "Back\\slash"]
        for n in names:
            imapcheck.create(c, n)
        got = imapcheck.list_mailboxes(c)
        for n in names:
            self.assertIn(n, got)
        ids = imapcheck.load_messages(self.dv, "alice", "Sent Items", 3, size=3000,
                                      seed=7, flags=("\\Seen", "$Label1"), client=c)
        self.assertEqual(len(set(ids)), 3)
        again = [imapcheck.make_message(i, 3000, 7, "Sent Items") for i in range(3)]
        self.assertEqual(again, [imapcheck.make_message(i, 3000, 7, "Sent Items")
                                 for i in range(3)])
        # A message without Message-ID is identified by its body digest.
        uid = imapcheck.append(c, 'Quote"d', b"Subject: no id\r\n\r\nbody\r\n",
                               flags=("\\Answered",), date=1600000000)
        self.assertIsNotNone(uid)
        c.logout()
        snap = imapcheck.snapshot(self.dv, "alice")
        rows = snap["Sent Items"]
        self.assertEqual(sorted(r[0] for r in rows), sorted(ids))
        for (ident, size, flags, date), (msg, day) in zip(
                sorted(rows, key=lambda r: ids.index(r[0])), again):
            self.assertEqual(size, len(msg))
            self.assertEqual(flags, ("$Label1", "\\Seen"))
            self.assertEqual(date, int(day.timestamp()))
        q = snap['Quote"d']
        self.assertEqual(len(q), 1)
        self.assertTrue(q[0][0].startswith("sha256:"))
        self.assertEqual(q[0][2:], (("\\Answered",), 1600000000))
        self.assertEqual(snap["&AMk-t&AOk-"], [])

    def test_relay_counts_bytes_and_turns(self):
        with Relay(self.dv.imap_port) as r:
            s = socket.create_connection(("127.0.0.1", r.port), timeout=10)
            received = recv_until(s, b"\r\n")
            sent = b"a LOGIN alice secret\r\n"
            s.sendall(sent)
            received += recv_until(s, b"a OK")
            batch = b"b NOOP\r\nc NOOP\r\nd SELECT INBOX\r\n"  # pipelined: one turn
            s.sendall(batch)
            sent += batch
            received += recv_until(s, b"d OK")
            s.sendall(b"e LOGOUT\r\n")
            sent += b"e LOGOUT\r\n"
            received += recv_all(s)
            s.close()
            self.assertTrue(r.wait_idle())
            st = r.stats()
            self.assertEqual(st["turns"], 3)
            self.assertEqual(st["bytes_c2s"], len(sent))
            self.assertEqual(st["bytes_s2c"], len(received))
            self.assertEqual(st["connections"], 1)
            r.reset_counters()
            self.assertEqual(r.stats()["bytes_c2s"], 0)
            # Several connections through the same relay, TLS included.
            ctx = ssl.create_default_context(cafile=self.dv.ca_file)
            clients = [imaplib.IMAP4("127.0.0.1", r.port, timeout=10) for _ in range(2)]
            with Relay(self.dv.imaps_port) as rt:
                clients.append(imaplib.IMAP4_SSL("127.0.0.1", rt.port, ssl_context=ctx,
                                                 timeout=10))
                for c in clients:
                    c.login("alice", "secret")
                    c.logout()
                self.assertTrue(rt.wait_idle())
                self.assertGreater(rt.stats()["bytes_s2c"], 500)  # certificate
            self.assertTrue(r.wait_idle())
            self.assertEqual(r.stats()["connections"], 3)
            self.assertIsNone(r.error)

    def test_relay_cut(self):
        with Relay(self.dv.imap_port, cut_after=10, cut_direction="s2c") as r:
            s = socket.create_connection(("127.0.0.1", r.port), timeout=10)
            self.assertEqual(recv_all(s), b"* OK [CAPA")
            s.close()
            # cut_once: the next connection passes.
            c = imaplib.IMAP4("127.0.0.1", r.port, timeout=10)
            c.login("alice", "secret")
            c.logout()
            r.arm_cut(5, "c2s")
            s = socket.create_connection(("127.0.0.1", r.port), timeout=10)
            recv_until(s, b"\r\n")
            r.reset_counters()
            s.sendall(b"a NOOP\r\n")
            recv_all(s)
            s.close()
            self.assertTrue(r.wait_idle())
            st = r.stats()
            self.assertEqual((st["bytes_c2s"], st["cuts"]), (5, 2))

    def test_relay_delay(self):
        with Relay(self.dv.imap_port, delay=0.05) as r:
            t0 = time.monotonic()
            s = socket.create_connection(("127.0.0.1", r.port), timeout=10)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            recv_until(s, b"\r\n")
            t1 = time.monotonic()
            self.assertGreaterEqual(t1 - t0, 0.05)
            # Separate writes within the delay still make one turn.
            for cmd in (b"a NOOP\r\n", b"b NOOP\r\n", b"c NOOP\r\n"):
                s.sendall(cmd)
            recv_until(s, b"c OK")
            self.assertGreaterEqual(time.monotonic() - t1, 0.1)
            s.sendall(b"d LOGOUT\r\n")
            recv_all(s)
            s.close()
            self.assertTrue(r.wait_idle())
            self.assertEqual(r.stats()["turns"], 2)


class RelayRate(unittest.TestCase):
    """The relay's bandwidth limit, against a plain TCP server (no Dovecot needed)."""

    def test_rate_paces_both_directions_and_keeps_counters(self):
        size, rate = 400_000, 1_000_000  # 0.4 s per direction at the limit
        srv = socket.create_server(("127.0.0.1", 0))
        got = []

        def serve():  # reads `size` bytes, then answers with as many
            conn, _ = srv.accept()
            with conn:
                got.append(len(recv_until(conn, b"\n", limit=size)))
                conn.sendall(b"y" * (size - 1) + b"\n")

        t = threading.Thread(target=serve, daemon=True)
        t.start()
        with Relay(srv.getsockname()[1], rate=rate) as r:
            s = socket.create_connection(("127.0.0.1", r.port), timeout=10)
            t0 = time.monotonic()
            s.sendall(b"x" * (size - 1) + b"\n")
            t1 = None
            back = b""
            while len(back) < size:
                d = s.recv(65536)
                if not d:
                    break
                t1 = t1 or time.monotonic()
                back += d
            t2 = time.monotonic()
            s.close()
            t.join(10)
            srv.close()
            self.assertTrue(r.wait_idle())
            st = r.stats()
        self.assertEqual((got, len(back)), ([size], size))
        self.assertEqual((st["bytes_c2s"], st["bytes_s2c"], st["turns"]), (size, size, 1))
        # Lower bounds only (a slow machine is never too fast): each direction needs
        # size/rate seconds less the bucket's 10 ms burst.
        self.assertGreaterEqual(t2 - t0, 2 * size / rate - 0.05)
        self.assertGreaterEqual(t2 - t1, size / rate - 0.03)
        self.assertIsNone(r.error)

    def test_bytes_before_a_reset_still_count(self):
        # A client that closes with unread data in its receive buffer sends RST right
        # after its last bytes (twinbox's LOGOUT, not waited for, then close): the relay
        # must still forward those bytes and count their turn.
        srv = socket.create_server(("127.0.0.1", 0))
        got = []

        def serve():  # greets twice (the client reads once), then reads until EOF
            conn, _ = srv.accept()
            with conn:
                conn.sendall(b"hello\n")
                got.append(recv_until(conn, b"go\n"))
                conn.sendall(b"more\n")
                got.append(recv_all(conn))

        t = threading.Thread(target=serve, daemon=True)
        t.start()
        with Relay(srv.getsockname()[1]) as r:
            s = socket.create_connection(("127.0.0.1", r.port), timeout=10)
            self.assertEqual(recv_until(s, b"\n"), b"hello\n")
            s.sendall(b"go\n")
            for _ in range(200):  # until "more" waits unread in the receive buffer
                if s.recv(5, socket.MSG_PEEK) == b"more\n":
                    break
            s.sendall(b"bye\n")
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()  # RST, the kernel's answer to unread data
            t.join(10)
            srv.close()
            self.assertTrue(r.wait_idle())
            self.assertEqual(got, [b"go\n", b"bye\n"])
            self.assertEqual(r.stats()["turns"], 2)

    def test_rate_zero_is_unlimited_and_negative_refused(self):
        with Relay(1, rate=0) as r:
            self.assertIsNone(r.rate)
        with self.assertRaises(ValueError):
            Relay(1, rate=-1)


@unittest.skipUnless(HAVE_DOVECOT, "dovecot-imapd is not installed")
class MdboxInstance(unittest.TestCase):
    def test_mdbox(self):
        with Dovecot(mail_format="mdbox", separator="/") as dv:
            c = dv.client()
            self.assertIn("COMPRESS=DEFLATE", caps_of(c))
            imapcheck.create(c, "a/b")
            self.assertEqual(imapcheck.separator(c), "/")
            c.logout()
            imapcheck.load_messages(dv, "alice", "a/b", 2)
            p = dv.doveadm("save", "-u", "alice", "-m", "INBOX",
                           input=imapcheck.make_message(0)[0])
            self.assertEqual(p.returncode, 0, p.stderr)
            snap = imapcheck.snapshot(dv, "alice")
            self.assertEqual((len(snap["INBOX"]), len(snap["a/b"])), (1, 2))
            self.assertEqual(imapcheck.snapshot(dv, "alice", as_separator="."),
                             {"INBOX": snap["INBOX"], "a.b": snap["a/b"]})
            self.assertTrue(os.path.isdir(os.path.join(dv.mail_dir("alice"), "storage")))
            p = subprocess.run(["/bin/sh", "-c", dv.tunnel_command("alice")],
                               input=b"a STATUS a/b (MESSAGES)\r\nb LOGOUT\r\n",
                               capture_output=True, timeout=20)
            self.assertTrue(p.stdout.startswith(b"* PREAUTH "), p.stdout)
            self.assertIn(b'* STATUS a/b (MESSAGES 2)', p.stdout)


@unittest.skipUnless(HAVE_DOVECOT, "dovecot-imapd is not installed")
class Options(unittest.TestCase):
    def test_literal_plus_off_compress_off_plugin_dir(self):
        plugins = tempfile.mkdtemp(prefix="twinbox-plugins-")
        os.chmod(plugins, 0o755)
        nolit = Dovecot(literal_plus=False)
        nocomp = Dovecot(compress=False)
        private = Dovecot(plugin_dir=plugins)
        try:
            for d in (nolit, nocomp, private):
                d.start()
            c = imaplib.IMAP4("127.0.0.1", nolit.imap_port, timeout=10)
            for caps in (set(c.capabilities), None):
                if caps is None:
                    c.login("alice", "secret")
                    caps = caps_of(c)
                self.assertFalse({"LITERAL+", "LITERAL-"} & caps, caps)
            self.assertIn("COMPRESS=DEFLATE", caps)
            self.assertIn("QRESYNC", caps)
            c.logout()
            c = nocomp.client()
            caps = caps_of(c)
            self.assertNotIn("COMPRESS=DEFLATE", caps)
            self.assertIn("LITERAL+", caps)
            c.logout()
            c = private.client()
            self.assertIn("COMPRESS=DEFLATE", caps_of(c))  # zlib found via symlinks
            c.logout()
            self.assertTrue(os.path.islink(os.path.join(private.module_dir,
                                                        "lib20_zlib_plugin.so")))
        finally:
            stop_all(nolit, nocomp, private)
            shutil.rmtree(plugins)

    def test_stop_leaves_nothing(self):
        dv = Dovecot()
        dv.start()
        pgid = dv.proc.pid
        tmp = dv.tmp
        c = dv.client()  # a live imap process during shutdown
        c.select("INBOX")
        tunnel = subprocess.Popen(["/bin/sh", "-c", dv.tunnel_command("alice")],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL)
        self.assertTrue(tunnel.stdout.readline().startswith(b"* PREAUTH"))
        t0 = time.monotonic()
        dv.stop()
        self.assertLess(time.monotonic() - t0, 15)
        self.assertIsNone(dv.proc)
        self.assertEqual(dv._our_processes(pgid), [])
        self.assertFalse(os.path.exists(tmp))
        # What outlived the master: the logged-in session (and log/stats waiting for
        # it), and the tunnel, which is not the master's child at all.
        self.assertTrue(any(cmd.endswith("/imap") for _p, cmd in dv.leftovers))
        self.assertTrue(any("imap -c" in cmd for _p, cmd in dv.leftovers))
        tunnel.wait(10)
        tunnel.stdin.close()
        tunnel.stdout.close()
        try:
            c.logout()  # the server is gone: this only closes our socket
        except (imaplib.IMAP4.abort, OSError):
            pass


if __name__ == "__main__":
    unittest.main()
