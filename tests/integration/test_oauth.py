"""Authentication beyond a password: SASL XOAUTH2 and OAUTHBEARER (RFC 7628) with a token
from oauth-token-command, the retry after an expired token, and AUTHENTICATE PLAIN for
another user (auth-user: a Dovecot master user).

The OAuth servers are evil.py scripts (standalone `script_minimal` plus a rule for
AUTHENTICATE XOAUTH2/OAUTHBEARER that decodes the SASL message and checks it byte for
byte); the token command is a shell script that counts its runs in a file and prints
`tok-N` on run N, so a server accepting only `tok-2` plays a token that expired."""
import base64
import json
import os
import shutil
import tempfile

from tests.fixture.dovecot import Dovecot
from tests.fixture.evil import Evil, MINIMAL_CAPS
from tests.integration.common import TestCase, twinbox

USER = "alice@example.com"
CAPS_NO_IR = MINIMAL_CAPS.replace("SASL-IR ", "")


def b64(raw):
    return base64.b64encode(raw).decode()


def xoauth2_msg(token, user=USER):
    return b"user=%s\x01auth=Bearer %s\x01\x01" % (user.encode(), token.encode())


def oauthbearer_msg(token, port, user=USER):
    return (b"n,a=%s,\x01host=127.0.0.1\x01port=%d\x01auth=Bearer %s\x01\x01"
            % (user.encode(), port, token.encode()))


class OAuthServer:
    """An evil.py standalone server offering AUTH=XOAUTH2 and AUTH=OAUTHBEARER that accepts
    the tokens in `good`. A refused token gets the JSON error challenge of the mechanism
    (`status`), then, once the client answered it, `NO [AUTHENTICATIONFAILED]`. Every
    decoded SASL message is kept in `seen`, every answer to the error in `error_answers`."""

    def __init__(self, good, caps=MINIMAL_CAPS, status=None, close_first_failure=False):
        self.ev = Evil(None)
        self.ev.script_minimal(user=None, caps=caps, auth_caps="AUTH=XOAUTH2 AUTH=OAUTHBEARER")
        self.good = set(good)
        self.status = status
        self.seen = []
        self.error_answers = []
        self.port = self.ev.port
        rule = dict(reply=self.start, cont=self.cont)
        self.ev.on(r"AUTHENTICATE (XOAUTH2|OAUTHBEARER)\b", **rule)
        if close_first_failure:
            # The first connection is closed right after its refusal is out.
            self.ev.on(r"AUTHENTICATE (XOAUTH2|OAUTHBEARER)\b", connection=1,
                       disconnect="after", **rule)

    def expected(self, mech, token):
        if mech == "XOAUTH2":
            return xoauth2_msg(token)
        return oauthbearer_msg(token, self.port)

    def check(self, cmd, data):
        mech = str(cmd.args()[1]).upper()
        raw = base64.b64decode(data, validate=True)
        self.seen.append((mech, raw))
        if any(raw == self.expected(mech, t) for t in self.good):
            cmd.conn.state["auth"] = True
            return "OK [CAPABILITY %s] Logged in" % MINIMAL_CAPS
        cmd.conn.state["sasl_error"] = True
        if mech == "XOAUTH2":
            err = {"status": self.status or "401", "schemes": "bearer",
                   "scope": "https://mail.google.com/"}
        else:
            err = {"status": self.status or "invalid_token", "scope": "imap"}
        return "+ " + b64(json.dumps(err).encode())

    def start(self, cmd):
        a = cmd.args()
        return self.check(cmd, a[2]) if len(a) > 2 else "+ "

    def cont(self, cmd, line):
        if cmd.conn.state.pop("sasl_error", False):
            self.error_answers.append(line)
            return "NO [AUTHENTICATIONFAILED] Invalid credentials (Failure)"
        return self.check(cmd, line)

    def auth_commands(self):
        return [c for c in self.ev.commands if c.name == "AUTHENTICATE"]

    def stop(self):
        self.ev.stop()
        self.ev.check()


class OAuthTest(TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="twinbox-oauth-")
        self.counter = os.path.join(self.tmp, "runs")
        self.servers = []

    def tearDown(self):
        for s in self.servers:
            s.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def server(self, good, **kw):
        s = OAuthServer(good, **kw)
        self.servers.append(s)
        return s

    def token_command(self, body=None):
        """A script counting its runs in self.counter; prints tok-N on run N."""
        path = os.path.join(self.tmp, "token.sh")
        with open(path, "w") as f:
            f.write("#!/bin/sh\nn=$(cat %s 2>/dev/null || echo 0)\nn=$((n + 1))\n"
                    "echo $n > %s\n" % (self.counter, self.counter))
            f.write(body or 'echo "tok-$n"\n')
        return "sh " + path

    def runs(self):
        with open(self.counter) as f:
            return int(f.read())

    def config(self, port, auth="xoauth2", command=None, extra=""):
        path = os.path.join(self.tmp, "config")
        with open(path, "w") as f:
            f.write(f"[account mail]\ntype = imap\nhost = 127.0.0.1\nport = {port}\n"
                    f"starttls = no\nuser = {USER}\nauth = {auth}\n"
                    f"oauth-token-command = {command or self.token_command()}\n{extra}")
        return path

    def probe(self, cfg, *opts):
        return twinbox("-c", cfg, *opts, "probe", "mail", env={"TWINBOX_PASSWORD": ""})

    def assertNoToken(self, r):
        for secret in ("tok-", b64(xoauth2_msg("tok-1"))[:16]):
            self.assertNotIn(secret, r.out + r.err)

    # ---- XOAUTH2 ----

    def test_xoauth2_with_sasl_ir(self):
        s = self.server({"tok-1"})
        r = self.probe(self.config(s.port), "-vv")
        self.assertEqual(r.code, 0, r)
        self.assertIn("auth: XOAUTH2", r.out)
        self.assertEqual(s.seen, [("XOAUTH2", xoauth2_msg("tok-1"))])
        cmd = s.auth_commands()[0]
        self.assertEqual(len(cmd.args()), 3, "initial response on the command line")
        self.assertEqual(cmd.continuations, [])
        self.assertEqual(self.runs(), 1)
        self.assertIn("AUTHENTICATE XOAUTH2 <redacted>", r.err)
        self.assertNoToken(r)

    def test_xoauth2_without_sasl_ir(self):
        s = self.server({"tok-1"}, caps=CAPS_NO_IR)
        r = self.probe(self.config(s.port), "-vv")
        self.assertEqual(r.code, 0, r)
        self.assertEqual(s.seen, [("XOAUTH2", xoauth2_msg("tok-1"))])
        cmd = s.auth_commands()[0]
        self.assertEqual(len(cmd.args()), 2, "no initial response without SASL-IR")
        self.assertEqual(len(cmd.continuations), 1)
        self.assertNoToken(r)

    def test_long_token_goes_in_the_continuation(self):
        # An initial response over 1 KiB would have to be a literal, which SASL-IR forbids.
        big = "tok-1" + "x" * 2000
        cmd_line = self.token_command('echo "tok-${n}%s"\n' % ("x" * 2000))
        s = self.server({big})
        r = self.probe(self.config(s.port, command=cmd_line))
        self.assertEqual(r.code, 0, r)
        cmd = s.auth_commands()[0]
        self.assertEqual(len(cmd.args()), 2, cmd.args())
        self.assertEqual(s.seen, [("XOAUTH2", xoauth2_msg(big))])

    def test_json_output_names_the_mechanism(self):
        s = self.server({"tok-1"})
        r = self.probe(self.config(s.port), "--json")
        self.assertEqual(r.code, 0, r)
        self.assertEqual(r.json()["auth"], "XOAUTH2")

    # ---- OAUTHBEARER ----

    def test_oauthbearer(self):
        s = self.server({"tok-1"})
        r = self.probe(self.config(s.port, auth="oauthbearer"), "-vv")
        self.assertEqual(r.code, 0, r)
        self.assertIn("auth: OAUTHBEARER", r.out)
        self.assertEqual(s.seen, [("OAUTHBEARER", oauthbearer_msg("tok-1", s.port))])
        self.assertNoToken(r)

    def test_oauthbearer_expired_token_answered_with_ctrl_a(self):
        s = self.server({"tok-2"})
        r = self.probe(self.config(s.port, auth="oauthbearer"))
        self.assertEqual(r.code, 0, r)
        self.assertEqual(s.error_answers, ["AQ=="])  # %x01 (RFC 7628 3.2.3)
        self.assertEqual([m for _, m in s.seen],
                         [oauthbearer_msg("tok-1", s.port), oauthbearer_msg("tok-2", s.port)])

    # ---- expiry and failures ----

    def test_expired_token_runs_the_command_again(self):
        s = self.server({"tok-2"})
        r = self.probe(self.config(s.port), "-vv")
        self.assertEqual(r.code, 0, r)
        self.assertEqual(self.runs(), 2)
        self.assertEqual([m for _, m in s.seen], [xoauth2_msg("tok-1"), xoauth2_msg("tok-2")])
        self.assertEqual(s.error_answers, [""])  # the empty line Google requires
        self.assertEqual(len(s.ev.connections), 1, "retried on the same connection")
        self.assertNoToken(r)

    def test_expired_token_after_the_server_hung_up(self):
        s = self.server({"tok-2"}, close_first_failure=True)
        r = self.probe(self.config(s.port))
        self.assertEqual(r.code, 0, r)
        self.assertEqual(self.runs(), 2)
        self.assertEqual(len(s.ev.connections), 2, "a new connection for the new token")
        self.assertEqual(s.seen[-1], ("XOAUTH2", xoauth2_msg("tok-2")))
        self.assertEqual(s.auth_commands()[-1].conn.index, 2)

    def test_second_refusal_is_an_auth_error(self):
        s = self.server(set())
        r = self.probe(self.config(s.port))
        self.assertEqual(r.code, 4, r)
        self.assertOneLineError(r, "mail:", "login failed", "AUTHENTICATIONFAILED",
                                "new token")
        self.assertEqual(self.runs(), 2, "one retry, not more")
        self.assertEqual(len(s.seen), 2)
        self.assertNoToken(r)
        r = self.probe(self.config(s.port), "-vv")  # the traces of both attempts
        self.assertEqual(r.code, 4, r)
        self.assertIn("<redacted>", r.err)
        self.assertNoToken(r)

    def test_other_status_without_failure_code_is_final(self):
        # Neither 401 nor [AUTHENTICATIONFAILED] nor "expired": a new token cannot help.
        s = self.server(set(), status="400")
        s.ev.on(r"AUTHENTICATE XOAUTH2\b", reply=s.start,
                cont=lambda cmd, line: "NO [CANNOT] Mechanism refused"
                if cmd.conn.state.pop("sasl_error", False) else s.check(cmd, line))
        r = self.probe(self.config(s.port))
        self.assertEqual(r.code, 4, r)
        self.assertEqual(self.runs(), 1)
        self.assertOneLineError(r, "mail:", "login failed", "CANNOT")

    def test_failing_token_command(self):
        s = self.server({"tok-1"})
        r = self.probe(self.config(s.port, command="echo oops >&2; exit 3"))
        self.assertEqual(r.code, 3, r)
        lines = [l for l in r.err.splitlines() if l.strip() and l != "oops"]
        self.assertEqual(len(lines), 1, r)
        self.assertIn("mail: oauth-token-command failed (exit status 3)", lines[0])
        self.assertEqual(s.seen, [])

    def test_token_command_failing_on_refresh(self):
        s = self.server({"tok-2"})
        cmd = self.token_command('[ "$n" -ge 2 ] && exit 7\necho "tok-$n"\n')
        r = self.probe(self.config(s.port, command=cmd))
        self.assertEqual(r.code, 3, r)
        self.assertOneLineError(r, "mail:", "oauth-token-command failed (exit status 7)")
        self.assertEqual(self.runs(), 2)

    def test_token_command_environment_is_scrubbed(self):
        s = self.server({"tok-1"})
        seen = os.path.join(self.tmp, "env")
        cmd = self.token_command('env > %s\necho "tok-$n"\n' % seen)
        r = twinbox("-c", self.config(s.port, command=cmd), "probe", "mail",
                    env={"TWINBOX_PASSWORD": "pw-leak", "TWINBOX_PASSWORD_X": "pw-leak2"})
        self.assertEqual(r.code, 0, r)
        with open(seen) as f:
            self.assertNotIn("pw-leak", f.read())

    def test_server_without_the_mechanism(self):
        ev = Evil(None)
        ev.script_minimal(user=None)  # AUTH=PLAIN only
        self.addCleanup(ev.stop)
        r = self.probe(self.config(ev.port))
        self.assertEqual(r.code, 4, r)
        self.assertOneLineError(r, "mail:", "does not offer AUTH=XOAUTH2")
        self.assertFalse([c for c in ev.commands if c.name in ("AUTHENTICATE", "LOGIN")])

    # ---- configuration ----

    def test_config_mistakes(self):
        port = 1
        cases = [
            ("auth = xoauth2\n", "needs 'oauth-token-command'"),
            ("auth = xoauth2\noauth-token-command = x\npassword-file = /x\n",
             "'password-file' does not apply to auth = xoauth2"),
            ("oauth-token-command = x\n", "needs auth = xoauth2 or oauthbearer"),
            ("auth = login\nauth-user = admin\npassword = x\n", "'auth-user' needs auth = plain"),
            ("auth = kerberos\n", "is not plain, login, xoauth2 or oauthbearer"),
        ]
        for text, needle in cases:
            path = os.path.join(self.tmp, "bad")
            with open(path, "w") as f:
                f.write(f"[account mail]\ntype = imap\nhost = 127.0.0.1\nport = {port}\n"
                        f"user = {USER}\n{text}")
            os.chmod(path, 0o600)
            r = twinbox("-c", path, "probe", "mail", env={"TWINBOX_PASSWORD": ""})
            self.assertEqual(r.code, 3, (text, r))
            self.assertOneLineError(r, needle)

    # ---- PLAIN with an authorization identity, scripted ----

    def test_plain_authzid_scripted(self):
        ev = Evil(None)
        ev.script_minimal(user=None)
        self.addCleanup(ev.stop)
        path = os.path.join(self.tmp, "config")
        with open(path, "w") as f:
            f.write(f"[account mail]\ntype = imap\nhost = 127.0.0.1\nport = {ev.port}\n"
                    f"starttls = no\nuser = alice\nauth-user = admin\npassword = adminpw\n")
        os.chmod(path, 0o600)
        r = twinbox("-c", path, "probe", "mail")
        self.assertEqual(r.code, 0, r)
        self.assertIn("auth: PLAIN", r.out)
        cmd = [c for c in ev.commands if c.name == "AUTHENTICATE"][0]
        self.assertEqual(base64.b64decode(cmd.args()[2]), b"alice\0admin\0adminpw")


class MasterUserTest(TestCase):
    """AUTHENTICATE PLAIN as a Dovecot master user for alice (authzid alice, authcid admin)."""

    @classmethod
    def setUpClass(cls):
        cls.dv = Dovecot(users={"alice": "secret", "bob": "bobpw"},
                         master_users={"admin": "adminpw"})
        cls.dv.start()
        c = cls.dv.client("alice")
        c.create("OnlyAlice")
        c.logout()

    @classmethod
    def tearDownClass(cls):
        cls.dv.stop()

    def run_probe(self, password, user="alice"):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "config")
            with open(path, "w") as f:
                f.write(f"[account owner]\ntype = imap\nhost = 127.0.0.1\n"
                        f"port = {self.dv.imap_port}\nstarttls = no\nuser = {user}\n"
                        f"auth-user = admin\npassword = {password}\n")
            os.chmod(path, 0o600)
            return twinbox("-c", path, "probe", "--json", "owner")

    def test_master_user_sees_the_owners_mailboxes(self):
        r = self.run_probe("adminpw")
        self.assertEqual(r.code, 0, r)
        j = r.json()
        self.assertEqual(j["auth"], "PLAIN")
        self.assertIn("OnlyAlice", {m["name"] for m in j["mailboxes"]})
        r = self.run_probe("adminpw", user="bob")
        self.assertEqual(r.code, 0, r)
        self.assertNotIn("OnlyAlice", {m["name"] for m in r.json()["mailboxes"]})

    def test_wrong_master_password(self):
        r = self.run_probe("wrong")
        self.assertEqual(r.code, 4, r)
        self.assertOneLineError(r, "owner", "login failed")

    def test_owners_password_is_not_the_masters(self):
        r = self.run_probe("secret")  # alice's own password, with auth-user = admin
        self.assertEqual(r.code, 4, r)
