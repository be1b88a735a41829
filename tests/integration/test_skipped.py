"""One message never wedges a pair: a message the destination refuses, or the source cannot
deliver, is reported, recorded as skipped, and the rest of the run goes on; it is neither
lost nor copied twice. Also: an APPENDUID out of range, and secrets kept from children."""
import os
import re

from tests.fixture import imapcheck as ic
from tests.fixture.dovecot import Dovecot
from tests.integration.common import twinbox
from tests.integration.test_safety import Pair

ODD = 7777  # the size of the one message servers refuse in these tests


class _Seeded(Pair):
    """a holds INBOX (5 messages and one of ODD bytes) and Work (3)."""

    def setUp(self):
        super().setUp()
        c = self.a.client("alice")
        ic.load_messages(self.a, "alice", "INBOX", 5, size=900, seed=1, client=c)
        ic.load_messages(self.a, "alice", "Work", 3, size=900, seed=2, client=c)
        msg, day = ic.make_message(99, size=100, seed=3)
        head = msg[:msg.index(b"\r\n\r\n") + 4]
        body = b""
        while len(head) + len(body) + 80 <= ODD:
            body += b"y" * 78 + b"\r\n"
        msg = head + body + b"z" * (ODD - len(head) - len(body) - 2) + b"\r\n"
        self.assertEqual(len(msg), ODD)
        self.odd_id = re.search(rb"Message-ID: (<[^>]+>)", msg).group(1).decode()
        ic.append(c, "INBOX", msg, flags=("\\Seen",), date=day)
        c.logout()

    def ids(self, dv, box="INBOX"):
        c = dv.client("alice")
        try:
            return [m["message_id"] for m in ic.fetch_all(c, box)]
        finally:
            c.logout()

    def status(self):
        r = twinbox("-c", self.cfg, "status", timeout=120)
        self.assertEqual(r.code, 0, r)
        return r.out


class SkippedTest(_Seeded):

    def test_refused_message_is_skipped_then_retried_on_request(self):
        pb = self.proxy(self.b)
        refuse = pb.on(r"APPEND .*\{%d\+?\}" % ODD, reply="NO [LIMIT] Message too large")
        self.write_config(b_port=pb.port)
        r = self.sync(code=7)
        warn = self.warnings(r)
        self.assertEqual(len(warn), 1, r)
        for part in ("mailbox INBOX", "%d bytes" % ODD, self.odd_id, "[LIMIT]",
                     "Message too large"):
            self.assertIn(part, warn[0])
        self.assertIn("1 message not copied", r.err)
        self.assertEqual(len(self.ids(self.b)), 5, "all other messages copied")
        self.assertEqual(len(self.ids(self.b, "Work")), 3, "and the other mailboxes")
        # Refused alone once (before that, maybe as part of a MULTIAPPEND batch, which is
        # then sent again one message per APPEND).
        self.assertEqual([len(c.literal_sizes) for c in refuse.commands].count(1), 1)
        out = self.status()
        self.assertIn("1 skipped message", out)
        self.assertIn(self.odd_id, out)
        self.assertIn("refused", out)
        # The next run does not try it again; it says it is still skipped.
        matched = refuse.matched
        r = self.sync()
        self.assertEqual(refuse.matched, matched, "not retried")
        self.assertIn("1 message remain", r.err)
        # --retry-skipped does, once the server takes it.
        pb.remove(refuse)
        r = self.sync("--retry-skipped")
        self.assertIn("copied a->b 1", r.out)
        self.assertSame()
        self.assertNotIn("skipped message", self.status())
        self.assertIn("copied a->b 0, b->a 0", self.sync().out)

    def test_refused_message_is_retried_when_its_flags_change(self):
        pb = self.proxy(self.b)
        # Refused once alone; a MULTIAPPEND batch holding it is refused too (then sent again
        # one message per APPEND).
        pb.on(r"APPEND (?=.*\{%d\+?\})(?:.*?\{\d+\+?\}){2}" % ODD, reply="BAD [CANNOT] no",
              times=None)
        pb.on(r"APPEND [^{]*\{%d\+?\}$" % ODD, reply="BAD [CANNOT] Flag not accepted", times=1)
        self.write_config(b_port=pb.port)
        self.sync(code=7)
        c = self.a.client("alice")
        c.select("INBOX")
        c.store("6", "+FLAGS", "(\\Flagged)")
        c.logout()
        r = self.sync()
        self.assertIn("copied a->b 1", r.out)
        self.assertSame()

    def test_source_without_body_is_copied_next_run(self):
        pa = self.proxy(self.a)
        rule = pa.on(r"UID FETCH 6 \(UID BODY\.PEEK\[\]\)", drop=r"^\* \d+ FETCH \(UID 6 ",
                     times=1)
        # one command at a time: the proxy holds untagged lines while it transforms
        self.write_config(a_port=pa.port, a_extra="max-inflight = 1")
        r = self.sync()  # a race as often as not: retried, no person needed yet
        self.assertEqual(rule.fired, 1)
        self.assertIn("returned no body; the next run tries again", r.err)
        self.assertNotIn(self.odd_id, self.ids(self.b), "not copied")
        self.assertIn("not delivered", self.status())
        r = self.sync()
        self.assertIn("copied a->b 1", r.out)
        self.assertSame()

    def test_source_that_never_delivers_needs_a_person_after_three_runs(self):
        pa = self.proxy(self.a)
        rule = pa.on(r"UID FETCH 6 \(UID BODY\.PEEK\[\]\)", drop=r"^\* \d+ FETCH \(UID 6 ")
        self.write_config(a_port=pa.port, a_extra="max-inflight = 1")
        self.sync()
        self.sync()
        r = self.sync(code=7)
        self.assertEqual(rule.fired, 3)
        self.assertIn("1 message not copied this run", r.err)
        r = self.sync()
        self.assertEqual(rule.matched, 3, "not tried a fourth time")
        self.assertIn("1 message remain", r.err)
        pa.remove(rule)
        self.assertIn("copied a->b 1", self.sync("--retry-skipped").out)
        self.assertSame()

    def test_nil_body_is_not_copied_as_an_empty_message(self):
        pa = self.proxy(self.a)
        pa.on(r"UID FETCH 6 \(UID BODY\.PEEK\[\]\)", drop=r"^\* \d+ FETCH \(UID 6 ",
              inject=["* 6 FETCH (UID 6 BODY[] NIL)"], times=1)
        self.write_config(a_port=pa.port, a_extra="max-inflight = 1")
        r = self.sync()
        self.assertIn("BODY[] NIL", r.err)
        self.assertEqual(len(self.ids(self.b)), 5)
        self.sync()
        self.assertSame()

    def test_unreadable_body_is_reported_and_retried(self):
        pa = self.proxy(self.a)
        pa.on(r"UID FETCH 6 \(UID BODY\.PEEK\[\]\)", drop=r"^\* \d+ FETCH \(UID 6 ",
              inject=["* 6 FETCH (UID 6 BODY[] 12345) junk"], times=1)
        self.write_config(a_port=pa.port, a_extra="max-inflight = 1")
        r = self.sync()
        self.assertIn("unreadable response: * 6 FETCH (UID 6 BODY[] 12345) junk", r.err)
        self.assertEqual(len(self.ids(self.b)), 5)
        self.sync()
        self.assertSame()

    def test_message_over_max_message_size_is_skipped(self):
        self.write_config(b_extra="max-message-size = 4K")
        r = self.sync(code=7)
        self.assertIn("larger than the 4096 bytes allowed", r.err)
        self.assertEqual(len(self.ids(self.b)), 5)
        self.write_config()
        self.sync()  # held: the size did not change
        self.sync("--retry-skipped")
        self.assertSame()

    def test_appenduid_out_of_range_is_never_a_duplicate(self):
        pb = self.proxy(self.b)
        pb.on(r"APPEND ", status="OK [APPENDUID 1 4294967297] Append completed.", times=1)
        self.write_config(b_port=pb.port)
        r = self.sync(code=5)
        self.assertOneLineError(r, "APPENDUID out of range")
        self.sync()
        self.assertSame()
        for box in ("INBOX", "Work"):
            ids = self.ids(self.b, box)
            self.assertEqual(len(ids), len(set(ids)), "no duplicates in " + box)


class ServerSizeLimitTest(_Seeded):
    """The refusal comes from the server itself: Dovecot's quota plugin on b with a
    maximum message size below the odd message's."""

    def setUp(self):
        self.b_conf = dict(extra_mail_plugins=["quota"],
                           extra_conf="plugin {\n  quota = maildir:User quota\n"
                                      "  quota_max_mail_size = 5k\n}\n")
        super().setUp()

    def make_b(self):
        return Dovecot(users={"alice": "secret"}, **self.b_conf)

    def test_server_refuses_one_message(self):
        r = self.sync(code=7)
        self.assertIn("APPEND refused by b: NO [LIMIT]", r.err)
        self.assertEqual(len(self.ids(self.b)), 5)
        self.assertEqual(len(self.ids(self.b, "Work")), 3)
        self.assertIn(self.odd_id, self.status())
        r = self.sync()
        self.assertIn("1 message remain", r.err)
        self.assertIn("copied a->b 0, b->a 0", r.out)


class SecretsTest(Pair):
    def test_children_never_see_the_password(self):
        dump = os.path.join(self.tmp.name, "env")
        os.chmod(self.tmp.name, 0o755)
        tunnel = self.a.tunnel_command("alice")
        r = twinbox("probe", f"tunnel:env > {dump}; {tunnel}",
                    env={"TWINBOX_PASSWORD": "hunter2-env", "TWINBOX_PASSWORD_SRC": "x2"})
        self.assertEqual(r.code, 0, r)
        with open(dump) as f:
            env = f.read()
        self.assertNotIn("hunter2", env)
        self.assertNotIn("TWINBOX_PASSWORD", env)
        # password-command, with a password-env named too
        dump2 = os.path.join(self.tmp.name, "env2")
        with open(self.cfg, "w") as f:
            f.write(f"[account a]\ntype = imap\nhost = 127.0.0.1\nport = {self.a.imap_port}\n"
                    f"user = alice\nstarttls = no\npassword-command = env > {dump2}; "
                    f"echo secret\n")
        os.chmod(self.cfg, 0o600)
        r = twinbox("-c", self.cfg, "probe", "a", env={"TWINBOX_PASSWORD": "hunter2-env"})
        self.assertEqual(r.code, 0, r)
        with open(dump2) as f:
            self.assertNotIn("hunter2", f.read())
