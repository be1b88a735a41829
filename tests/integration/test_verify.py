"""twinbox verify: differences made behind twinbox's back (a message file deleted straight
from a Maildir, a flag changed with doveadm) that the state then hides (its numbers set to
the server's, as a rolled-back or restored state would); verify reports them exactly and
writes nothing, --repair fixes them, a second verify finds none."""
import glob
import os
import sqlite3

from tests.fixture import imapcheck as ic
from tests.integration.common import twinbox
from tests.integration.test_sync import SyncBase


class VerifyTest(SyncBase):
    def hide_from_state(self, dv, side, mailbox):
        """The state takes the server's current numbers for that mailbox: sync sees nothing."""
        c = dv.client("alice")
        typ, data = c.status(ic.quote(mailbox), "(UIDNEXT HIGHESTMODSEQ)")
        c.logout()
        words = data[0].decode().split("(")[1].rstrip(")").split()
        v = dict(zip(words[0::2], words[1::2]))
        db = sqlite3.connect(self.state)
        db.execute(f"UPDATE mailbox SET uidnext_{side} = ?, hms_{side} = ? WHERE name = ?",
                   (int(v["UIDNEXT"]), int(v["HIGHESTMODSEQ"]), mailbox))
        db.commit()
        db.close()

    def test_report_repair_and_clean(self):
        ic.load_messages(self.a, "alice", "INBOX", 5, seed=1)
        ic.load_messages(self.a, "alice", "Work", 3, seed=2)
        self.sync()
        r = twinbox("-c", self.cfg, "verify", "p")
        self.assertEqual(r.code, 0, r)
        self.assertIn("identical", r.out)
        # A message file deleted straight from b's Maildir; a flag set on a with doveadm.
        files = sorted(glob.glob(os.path.join(self.b.mail_dir("alice"), "cur", "*")) +
                       glob.glob(os.path.join(self.b.mail_dir("alice"), "new", "*")))
        os.remove(files[0])
        self.b.doveadm("force-resync", "-u", "alice", "INBOX", check=True)
        self.a.doveadm("flags", "add", "-u", "alice", "\\Flagged", "mailbox", "Work", "uid", "2",
                       check=True)
        c = self.a.client("alice")
        self.assertIn(("\\Flagged",), [m["flags"] for m in ic.fetch_all(c, "Work")])
        c.logout()
        self.hide_from_state(self.b, "b", "INBOX")
        self.hide_from_state(self.a, "a", "Work")
        self.assertIn("copied a->b 0, b->a 0, flag updates 0", self.sync().out,
                      "the state hides both changes")
        before = self.snap(self.a), self.snap(self.b)
        r = twinbox("-c", self.cfg, "verify", "p")
        self.assertEqual(r.code, 7, r)
        self.assertIn("missing on a 0, on b 1; flag differences 1;", r.out)
        self.assertRegex(r.out, r"p: INBOX: <[^>]+> \(UID \d+\) only on a")
        self.assertRegex(r.out, r"p: Work: <[^>]+> \(UID 2\): flags \(\\Flagged\) on a, \(\) on b")
        self.assertEqual((self.snap(self.a), self.snap(self.b)), before, "verify wrote nothing")
        r = twinbox("-c", self.cfg, "verify", "p", "--repair")
        self.assertEqual(r.code, 0, r)
        self.assertIn("identical", r.out.strip().splitlines()[-1])
        self.assertSame()
        r = twinbox("-c", self.cfg, "verify", "p")
        self.assertEqual(r.code, 0, r)
        self.assertIn("copied a->b 0, b->a 0, flag updates 0", self.sync().out)

    def test_duplicates_and_mailbox_on_one_side(self):
        ic.load_messages(self.a, "alice", "INBOX", 3, seed=1)
        self.sync()
        ic.load_messages(self.b, "alice", "INBOX", 1, seed=1)  # the same message again
        c = self.b.client("alice")
        c.create("Lonely")
        c.logout()
        self.hide_from_state(self.b, "b", "INBOX")
        r = twinbox("-c", self.cfg, "verify", "p")
        self.assertEqual(r.code, 7, r)
        self.assertIn("duplicates a 0, b 1", r.out)
        self.assertIn("p: Lonely: mailbox only on b", r.out)
