"""XREPLICATE WATCH streaming, expired-history fallback, and argument fuzzing."""
import glob
import os
import random
import time
import unittest

from tests.plugin.common import PluginTestCase, message
from tests.plugin.xrclient import Report, uidset

PUSH_BOUND = 5.0  # seconds: generous bound; the notifier fires after ~0.5 s


class TestWatch(PluginTestCase):

    def start_watch(self, token):
        tag = self.c.next_tag()
        self.c.send("%s XREPLICATE WATCH %s\r\n" % (tag, token))
        initial = []
        while True:
            resp = self.c.read_response()
            if resp.startswith(b"+"):
                return tag, Report(initial)
            self.assertFalse(resp.startswith(tag.encode()), resp)
            initial.append(resp)

    def read_batch(self, timeout=PUSH_BOUND):
        """Responses up to and including the next POSITION."""
        lines = []
        deadline = time.monotonic() + timeout
        while True:
            resp = self.c.read_response(timeout=max(0.01, deadline - time.monotonic()))
            if resp.startswith(b"* OK"):
                continue
            lines.append(resp)
            if resp.startswith(b"* XREPLICATE POSITION"):
                return Report(lines)

    def stop_watch(self, tag):
        self.c.send("DONE\r\n")
        status, text, _ = self.c.collect(tag)
        self.assertEqual(status, "OK", text)
        self.ok("NOOP")

    def test_watch_pushes_changes_from_other_connection(self):
        self.append("INBOX", "m1")
        rep = self.position()
        guid = self.guid(rep, "INBOX")
        other = self.connect()
        tag, initial = self.start_watch(rep.position)
        self.assertEqual(initial.kinds(), ["STATUS", "POSITION"])

        self.append("INBOX", "m2", c=other)
        batch = self.read_batch()
        self.assertEqual([uidset(t[2]) for t in batch.of("APPENDED", guid)], [[2]])
        self.assertEqual(batch.status("INBOX")["UIDNEXT"], 3)

        self.ok("SELECT INBOX", c=other)
        self.ok("UID STORE 1 +FLAGS (\\Flagged)", c=other)
        batch2 = self.read_batch()
        (t,) = batch2.of("FLAGS", guid)
        self.assertEqual((uidset(t[2]), t[6], t[8]), ([1], ["\\Flagged"], []))

        self.ok("CREATE Later", c=other)
        batch3 = self.read_batch()
        self.assertEqual([e[0] for e in batch3.mailbox_events()], ["CREATED"])
        self.stop_watch(tag)

        # the last POSITION pushed is a complete position
        again = self.changes(batch3.position)
        self.assertEqual(sorted(again.kinds()), ["POSITION", "STATUS", "STATUS"])

    def test_watch_sees_doveadm(self):
        rep = self.position()
        tag, _ = self.start_watch(rep.position)
        self.doveadm("save", "-u", self.user, "-m", "INBOX", input=message("dv"))
        batch = self.read_batch()
        self.assertEqual(len(batch.of("APPENDED")), 1)
        self.stop_watch(tag)

    def test_done_only(self):
        rep = self.position()
        tag, _ = self.start_watch(rep.position)
        self.c.send("NOT-DONE\r\n")
        status, _, _ = self.c.collect(tag)
        self.assertEqual(status, "BAD")
        self.ok("NOOP")


class TestExpired(PluginTestCase):
    # rotate the transaction log on every write: history is two files long
    extra_conf = """
mail_index_log_rotate_min_size = 1
mail_index_log_rotate_max_size = 1
mail_index_log_rotate_min_age = 0
mail_index_log2_max_age = 0
"""

    def test_rotated_log_gives_resync_for_that_mailbox_only(self):
        self.ok("CREATE Quiet")
        self.append("INBOX", "m1")
        self.append("Quiet", "q1")
        rep = self.position()
        inbox, quiet = self.guid(rep, "INBOX"), self.guid(rep, "Quiet")
        self.ok("SELECT INBOX")
        for i in range(6):
            self.ok("UID STORE 1 %sFLAGS (\\Seen)" % ("+" if i % 2 == 0 else "-"))
            self.append("INBOX", "more%d" % i)
        self.ok("UNSELECT")
        ch = self.changes(rep.position)
        self.assertEqual([t[2] for t in ch.of("RESYNC", inbox)], ["EXPIRED"])
        self.assertEqual(ch.of("RESYNC", quiet), [])
        self.assertEqual(ch.of("APPENDED", inbox), [])
        # the new position is servable again
        self.append("INBOX", "after")
        ch2 = self.changes(ch.position)
        self.assertEqual(ch2.of("RESYNC"), [])
        self.assertEqual(len(ch2.of("APPENDED", inbox)), 1)

class TestLostLog(PluginTestCase):
    """Log files deleted: Dovecot rebuilds the index and restarts modseqs."""

    def test_deleted_log_files(self):
        self.append("INBOX", "m1")
        rep = self.position()
        inbox = self.guid(rep, "INBOX")
        self.c.close()
        self.clients.remove(self.c)
        # detection compares log creation times with the position's, in whole
        # seconds: let the rebuilt log be born in a later second
        time.sleep(1.1)
        self.doveadm("save", "-u", self.user, "-m", "INBOX", input=message("m2"))
        # a change that lives only in the log about to be lost
        self.doveadm("flags", "add", "-u", self.user, "\\Flagged", "mailbox", "INBOX",
                     "uid", "1")
        for f in glob.glob(os.path.join(self.dovecot.mail_dir(self.user),
                                        "dovecot.index.log*")):
            os.unlink(f)
        self.doveadm("save", "-u", self.user, "-m", "INBOX", input=message("m3"))
        self.c = self.connect()
        ch = self.changes(rep.position)
        self.assertEqual([t[2] for t in ch.of("RESYNC", inbox)], ["EXPIRED"])


class TestFuzz(PluginTestCase):
    SEED = 20261123
    COUNT = 400

    def random_args(self, rng, token):
        atoms = ["POSITION", "CHANGES", "WATCH", "position", "CHANGE", "", "NIL", "0",
                 token, token[:-1], token + "=", token.upper(), "(", ")", "()", '"x"',
                 '"' + token + '"', "{3}", "\\Seen", "*", "1:*", "\x01", "é", "%", "[", "]"]
        n = rng.randint(0, 4)
        parts = [rng.choice(atoms) for _ in range(n)]
        if rng.random() < 0.3:
            # a token damaged in one place or cut short: the decoder's bounds checks
            b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
            # not the last character: its low bits may be unused padding, so a change
            # there can leave the decoded token valid (WATCH would then just wait)
            i = rng.randrange(len(token) - 1)
            bad = token[:i] + rng.choice(b64) + token[i + 1:]
            parts = [rng.choice(["CHANGES", "WATCH"]), rng.choice([bad, token[:i]])]
        if rng.random() < 0.3:
            raw = bytes(rng.randrange(0x20, 0x7f) for _ in range(rng.randint(1, 60)))
            parts.append(raw.decode())
        line = " ".join(parts)
        return line.replace("\r", "").replace("\n", "")

    def test_malformed_arguments(self):
        self.append("INBOX", "m1")
        token = self.position().position
        rng = random.Random(self.SEED)
        sent = 0
        while sent < self.COUNT:
            args = self.random_args(rng, token)
            if args.strip().upper().startswith(("POSITION", "CHANGES " + token.upper())) and \
                    args.strip().upper() in ("POSITION", "CHANGES " + token.upper()):
                continue  # a valid command by chance
            if "{" in args:
                args = args.replace("{", "[")  # literals would wait for data
            if args.upper().startswith("WATCH " + token.upper()) and \
                    len(args.split()) == 2:
                continue
            status, text, _ = self.c.command(("XREPLICATE " + args).rstrip())
            self.assertIn(status, ("BAD", "NO"), "XREPLICATE %r -> %s %s" % (args, status, text))
            sent += 1
            if sent % 10 == 0:
                # Dovecot disconnects after 20 BADs in a row, by design
                self.ok("NOOP")
        self.ok("NOOP")
        self.assertEqual(self.ok("XREPLICATE CHANGES " + token)[-1][:22],
                         b"* XREPLICATE POSITION ")


if __name__ == "__main__":
    unittest.main()
