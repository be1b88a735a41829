"""Replica mode, server side: XREPLICATE CREATE, RESET, RAISE and UIDS
(man/twinbox-xreplicate.7). Every effect is checked with imaplib from a
second connection, and every test ends with a NOOP on the connection that
sent the commands: the imap process must survive all of them."""
import re
import unittest

from tests.plugin.common import PluginTestCase, message

GUID_A = "0123456789abcdef0123456789abcdef"
GUID_B = "fedcba9876543210fedcba9876543210"


def imap_status(conn, box, items):
    typ, data = conn.status(box, "(%s)" % items)
    assert typ == "OK", (typ, data)
    text = data[0].decode()
    return dict((k, v) for k, v in re.findall(r"([A-Z-]+) ([0-9a-fA-F]+)", text.split("(", 1)[1]))


class TestReplicaCommands(PluginTestCase):

    def setUp(self):
        super().setUp()
        self.imap = self.dovecot.client(self.user)
        self.addCleanup(lambda: self.imap.logout())

    def tearDown(self):
        status, text, _ = self.c.command("NOOP")
        self.assertEqual(status, "OK", "server did not survive: " + text)
        super().tearDown()

    def cmd(self, line, literal=None):
        status, text, _ = self.c.command(line, literal=literal)
        return status, text

    def expect(self, line, status, code=None):
        st, text = self.cmd(line)
        self.assertEqual(st, status, "%s -> %s %s" % (line, st, text))
        if code is not None:
            self.assertTrue(text.startswith("[%s" % code), "%s -> %s" % (line, text))
        return text

    def status(self, box, items="UIDVALIDITY UIDNEXT HIGHESTMODSEQ X-GUID MESSAGES"):
        self.imap.noop()
        return imap_status(self.imap, box, items)

    def uids(self, box):
        self.imap.select(box, readonly=True)
        typ, data = self.imap.uid("SEARCH", "ALL")
        self.imap.close()
        return [int(x) for x in data[0].split()]

    def test_capability(self):
        _, _, untagged = self.c.command("CAPABILITY")
        caps = b" ".join(untagged).split()
        self.assertIn(b"X-REPLICATE", caps)
        self.assertIn(b"X-REPLICATE-REPLICA", caps)

    # ---- CREATE ---------------------------------------------------------------
    def test_create(self):
        self.expect("XREPLICATE CREATE Box 12345 %s" % GUID_A.upper(), "OK")
        st = self.status("Box")
        self.assertEqual(st["UIDVALIDITY"], "12345")
        self.assertEqual(st["X-GUID"], GUID_A)
        self.expect('XREPLICATE CREATE "Sub.Deeper &AOQ-" 4294967295 %s' % GUID_B, "OK")
        st = self.status('"Sub.Deeper &AOQ-"')
        self.assertEqual((st["UIDVALIDITY"], st["X-GUID"]), ("4294967295", GUID_B))

    def test_create_exists(self):
        self.ok("CREATE Box")
        self.expect("XREPLICATE CREATE Box 7 %s" % GUID_A, "NO", "ALREADYEXISTS")
        self.expect("XREPLICATE CREATE INBOX 7 %s" % GUID_A, "NO", "ALREADYEXISTS")

    def test_create_guid_in_use(self):
        self.expect("XREPLICATE CREATE Box 7 %s" % GUID_A, "OK")
        self.expect("XREPLICATE CREATE Other 8 %s" % GUID_A, "NO", "XREPLICATE-GUIDINUSE")
        self.assertNotIn("Other", self.list_names())
        # a rename keeps the GUID, and the check follows it
        self.ok("RENAME Box Renamed")
        self.expect("XREPLICATE CREATE Box 9 %s" % GUID_A, "NO", "XREPLICATE-GUIDINUSE")
        # once the holder is gone, the GUID is free again
        self.ok("DELETE Renamed")
        self.expect("XREPLICATE CREATE Box 9 %s" % GUID_A, "OK")

    def list_names(self):
        typ, data = self.imap.list()
        return [l.decode().rsplit(" ", 1)[1].strip('"') for l in data]

    # ---- RESET ----------------------------------------------------------------
    def test_reset_empty(self):
        self.ok("CREATE Box")
        self.append("Box", "m1")
        self.ok("SELECT Box")
        self.ok("STORE 1 +FLAGS (\\Deleted)")
        self.ok("EXPUNGE")
        self.ok("UNSELECT")
        before = self.status("Box")
        self.expect("XREPLICATE RESET Box 777 %s" % GUID_A, "OK")
        st = self.status("Box")
        self.assertEqual((st["UIDVALIDITY"], st["X-GUID"]), ("777", GUID_A))
        self.assertNotEqual(before["X-GUID"], GUID_A)
        # the same again is fine (its own GUID is not "another mailbox")
        self.expect("XREPLICATE RESET Box 777 %s" % GUID_A, "OK")

    def test_reset_not_empty(self):
        self.ok("CREATE Box")
        self.append("Box", "m1")
        self.expect("XREPLICATE RESET Box 777 %s" % GUID_A, "NO", "XREPLICATE-NOTEMPTY")
        self.assertNotEqual(self.status("Box")["UIDVALIDITY"], "777")

    def test_reset_missing_and_in_use(self):
        self.expect("XREPLICATE RESET Nope 777 %s" % GUID_A, "NO", "NONEXISTENT")
        self.expect("XREPLICATE CREATE Box 7 %s" % GUID_A, "OK")
        self.ok("CREATE Other")
        self.expect("XREPLICATE RESET Other 8 %s" % GUID_A, "NO", "XREPLICATE-GUIDINUSE")
        self.ok("SELECT Other")
        self.expect("XREPLICATE RESET Other 8 %s" % GUID_B, "NO", "INUSE")

    def test_reset_inbox(self):
        self.expect("XREPLICATE RESET INBOX 4242 %s" % GUID_B, "OK")
        st = self.status("INBOX")
        self.assertEqual((st["UIDVALIDITY"], st["X-GUID"]), ("4242", GUID_B))
        # it persists across reconnects, and INBOX works as before
        self.imap.logout()
        self.imap = self.dovecot.client(self.user)
        self.append("INBOX", "after-reset")
        st = self.status("INBOX")
        self.assertEqual((st["UIDVALIDITY"], st["X-GUID"], st["MESSAGES"]),
                         ("4242", GUID_B, "1"))
        self.expect("XREPLICATE RESET INBOX 4243 %s" % GUID_B, "NO", "XREPLICATE-NOTEMPTY")

    def test_reset_keeps_uidnext(self):
        """Dovecot keeps UIDNEXT across a UIDVALIDITY change (maildir's uidlist
        is never lowered): a client placing UIDs after RESET must know."""
        self.ok("CREATE Box")
        for i in range(3):
            self.append("Box", "m%d" % i)
        self.ok("SELECT Box")
        self.ok("STORE 1:* +FLAGS (\\Deleted)")
        self.ok("EXPUNGE")
        self.ok("UNSELECT")
        self.expect("XREPLICATE RESET Box 99 %s" % GUID_A, "OK")
        st = self.status("Box")
        self.assertEqual(st["UIDVALIDITY"], "99")
        self.assertEqual(st["UIDNEXT"], "4")

    # ---- RAISE ----------------------------------------------------------------
    def test_raise(self):
        self.ok("CREATE Box")
        self.append("Box", "m1")
        v = self.status("Box")["UIDVALIDITY"]
        text = self.expect("XREPLICATE RAISE Box 500 90000", "OK", "XREPLICATE-RAISED")
        self.assertTrue(text.startswith("[XREPLICATE-RAISED %s 500 90000]" % v), text)
        st = self.status("Box")
        self.assertEqual((st["UIDNEXT"], st["HIGHESTMODSEQ"]), ("500", "90000"))
        # never lowered; 0 leaves a value alone
        text = self.expect("XREPLICATE RAISE Box 10 0", "OK", "XREPLICATE-RAISED")
        self.assertTrue(text.startswith("[XREPLICATE-RAISED %s 500 90000]" % v), text)
        text = self.expect("XREPLICATE RAISE Box 0 95000", "OK", "XREPLICATE-RAISED")
        self.assertTrue(text.startswith("[XREPLICATE-RAISED %s 500 95000]" % v), text)
        # a later change gets a MODSEQ above the raised value
        self.imap.select("Box")
        typ, data = self.imap.uid("STORE", "1", "+FLAGS", "(\\Flagged)")
        self.assertEqual(typ, "OK")
        typ, data = self.imap.uid("FETCH", "1", "(MODSEQ)")
        modseq = int(re.search(rb"MODSEQ \((\d+)\)", data[0]).group(1))
        self.assertGreater(modseq, 95000)
        self.imap.close()
        # a new message gets a UID at the raised UIDNEXT
        untagged = self.append("Box", "m2")
        st = self.status("Box")
        self.assertEqual(st["UIDNEXT"], "501")
        self.assertGreater(int(st["HIGHESTMODSEQ"]), modseq)

    def test_raise_missing(self):
        self.expect("XREPLICATE RAISE Nope 5 5", "NO", "NONEXISTENT")

    # ---- UIDS -----------------------------------------------------------------
    def appenduid(self, text):
        m = re.match(r"\[APPENDUID (\d+) ([0-9:,]+)\]", text)
        self.assertIsNotNone(m, text)
        return m.group(2)

    def test_uids_single_append(self):
        self.ok("CREATE Box")
        self.expect("XREPLICATE UIDS Box 10,20:21", "OK")
        for uid in (10, 20, 21):
            st, text = self.cmd("APPEND Box ()", literal=message("m%d" % uid))
            self.assertEqual(st, "OK", text)
            self.assertEqual(self.appenduid(text), str(uid))
        # the list is used up: ordinary APPENDs follow UIDNEXT again
        st, text = self.cmd("APPEND Box ()", literal=message("plain"))
        self.assertEqual(self.appenduid(text), "22")
        self.assertEqual(self.uids("Box"), [10, 20, 21, 22])

    def multiappend(self, box, subjects, literal_plus=True):
        """One MULTIAPPEND with LITERAL+ (or synchronizing literals)."""
        tag = self.c.next_tag()
        msgs = [message(s) for s in subjects]
        plus = "+" if literal_plus else ""
        self.c.send("%s APPEND %s" % (tag, box))
        for m in msgs:
            self.c.send(" () {%d%s}\r\n" % (len(m), plus))
            if not literal_plus:
                self.assertTrue(self.c.read_response().startswith(b"+"))
            self.c.send(m)
        self.c.send("\r\n")
        status, text, _ = self.c.collect(tag)
        return status, text

    def test_uids_multiappend(self):
        self.ok("CREATE Box")
        self.expect("XREPLICATE UIDS Box 3:4,100", "OK")
        st, text = self.multiappend("Box", ["a", "b", "c", "d"])
        self.assertEqual(st, "OK", text)
        self.assertEqual(self.appenduid(text), "3:4,100:101")
        self.assertEqual(self.uids("Box"), [3, 4, 100, 101])
        # synchronizing literals as well
        self.expect("XREPLICATE UIDS Box 200:201", "OK")
        st, text = self.multiappend("Box", ["e", "f"], literal_plus=False)
        self.assertEqual(self.appenduid(text), "200:201")

    def test_uids_large_message(self):
        self.ok("CREATE Box")
        self.expect("XREPLICATE UIDS Box 77", "OK")
        big = message("big", "x" * 76 + "\r\n") * 1
        big = big + (b"y" * 998 + b"\r\n") * 20000   # ~20 MB
        st, text = self.cmd("APPEND Box ()", literal=big)
        self.assertEqual(st, "OK", text)
        self.assertEqual(self.appenduid(text), "77")

    def test_uid_below_uidnext(self):
        self.ok("CREATE Box")
        for i in range(3):
            self.append("Box", "m%d" % i)
        self.expect("XREPLICATE UIDS Box 2,50", "OK")
        st, text = self.cmd("APPEND Box ()", literal=message("x"))
        self.assertEqual(st, "NO", text)
        self.assertIn("XREPLICATE: UID 2 is below UIDNEXT 4", text)
        self.assertEqual(self.uids("Box"), [1, 2, 3])
        # a failed APPEND uses nothing up: the same UID fails again
        st, text = self.cmd("APPEND Box ()", literal=message("x"))
        self.assertEqual(st, "NO", text)
        # in a MULTIAPPEND, nothing of it is saved
        self.expect("XREPLICATE UIDS Box 10,3", "BAD")
        self.expect("XREPLICATE UIDS Box 10,11", "OK")
        self.ok("XREPLICATE RAISE Box 11 0")
        st, text = self.multiappend("Box", ["p", "q"])
        self.assertEqual(st, "NO", text)
        self.assertEqual(self.uids("Box"), [1, 2, 3])

    def test_uid_taken_before_commit(self):
        """A UID another session takes between save_begin and the commit:
        lib-index gives our message a new UID at commit (no crash, no
        assert); the APPENDUID shows it, and nothing is lost."""
        self.ok("CREATE Box")
        self.expect("XREPLICATE UIDS Box 1:2", "OK")
        tag = self.c.next_tag()
        m1, m2 = message("ours1"), message("ours2")
        self.c.send("%s APPEND Box () {%d}\r\n" % (tag, len(m1)))
        self.assertTrue(self.c.read_response().startswith(b"+"))
        self.c.send(m1 + b" () {%d}\r\n" % len(m2))
        # message 1 holds UID 1 in an open transaction; another session
        # delivers now
        self.assertTrue(self.c.read_response().startswith(b"+"))
        other = self.connect()
        status, text, _ = other.command("APPEND Box ()", literal=message("theirs"))
        self.assertEqual(self.appenduid(text), "1")
        self.c.send(m2 + b"\r\n")
        status, text, _ = self.c.collect(tag)
        self.assertEqual(status, "OK", text)
        given = self.appenduid(text)
        self.assertNotIn("1", given.replace(":", ",").split(","))
        self.assertEqual(self.uids("Box"), [1, 2, 3])
        with open(self.dovecot.log_file, errors="replace") as f:
            self.assertIn("UID 1 was taken by another process", f.read())

    def test_uids_replaced_and_cleared(self):
        self.ok("CREATE Box")
        self.ok("CREATE Other")
        self.expect("XREPLICATE UIDS Box 10:12", "OK")
        st, text = self.cmd("APPEND Box ()", literal=message("a"))
        self.assertEqual(self.appenduid(text), "10")
        # replaced by a list for another mailbox: Box is back to normal
        self.expect("XREPLICATE UIDS Other 40", "OK")
        st, text = self.cmd("APPEND Box ()", literal=message("b"))
        self.assertEqual(self.appenduid(text), "11")
        st, text = self.cmd("APPEND Other ()", literal=message("c"))
        self.assertEqual(self.appenduid(text), "40")
        # replaced by a list for the same mailbox
        self.expect("XREPLICATE UIDS Box 20:30", "OK")
        self.expect("XREPLICATE UIDS Box 50", "OK")
        st, text = self.cmd("APPEND Box ()", literal=message("d"))
        self.assertEqual(self.appenduid(text), "50")
        # cleared
        self.expect("XREPLICATE UIDS Box 60:61", "OK")
        self.expect("XREPLICATE UIDS Box NIL", "OK")
        st, text = self.cmd("APPEND Box ()", literal=message("e"))
        self.assertEqual(self.appenduid(text), "51")
        # another session is never affected
        other = self.connect()
        self.expect("XREPLICATE UIDS Box 90", "OK")
        status, text, _ = other.command("APPEND Box ()", literal=message("f"))
        self.assertEqual(self.appenduid(text), "52")
        self.expect("XREPLICATE UIDS Nope 5", "NO", "NONEXISTENT")

    def test_copy_does_not_use_the_list(self):
        self.ok("CREATE Box")
        self.ok("CREATE Other")
        self.append("Box", "a")
        self.expect("XREPLICATE UIDS Other 30", "OK")
        self.ok("SELECT Box")
        self.ok("COPY 1 Other")
        st, text = self.cmd("APPEND Other ()", literal=message("b"))
        self.assertEqual(self.appenduid(text), "30")

    # ---- malformed arguments -------------------------------------------------
    def test_malformed(self):
        self.ok("CREATE Box")
        bad = [
            "XREPLICATE CREATE",
            "XREPLICATE CREATE Box",
            "XREPLICATE CREATE Box 5",
            "XREPLICATE CREATE Box 0 %s" % GUID_A,
            "XREPLICATE CREATE Box 4294967296 %s" % GUID_A,
            "XREPLICATE CREATE Box 99999999999999999999999 %s" % GUID_A,
            "XREPLICATE CREATE Box -1 %s" % GUID_A,
            "XREPLICATE CREATE Box 5 %s" % ("0" * 32),
            "XREPLICATE CREATE Box 5 %s" % GUID_A[:31],
            "XREPLICATE CREATE Box 5 %sa" % GUID_A,
            "XREPLICATE CREATE Box 5 %sg" % GUID_A[:31],
            "XREPLICATE CREATE Box 5 %s extra" % GUID_A,
            "XREPLICATE CREATE Box 5 \"%s\"" % GUID_A,
            "XREPLICATE RESET Box 5",
            "XREPLICATE RESET Box 5 xyz",
            "XREPLICATE RAISE Box",
            "XREPLICATE RAISE Box 5",
            "XREPLICATE RAISE Box 5 5 5",
            "XREPLICATE RAISE Box 4294967295 0",
            "XREPLICATE RAISE Box 0 9223372036854775808",
            "XREPLICATE RAISE Box 0 18446744073709551616",
            "XREPLICATE RAISE Box x 0",
            "XREPLICATE UIDS",
            "XREPLICATE UIDS Box",
            "XREPLICATE UIDS Box 1 2",
            "XREPLICATE UIDS Box 0",
            "XREPLICATE UIDS Box *",
            "XREPLICATE UIDS Box 1:*",
            "XREPLICATE UIDS Box 5:3",
            "XREPLICATE UIDS Box 3,3",
            "XREPLICATE UIDS Box 3:5,4",
            "XREPLICATE UIDS Box 1,,2",
            "XREPLICATE UIDS Box 1,",
            "XREPLICATE UIDS Box 4294967294",
            "XREPLICATE UIDS Box 4294967295",
            "XREPLICATE UIDS Box 1:10001",
            "XREPLICATE UIDS Box 1:5000,6000:11000",
            "XREPLICATE UIDS Box 1:4294967293",
            "XREPLICATE UIDS Box (1)",
            "XREPLICATE UIDS Box \"1\"",
        ]
        for line in bad:
            with self.subTest(line=line):
                self.expect(line, "BAD")
                # Dovecot disconnects after 20 BADs in a row
                self.expect("NOOP", "OK")
        # the limits themselves are fine
        self.expect("XREPLICATE UIDS Box 1:10000", "OK")
        self.expect("XREPLICATE UIDS Box 4294967293", "OK")
        self.expect("XREPLICATE RAISE Box 0 9223372036854775807", "OK")
        self.expect("XREPLICATE UIDS Box NIL", "OK")

    def test_hostile_names(self):
        self.expect("XREPLICATE CREATE \"&Jjo\" 5 %s" % GUID_A, "NO")
        self.expect("XREPLICATE RAISE \"\" 5 5", "NO")
        self.expect("XREPLICATE RESET \"no.such.parent\" 5 %s" % GUID_A, "NO", "NONEXISTENT")
        self.expect("XREPLICATE UIDS \"../etc\" 5", "NO")
        self.expect("XREPLICATE CREATE {3+}\r\nLit 5 %s" % GUID_A, "OK")
        self.assertEqual(self.status("Lit")["X-GUID"], GUID_A)


if __name__ == "__main__":
    unittest.main()
