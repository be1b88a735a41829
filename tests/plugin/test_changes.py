"""XREPLICATE POSITION / CHANGES against a private Dovecot with the plugin."""
import os
import unittest

from tests.plugin.common import PluginTestCase, message
from tests.plugin.xrclient import uidset


class TestChanges(PluginTestCase):

    def test_capability(self):
        untagged = self.ok("CAPABILITY")
        caps = b" ".join(untagged).split()
        self.assertIn(b"X-REPLICATE", caps)

    def test_position_lists_every_mailbox(self):
        self.ok("CREATE Work")
        self.ok("SUBSCRIBE Work")
        self.append("INBOX", "m1")
        rep = self.position()
        work = rep.status("Work")
        self.assertEqual(work["UIDNEXT"], 1)
        self.assertTrue(work["subscribed"])
        inbox = rep.status("INBOX")
        self.assertEqual(inbox["UIDNEXT"], 2)
        self.assertEqual(len(inbox["guid"]), 32)
        self.assertEqual(rep.kinds(), ["STATUS", "STATUS", "POSITION"])

    def test_no_changes(self):
        self.append("INBOX", "m1")
        rep = self.position()
        again = self.changes(rep.position)
        self.assertEqual(again.kinds(), ["STATUS", "POSITION"])
        self.assertEqual(again.position, rep.position)

    def test_messages_and_flags(self):
        self.append("INBOX", "m1", "\\Flagged")
        self.append("INBOX", "m2")
        self.append("INBOX", "m3", "\\Seen")
        self.append("INBOX", "m4", "\\Seen \\Answered")
        rep = self.position()
        guid = self.guid(rep, "INBOX")

        self.ok("SELECT INBOX")
        self.ok("UID STORE 1 FLAGS (\\Seen)")              # replace
        self.ok("UID STORE 2 +FLAGS (\\Answered $Label1)")  # add + keyword
        self.ok("UID STORE 4 -FLAGS (\\Seen)")              # remove
        self.ok("UID STORE 3 +FLAGS (\\Deleted)")
        self.ok("EXPUNGE")
        self.append("INBOX", "m5", "\\Draft")

        ch = self.changes(rep.position)
        self.assertEqual([uidset(t[2]) for t in ch.of("EXPUNGED", guid)], [[3]])
        self.assertEqual([uidset(t[2]) for t in ch.of("APPENDED", guid)], [[5]])
        flags = {}
        for t in ch.of("FLAGS", guid):
            self.assertEqual(t[3], "MODSEQ")
            self.assertEqual((t[5], t[7]), ("ADD", "REMOVE"))
            for uid in uidset(t[2]):
                flags[uid] = (sorted(t[6]), sorted(t[8]), int(t[4]))
        self.assertEqual(sorted(flags), [1, 2, 4])
        self.assertEqual(flags[2][:2], (["$Label1", "\\Answered"], []))
        self.assertEqual(flags[4][:2], ([], ["\\Seen"]))
        # The FLAGS replace: \Seen added, \Flagged removed; the log alone would
        # also name \Answered \Deleted \Draft, which were never set.
        self.assertIn("\\Seen", flags[1][0])
        self.assertIn("\\Flagged", flags[1][1])
        if self.exact_flags():
            self.assertEqual(flags[1][:2], (["\\Seen"], ["\\Flagged"]))
        # MODSEQs are the messages' current ones, as FETCH MODSEQ reports them
        untagged = self.ok("UID FETCH 1:* (MODSEQ)")
        modseqs = {}
        for u in untagged:
            s = u.decode()
            if "UID " not in s:
                continue
            uid = int(s.split("UID ")[1].split()[0].rstrip(")"))
            modseqs[uid] = int(s.split("MODSEQ (")[1].split(")")[0])
        for uid, (_, _, m) in flags.items():
            self.assertEqual(m, modseqs[uid])
        st = ch.status("INBOX")
        self.assertEqual(st["UIDNEXT"], 6)
        self.assertEqual(st["HIGHESTMODSEQ"], max(modseqs.values()))
        # section order: EXPUNGED, FLAGS..., APPENDED, STATUS
        kinds = [k for k in ch.kinds() if k != "POSITION"]
        self.assertEqual(kinds[0], "EXPUNGED")
        self.assertEqual(kinds[-2:], ["APPENDED", "STATUS"])

        # the new position is exact: nothing more to report
        again = self.changes(ch.position)
        self.assertEqual(again.kinds(), ["STATUS", "POSITION"])

    def exact_flags(self):
        return "xreplicate" in self.dovecot.extra_mail_plugins

    def test_keyword_changes(self):
        self.append("INBOX", "m1", "$A $B")
        rep = self.position()
        guid = self.guid(rep, "INBOX")
        self.ok("SELECT INBOX")
        self.ok("UID STORE 1 FLAGS ($B $C)")
        ch = self.changes(rep.position)
        (t,) = ch.of("FLAGS", guid)
        # keyword removals are exact in the log; a replace re-adds $B, which
        # only the journal (xreplicate mail plugin) can tell apart
        self.assertEqual(t[8], ["$A"])
        if self.exact_flags():
            self.assertEqual(t[6], ["$C"])
        else:
            self.assertIn("$C", t[6])

    def test_rolled_back_changes_are_not_reported(self):
        self.append("INBOX", "m1")
        rep = self.position()
        inbox = self.guid(rep, "INBOX")
        # An APPEND whose connection dies inside its literal can never commit.
        other = self.connect()
        other.send("r1 APPEND INBOX {2000+}\r\n" + "x" * 700)
        other.close()
        # A MULTIAPPEND whose second message is refused (empty) saves neither (RFC 3502).
        msg = message("m2")
        self.c.send(b"r2 APPEND INBOX {%d+}\r\n" % len(msg) + msg + b" {0+}\r\n\r\n")
        status, text, _ = self.c.collect("r2")
        self.assertNotEqual(status, "OK", text)
        ch = self.changes(rep.position)
        self.assertEqual(ch.of("APPENDED"), [])
        self.assertEqual(ch.of("FLAGS"), [])
        # what is not reported did not happen: still the one message
        self.assertEqual(self.ok("UID SEARCH ALL", c=self.connect_selected()), [b"* SEARCH 1"])
        self.assertEqual(ch.status("INBOX")["guid"], inbox)

    def connect_selected(self):
        c = self.connect()
        self.ok("SELECT INBOX", c=c)
        return c

    def test_flag_set_and_cleared_leaves_it_clear(self):
        # The log cannot tell whether \Flagged was clear before the +FLAGS (Dovecot drops
        # no-op updates only against the writer's possibly stale view), so the net
        # change may be reported as a removal: base + ADD - REMOVE is what the message
        # has now, which is all a client merging from the position needs.
        self.append("INBOX", "m1")
        rep = self.position()
        self.ok("SELECT INBOX")
        self.ok("UID STORE 1 +FLAGS (\\Flagged)")
        self.ok("UID STORE 1 -FLAGS (\\Flagged)")
        ch = self.changes(rep.position)
        for t in ch.of("FLAGS"):
            self.assertEqual((uidset(t[2]), t[6]), ([1], []))
            self.assertEqual(t[8], ["\\Flagged"])

    def test_mailbox_events(self):
        self.ok("CREATE Old")
        self.ok("CREATE Doomed")
        self.ok("CREATE Plain")
        self.ok("SUBSCRIBE Plain")
        self.append("Old", "m1")
        rep = self.position()
        old_guid = self.guid(rep, "Old")
        doomed = self.guid(rep, "Doomed")
        plain = self.guid(rep, "Plain")

        self.ok("RENAME Old New")
        self.ok("DELETE Doomed")
        self.ok("CREATE Fresh")
        self.ok("SUBSCRIBE Fresh")
        self.ok("UNSUBSCRIBE Plain")
        self.append("Fresh", "f1")
        self.append("Fresh", "f2")

        ch = self.changes(rep.position)
        events = ch.mailbox_events()
        fresh = self.guid(ch, "Fresh")
        self.assertIn(("DELETED", doomed, ["Doomed"]), events)
        self.assertIn(("RENAMED", old_guid, ["Old", "New"]), events)
        self.assertIn(("CREATED", fresh, ["Fresh"]), events)
        self.assertIn(("SUBSCRIBED", fresh, ["Fresh"]), events)
        self.assertIn(("UNSUBSCRIBED", plain, ["Plain"]), events)
        self.assertEqual(len(events), 5)
        # DELETED comes first; all events precede the sections
        self.assertEqual(ch.lines[0][:3], ["MAILBOX", doomed, "DELETED"])
        first_section = min(i for i, t in enumerate(ch.lines) if t[0] != "MAILBOX")
        self.assertTrue(all(t[0] != "MAILBOX" for t in ch.lines[first_section:]))
        self.assertEqual([uidset(t[2]) for t in ch.of("APPENDED", fresh)], [[1, 2]])
        self.assertEqual(ch.status("New")["guid"], old_guid)
        self.assertEqual(ch.of("APPENDED", old_guid), [])
        self.assertIsNone(ch.status("Doomed"))

    def test_recreated_mailbox(self):
        self.ok("CREATE Box")
        self.append("Box", "m1")
        rep = self.position()
        old = self.guid(rep, "Box")
        self.ok("DELETE Box")
        self.ok("CREATE Box")
        ch = self.changes(rep.position)
        new = self.guid(ch, "Box")
        self.assertNotEqual(old, new)
        self.assertIn(("DELETED", old, ["Box"]), ch.mailbox_events())
        self.assertEqual([t[2] for t in ch.of("RESYNC", new)], ["RECREATED"])

    def test_international_names(self):
        self.ok('CREATE "&AMk-t&AOk-"')  # "Été" in modified UTF-7
        rep = self.position()
        self.assertIsNotNone(rep.status("&AMk-t&AOk-"))

    def test_doveadm_changes_are_seen(self):
        self.append("INBOX", "m1")
        rep = self.position()
        guid = self.guid(rep, "INBOX")
        self.doveadm("save", "-u", self.user, "-m", "INBOX", input=message("by-doveadm"))
        self.doveadm("flags", "add", "-u", self.user, "\\Flagged $Work",
                     "mailbox", "INBOX", "uid", "1")
        ch = self.changes(rep.position)
        self.assertEqual([uidset(t[2]) for t in ch.of("APPENDED", guid)], [[2]])
        (t,) = ch.of("FLAGS", guid)
        self.assertEqual((uidset(t[2]), sorted(t[6]), t[8]), ([1], ["$Work", "\\Flagged"], []))

    def test_uidvalidity_change(self):
        self.append("INBOX", "m1")
        rep = self.position()
        guid = self.guid(rep, "INBOX")
        st = rep.status("INBOX")
        self.doveadm("mailbox", "update", "-u", self.user, "--uid-validity",
                     str(st["UIDVALIDITY"] + 7), "INBOX")
        ch = self.changes(rep.position)
        self.assertEqual([t[2] for t in ch.of("RESYNC", guid)], ["UIDVALIDITY"])
        self.assertEqual(ch.status("INBOX")["UIDVALIDITY"], st["UIDVALIDITY"] + 7)

    def test_token_as_literal(self):
        rep = self.position()
        status, text, untagged = self.c.command("XREPLICATE CHANGES",
                                                literal=rep.position.encode())
        self.assertEqual(status, "OK", text)

    def test_bad_tokens(self):
        self.append("INBOX", "m1")
        rep = self.position()
        tok = rep.position
        flipped = tok[:10] + ("A" if tok[10] != "A" else "B") + tok[11:]
        for bad in [flipped, tok[:-3], "!!!", tok + "AAAA", '""']:
            status, text, _ = self.c.command("XREPLICATE CHANGES " + bad)
            self.assertEqual(status, "BAD", bad)
            if bad != '""':
                self.assertIn("[XREPLICATE-BADTOKEN]", text)
            self.ok("NOOP")
        # another user's token: well-formed, but not usable here
        from tests.plugin.xrclient import Client
        c2 = Client.connect(self.dovecot.imap_port, self.free_users.pop(0), "pw")
        self.clients.append(c2)
        status, text, _ = c2.command("XREPLICATE CHANGES " + tok)
        self.assertEqual(status, "NO")
        self.assertIn("[XREPLICATE-BADTOKEN]", text)

    def test_large_account(self):
        for i in range(120):
            self.ok("CREATE Folder%03d" % i)
        rep = self.position()
        self.assertEqual(len(rep.of("STATUS")), 121)  # and INBOX
        self.append("Folder077", "m1")
        ch = self.changes(rep.position)
        self.assertEqual(len(ch.of("APPENDED")), 1)


class TestTunnel(PluginTestCase):
    """The plugin in tunnel mode: /usr/lib/dovecot/imap run directly as the user."""

    def test_tunnel_preauth(self):
        from tests.plugin.xrclient import Client, Report
        t = Client.tunnel(self.dovecot.tunnel_command(self.user))
        self.clients.append(t)
        self.assertIn(b"PREAUTH", t.greeting)
        status, _, untagged = t.command("CAPABILITY")
        self.assertIn(b"X-REPLICATE", b" ".join(untagged))
        rep = Report(t.command("XREPLICATE POSITION")[2])
        self.append("INBOX", "m1")   # via the daemon, another process
        status, text, untagged = t.command("XREPLICATE CHANGES " + rep.position)
        self.assertEqual(status, "OK", text)
        self.assertEqual(len(Report(untagged).of("APPENDED")), 1)


if __name__ == "__main__":
    unittest.main()
