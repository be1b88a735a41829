"""MULTIAPPEND (RFC 3502, issue 12): copies to a server that offers it go out in batches,
each message's new UID is read from the APPENDUID uid-set in order, a batch refused as a
whole is sent again one APPEND per message (so one refused message is isolated), and a
throttled batch is survived. Commands are counted through a capturing relay or the Evil
proxy; nothing here measures time."""
import os
import re
import tempfile

from tests.fixture import imapcheck as ic
from tests.fixture.evil import DEFAULT_REMOVED_CAPS, Evil
from tests.fixture.relay import Relay
from tests.integration.common import TestCase, twinbox
from tests.integration.test_migrate import MigrateBase, full_view
from tests.integration.test_replica import replica_view
from tests.integration.test_xreplicate import make_dovecot

APPEND_RE = re.compile(rb"(?:^|\n)T\d+ APPEND ")


class MultiappendTest(MigrateBase):
    def fill(self, n, poison=None):
        c = self.src.client()
        try:
            for i in range(n):
                msg, day = ic.make_message(i, size=600, seed=12)
                flags = ("\\Seen",) if i % 3 == 0 else ()
                if i == poison:
                    flags += ("poison",)
                ic.append(c, "INBOX", msg, flags=flags, date=day)
        finally:
            c.logout()

    def flag(self, indexes):
        """Sets \\Flagged on the source's messages of these 0-based positions (UID order)."""
        c = self.src.client()
        try:
            c.select("INBOX")
            for i in indexes:
                c.uid("STORE", str(i + 1), "+FLAGS", "(\\Flagged)")
        finally:
            c.logout()

    def test_batches_map_every_uid_in_order(self):
        self.fill(300)
        relay = Relay(self.dst.dv.imap_port, capture="c2s")
        self.addCleanup(relay.stop)
        dst = f"imap://alice@127.0.0.1:{relay.port}/?starttls=no&compress=no"
        r = twinbox("migrate", self.url(self.src), dst, env=self.env, timeout=600)
        self.assertEqual(r.code, 0, r)
        self.assertIn("migrate: copied 300,", r.out)
        sent = b"".join(relay.captured("c2s"))
        appends = len(APPEND_RE.findall(sent))
        self.assertGreater(appends, 0)
        self.assertLessEqual(appends, 300 // 4, f"{appends} APPEND commands for 300 messages")
        self.assertCopied()
        # The state pairs each source UID with the right copy: flag changes on either side
        # of batch boundaries land on the same messages.
        self.flag([0, 1, 127, 128, 129, 200, 299])
        r = twinbox("migrate", self.url(self.src), dst, env=self.env, timeout=600)
        self.assertEqual(r.code, 0, r)
        self.assertIn("migrate: copied 0,", r.out)
        self.assertCopied()

    def test_refused_batch_is_sent_again_one_by_one(self):
        self.fill(80, poison=41)
        ev = Evil(self.dst.dv)
        self.addCleanup(ev.stop)
        refuse = ev.on(r"APPEND .*\bpoison\b", reply="NO [LIMIT] this one is refused", times=None)
        dst = self.url(ev)
        r = twinbox("migrate", self.url(self.src), dst, env=self.env, timeout=600)
        self.assertEqual(r.code, 7, r)
        self.assertIn("copied 79,", r.out)
        self.assertIn("APPEND refused", r.err)
        appends = [c for c in ev.commands if c.name == "APPEND"]
        self.assertGreater(max(len(c.literal_sizes) for c in appends), 1, "batched")
        # The refusal named one message only: the last command it refused held just that one.
        self.assertEqual(len(refuse.commands[-1].literal_sizes), 1)
        sv, _ = full_view(self.src)
        dv, _ = full_view(self.dst)
        want = [m for m in sv["INBOX"] if "poison" not in m[1]]
        self.assertEqual(len(want), 79)
        self.assertEqual(dv["INBOX"], want)
        # Rerun: the refused one is recorded as skipped, nothing is copied twice.
        r = twinbox("migrate", self.url(self.src), dst, env=self.env, timeout=600)
        dv2, _ = full_view(self.dst)
        self.assertEqual(dv2["INBOX"], want)

    def src_selects(self, ev):
        """The mailboxes the source's EXAMINE/SELECT commands named, in order."""
        return [m.group(1) for m in (re.match(r'(?:EXAMINE|SELECT) "?([^" ]+)', c.text)
                                     for c in ev.commands) if m]

    def poisoned_source(self):
        """INBOX with 80 messages, the 42nd flagged `poison`, and Other with 60, of which the
        destination refuses (through the returned Evil) every batch holding the poisoned one,
        its answer held 1.5 s: by then the source has moved on to the other mailbox."""
        self.fill(80, poison=41)
        self.append(self.src, "Other", 60, 7, size=600)
        ev = Evil(self.dst.dv)
        self.addCleanup(ev.stop)
        ev.on(r"APPEND .*\bpoison\b", reply="NO [LIMIT] this one is refused", times=None)
        ev.on(r"APPEND .*\bpoison\b", reply="NO [LIMIT] this one is refused", times=1,
              delay=1.5)  # newest first: the first refusal is the late one
        src = Evil(self.src.dv)
        self.addCleanup(src.stop)
        return src, ev

    def test_refused_batch_is_fetched_again_after_the_source_moved_on(self):
        """A body is freed once its APPEND is written, so a refused batch's messages are
        fetched again: from their own mailbox, selected again on the source after the
        other one, not from whatever the source has selected by then."""
        src, ev = self.poisoned_source()
        r = twinbox("migrate", self.url(src), self.url(ev), env=self.env, timeout=600)
        self.assertEqual(r.code, 7, r)
        self.assertIn("copied 139,", r.out)
        self.assertEqual(r.err.count("APPEND refused"), 1, r.err)
        selects = self.src_selects(src)
        self.assertIn("Other", selects)
        self.assertIn("INBOX", selects[selects.index("Other"):], selects)
        sv, _ = full_view(self.src)
        dv, _ = full_view(self.dst)
        self.assertEqual(dv["Other"], sv["Other"])
        self.assertEqual(dv["INBOX"], [m for m in sv["INBOX"] if "poison" not in m[1]])

    def test_refused_batch_is_not_fetched_again_from_a_changed_mailbox(self):
        """The source's mailbox answers the selection before the retry with another
        UIDVALIDITY: its UIDs may name other messages now, so the refused batch's messages
        are skipped for this run (never fetched from there), and the next run copies them."""
        src, ev = self.poisoned_source()
        after = []

        def renumber(lines):
            after.append(len(src.commands))
            return [re.sub(rb"UIDVALIDITY \d+", b"UIDVALIDITY 7", ln) for ln in lines]
        # INBOX is examined to be read, to be copied, then (the third time) for the retry,
        # with nothing else in flight (a transform holds a pipelined command's answer back).
        src.on(r'EXAMINE "?INBOX', nth=3, times=1, transform=renumber)
        r = twinbox("migrate", self.url(src), self.url(ev), env=self.env, timeout=600)
        self.assertNotEqual(r.code, 0, r)
        self.assertEqual(len(after), 1, "the retry's selection was not seen")
        self.assertEqual(self.src_selects(src)[:5], ["INBOX", "Other"] * 2 + ["INBOX"], r)
        self.assertIn("changed before a retry one by one", r.err)
        dv, _ = full_view(self.dst)
        self.assertEqual(len(dv["Other"]), 60)
        self.assertLess(len(dv["INBOX"]), 79)
        self.assertEqual([c.text for c in src.commands[after[0]:]
                          if c.name == "UID FETCH" and "BODY" in c.text], [])
        # Next run, the same path without the change: everything but the poisoned one, once.
        r = twinbox("migrate", self.url(src), self.url(ev), env=self.env, timeout=600)
        self.assertEqual(r.code, 7, r)
        sv, _ = full_view(self.src)
        dv, _ = full_view(self.dst)
        self.assertEqual(dv["Other"], sv["Other"])
        self.assertEqual(dv["INBOX"], [m for m in sv["INBOX"] if "poison" not in m[1]])

    def test_server_refusing_every_batch(self):
        """A server that offers MULTIAPPEND but refuses any APPEND of more than one message
        (a limit per command): after a few refused batches the copy sends one message per
        APPEND, and every message arrives once."""
        self.fill(2600)
        ev = Evil(self.dst.dv)
        self.addCleanup(ev.stop)
        refuse = ev.on(r"APPEND .*\{\d+\+?\}.*\{\d+\+?\}", reply="NO [LIMIT] one at a time",
                       times=None)
        dst = self.url(ev)
        r = twinbox("migrate", self.url(self.src), dst, env=self.env, timeout=600)
        self.assertEqual(r.code, 0, r)
        self.assertIn("migrate: copied 2600,", r.out)
        self.assertGreater(refuse.matched, 0)
        # Three refused, plus those on their way when the third was answered (1,024 jobs in
        # flight at most: 8 batches of 128), of the 21 batches it would have taken.
        self.assertLessEqual(refuse.matched, 3 + 8, refuse.matched)
        self.assertCopied()

    def test_window_full_of_refused_batches(self):
        """Every batch refused late (2 s after it is sent): the window fills with batches
        waiting for their answer and nothing else is in flight when the last refusal
        arrives. The copy must go on from there (it once waited forever, no command
        pending, so no timeout either)."""
        self.fill(1400)
        ev = Evil(self.dst.dv)
        self.addCleanup(ev.stop)
        refuse = ev.on(r"APPEND .*\{\d+\+?\}.*\{\d+\+?\}", reply="NO [LIMIT] one at a time",
                       delay=2, times=None)
        dst = self.url(ev)
        r = twinbox("migrate", self.url(self.src), dst, env=self.env, timeout=300)
        self.assertEqual(r.code, 0, r)
        self.assertIn("migrate: copied 1400,", r.out)
        self.assertGreaterEqual(refuse.matched, 8, refuse.matched)
        self.assertCopied()

    def test_throttled_batch_is_survived(self):
        self.fill(200)
        ev = Evil(self.dst.dv)
        self.addCleanup(ev.stop)
        ev.on(r"APPEND ", nth=2, times=1,
              reply="NO [THROTTLED] Suggested Backoff Time: 40 milliseconds")
        dst = self.url(ev)
        # The pause before resuming: 0.25-0.5 s (the default is 1-2 s). A batch sent after
        # the refused one may still be committed by the server after the connection is gone;
        # at 20-40 ms the next attempt raced with it (test_late_commit_... below).
        r = twinbox("migrate", self.url(self.src), dst,
                    env=dict(self.env, TWINBOX_TEST_RETRY_SCALE="250"), timeout=600)
        self.assertEqual(r.code, 0, r)
        self.assertRegex(r.out, r"1 temporary failure survived", r.err)
        self.assertCopied()

    def test_late_commit_of_an_orphaned_batch_is_expunged_by_the_next_run(self):
        """A batch in flight when the connection failed may still be committed by the
        server later, after the next run has copied those messages again. The intents of the
        interrupted run outlive that run: the run after it finds the late copies by identity
        and expunges them. The late commit is played here by appending the swallowed batch
        by hand, after the second run."""
        self.fill(200)
        ev = Evil(self.dst.dv)
        self.addCleanup(ev.stop)
        # The refusal comes late, so the batch after it is surely sent (and swallowed).
        ev.on(r"APPEND ", nth=2, times=1, delay=2.0, reply="NO [THROTTLED] slow down")
        # Swallowed: never forwarded, its answer held past the end of the run.
        hung = ev.on(r"APPEND ", nth=3, times=1, delay=600, reply="OK never sent")
        dst = self.url(ev)
        r = twinbox("migrate", self.url(self.src), dst, "--retries", "0", env=self.env,
                    timeout=600)
        self.assertNotEqual(r.code, 0, r)
        self.assertEqual(hung.fired, 1, "no batch was in flight behind the refused one")
        swallowed = hung.commands[0]
        lits = swallowed.literals
        self.assertGreater(len(lits), 0)
        r = twinbox("migrate", self.url(self.src), dst, env=self.env, timeout=600)
        self.assertEqual(r.code, 0, r)
        self.assertCopied()
        # The server completes the swallowed APPEND now: same bytes, flags and dates.
        batch, flags, date = [], None, None
        for tok in swallowed.args()[2:]:
            if isinstance(tok, list):
                flags = tok
            elif tok is not None and re.match(r"^\d{1,2}-[A-Za-z]{3}-\d{4} ", tok):
                date = tok
            else:
                batch.append((flags or [], date, lits[len(batch)]))
                flags, date = None, None
        self.assertEqual(len(batch), len(lits))
        c = self.dst.client()
        try:
            for fl, day, body in batch:
                typ, data = c.append("INBOX", "(" + " ".join(fl) + ")",
                                     '"' + day + '"' if day else None, body)
                self.assertEqual(typ, "OK", data)
        finally:
            c.logout()
        # --force: late copies count against the mass-deletion guard like any expunge, and
        # the swallowed batch may hold 128 of the 328 messages (over 10% and over 100).
        r = twinbox("migrate", self.url(self.src), dst, "--force", env=self.env, timeout=600)
        self.assertEqual(r.code, 0, r)
        self.assertIn(f"{len(lits)} late copies of an interrupted run found and expunged",
                      r.err)
        self.assertCopied()

    def test_without_multiappend_one_message_per_append(self):
        self.fill(40)
        ev = Evil(self.dst.dv, remove_caps=DEFAULT_REMOVED_CAPS + ("MULTIAPPEND",))
        self.addCleanup(ev.stop)
        dst = self.url(ev)
        r = twinbox("migrate", self.url(self.src), dst, env=self.env, timeout=600)
        self.assertEqual(r.code, 0, r)
        appends = [c for c in ev.commands if c.name == "APPEND"]
        self.assertEqual(len(appends), 40)
        self.assertTrue(all(len(c.literal_sizes) == 1 for c in appends))
        self.assertCopied()

    def test_max_messages_per_second_sends_one_message_per_append(self):
        """The message rate counts APPEND commands: it keeps one message per command."""
        self.fill(12)
        ev = Evil(self.dst.dv)
        self.addCleanup(ev.stop)
        dst = self.url(ev)
        r = twinbox("migrate", self.url(self.src), dst, "--max-messages-per-second", "1000",
                    env=self.env, timeout=600)
        self.assertEqual(r.code, 0, r)
        appends = [c for c in ev.commands if c.name == "APPEND"]
        self.assertEqual(len(appends), 12)
        self.assertCopied()


class ReplicaBatchTest(TestCase):
    """Replica mode: a batch is pinned by one XREPLICATE UIDS uid-set right before its
    MULTIAPPEND, and both sides end with the same UIDs (gaps included)."""

    def setUp(self):
        self.a = make_dovecot(True, users={"alice": "secret"}).start()
        self.addCleanup(self.a.stop)
        self.b = make_dovecot(True, users={"alice": "secret"}).start()
        self.addCleanup(self.b.stop)
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        self.cfg = os.path.join(tmp.name, "config")
        with open(self.cfg, "w") as f:
            for name, dv in (("a", self.a), ("b", self.b)):
                f.write(f"[account {name}]\ntype = tunnel\n"
                        f"command = {dv.tunnel_command('alice')}\n\n")
            f.write(f"[pair p]\na = a\nb = b\nstate = {tmp.name}/p.db\nreplica = yes\n")
        os.chmod(self.cfg, 0o600)

    def test_batches_keep_uids_identical(self):
        c = self.a.client("alice")
        try:
            for i in range(300):
                msg, day = ic.make_message(i, size=500, seed=13)
                ic.append(c, "INBOX", msg, flags=("\\Seen",) if i % 2 else (), date=day)
            c.select("INBOX")
            for uid in ("5", "100:103", "250"):  # gaps: targets not contiguous
                c.uid("STORE", uid, "+FLAGS", "(\\Deleted)")
            c.expunge()
        finally:
            c.logout()
        r = twinbox("-v", "-c", self.cfg, "sync", timeout=600)
        self.assertEqual(r.code, 0, r)
        self.assertIn("copied a->b 294,", r.out)
        uids_cmds = re.findall(r"C: T\d+ XREPLICATE UIDS INBOX (\S+)", r.err)
        self.assertTrue(any("," in s or ":" in s for s in uids_cmds), uids_cmds[:5])
        appends = re.findall(r"C: T\d+ APPEND INBOX .*", r.err)
        self.assertTrue(any(a.count("bytes}") > 1 for a in appends), "batched")
        self.assertLess(len(appends), 294)
        va, _ = replica_view(self.a)
        vb, _ = replica_view(self.b)
        self.assertEqual(va["INBOX"], vb["INBOX"])
        self.assertEqual(len(va["INBOX"][2]), 294)
        r = twinbox("-c", self.cfg, "sync", timeout=600)
        self.assertIn("copied a->b 0, b->a 0", r.out)
