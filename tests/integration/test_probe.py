"""Acceptance for the connection engine: `twinbox probe` over every transport, certificate
checks and one-line errors, against a private Dovecot started by the fixture."""
import os
import socket
import tempfile

from tests.fixture.dovecot import Dovecot
from tests.fixture.relay import Relay
from tests.integration.common import TestCase, twinbox

PW = {"TWINBOX_PASSWORD": "secret"}


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class ProbeTest(TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dv = Dovecot(users={"alice": "secret"})
        cls.dv.start()
        c = cls.dv.client("alice")
        c.create("Archive")
        c.create("Archive.2025")
        c.logout()

    @classmethod
    def tearDownClass(cls):
        cls.dv.stop()

    def url(self, scheme="imap", port=None, **q):
        port = port or (self.dv.imaps_port if scheme == "imaps" else self.dv.imap_port)
        query = "&".join(f"{k}={v}" for k, v in q.items())
        return f"{scheme}://alice@127.0.0.1:{port}/" + (f"?{query}" if query else "")

    def probe_json(self, url, *extra, env=PW):
        r = twinbox("probe", "--json", *extra, url, env=env)
        self.assertEqual(r.code, 0, r)
        return r.json()

    def check_session(self, j, tls):
        self.assertTrue(j["compress"], j)
        self.assertEqual(j["tls"] is not None, tls, j)
        names = {m["name"] for m in j["mailboxes"]}
        self.assertLessEqual({"INBOX", "Archive", "Archive.2025"}, names)
        inbox = next(m for m in j["mailboxes"] if m["name"] == "INBOX")
        self.assertGreater(inbox["uidvalidity"], 0)
        self.assertGreater(inbox["uidnext"], 0)
        self.assertGreater(inbox["highestmodseq"], 0)
        self.assertIn("QRESYNC", j["enabled"])
        self.assertGreater(j["round_trips"], 0)

    def test_plaintext_loopback(self):
        j = self.probe_json(self.url(starttls="no"))
        self.check_session(j, tls=False)

    def test_starttls(self):
        j = self.probe_json(self.url(**{"tls-ca-file": self.dv.ca_file}))
        self.check_session(j, tls=True)
        self.assertIn("TLS", j["tls"])

    def test_implicit_tls(self):
        j = self.probe_json(self.url("imaps", **{"tls-ca-file": self.dv.ca_file}))
        self.check_session(j, tls=True)

    def test_tunnel(self):
        j = self.probe_json("tunnel:" + self.dv.tunnel_command("alice"), env={})
        self.check_session(j, tls=False)
        self.assertTrue(j["preauth"])

    def test_config_file_and_text_output(self):
        with tempfile.TemporaryDirectory() as d:
            pwfile = os.path.join(d, "pw")
            with open(pwfile, "w") as f:
                f.write("secret\n")
            os.chmod(pwfile, 0o600)
            cfg = os.path.join(d, "config")
            with open(cfg, "w") as f:
                f.write(f"[account srv]\ntype = imaps\nhost = 127.0.0.1\n"
                        f"port = {self.dv.imaps_port}\nuser = alice\n"
                        f"password-file = {pwfile}\ntls-ca-file = {self.dv.ca_file}\n")
            r = twinbox("-c", cfg, "probe", "srv", env={"TWINBOX_PASSWORD": ""})
            self.assertEqual(r.code, 0, r)
            self.assertIn("compress: DEFLATE", r.out)
            self.assertIn("tls: TLSv1.", r.out)
            self.assertRegex(r.out, r"INBOX uidvalidity=\d+ uidnext=\d+ highestmodseq=\d+")
            self.assertRegex(r.out, r"round trips: \d+")

    def test_untrusted_certificate_refused(self):
        r = twinbox("probe", self.url("imaps"), env=PW)
        self.assertEqual(r.code, 4, r)
        self.assertOneLineError(r, "TLS certificate verify failed")
        r = twinbox("probe", self.url(), env=PW)  # STARTTLS: same check
        self.assertEqual(r.code, 4, r)
        self.assertOneLineError(r, "TLS certificate verify failed")

    def test_fingerprint_pinning(self):
        j = self.probe_json(self.url("imaps", **{"tls-fingerprint": self.dv.cert_sha256}))
        self.check_session(j, tls=True)
        r = twinbox("probe", self.url("imaps", **{"tls-fingerprint": "ab" * 32}), env=PW)
        self.assertEqual(r.code, 4, r)
        self.assertOneLineError(r, "fingerprint mismatch")

    def test_insecure_switch_warns(self):
        r = twinbox("probe", self.url("imaps", **{"tls-verify": "no"}), env=PW)
        self.assertEqual(r.code, 0, r)
        self.assertIn("verification is off", r.err)

    def test_wrong_password(self):
        r = twinbox("probe", self.url(starttls="no"), env={"TWINBOX_PASSWORD": "wrong"})
        self.assertEqual(r.code, 4, r)
        self.assertOneLineError(r, "alice@127.0.0.1", "login failed", "AUTHENTICATIONFAILED")

    def test_unreachable_port(self):
        r = twinbox("probe", self.url(port=free_port(), starttls="no"), env=PW)
        self.assertEqual(r.code, 5, r)
        self.assertOneLineError(r, "connect", "refused")

    def test_host_name_goes_through_the_resolver(self):
        # An address given as digits skips the resolver; a name still takes it.
        url = f"imap://alice@localhost:{self.dv.imap_port}/?starttls=no"
        self.check_session(self.probe_json(url), tls=False)

    def test_ipv6_literal_with_nothing_listening(self):
        # Parsed without the resolver too: refused (or unreachable where this host has no
        # IPv6), one line naming the address, exit 5 like any connect failure.
        r = twinbox("probe", f"imap://alice@[::1]:{free_port()}/?starttls=no", env=PW)
        self.assertEqual(r.code, 5, r)
        self.assertOneLineError(r, "connect to ::1 port", "failed")

    def test_server_closes_at_greeting(self):
        relay = Relay(self.dv.imap_port, cut_after=10, cut_direction="s2c")
        try:
            r = twinbox("probe", self.url(port=relay.port, starttls="no"), env=PW)
        finally:
            relay.stop()
        self.assertEqual(r.code, 5, r)
        self.assertOneLineError(r, "closed")

    def test_password_never_logged(self):
        r = twinbox("-vv", "probe", self.url(starttls="no"),
                    env={"TWINBOX_PASSWORD": "secret"})
        self.assertEqual(r.code, 0, r)
        self.assertIn("AUTHENTICATE PLAIN <redacted>", r.err)
        self.assertNotIn("secret", r.err + r.out)
        self.assertNotIn("AHNlY3JldA", r.err)  # no base64 of the SASL payload either

    def test_password_in_url_refused(self):
        r = twinbox("probe", f"imap://alice:secret@127.0.0.1:{self.dv.imap_port}/")
        self.assertEqual(r.code, 3, r)
        self.assertNotIn("secret", r.err)
