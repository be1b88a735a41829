"""A mailbox the plugin cannot read is reported RESYNC UNREADABLE (no STATUS),
never DELETED, and normally again once it can be read.

How a mailbox is made unreadable: chmod 000 on its Maildir++ directory while
Dovecot runs as an unprivileged user (the fixture drops root to twinbox-test,
and a non-root owner is denied too). The listing still returns the mailbox as
selectable (from the mailbox list index), but reading its status fails with
"Permission denied": the plugin's per-mailbox error path."""
import os
import unittest

from tests.plugin.common import PluginTestCase
from tests.plugin.xrclient import Report, uidset

ZERO_GUID = "0" * 32


class TestUnreadable(PluginTestCase):

    def box_dir(self, name):
        return os.path.join(self.dovecot.mail_dir(self.user), "." + name)

    def lock(self, name):
        path = self.box_dir(name)
        os.chmod(path, 0)
        self.addCleanup(os.chmod, path, 0o700)

    def unlock(self, name):
        os.chmod(self.box_dir(name), 0o700)

    def drop_list_index(self):
        """A rebuilt mailbox list index knows no GUIDs: the identity of an
        unreadable mailbox is then unknown to the server."""
        self.c.close()
        self.clients.remove(self.c)
        md = self.dovecot.mail_dir(self.user)
        for n in os.listdir(md):
            if n.startswith("dovecot.list.index"):
                os.unlink(os.path.join(md, n))
        self.c = self.connect()

    def unreadable(self, rep):
        return [(t[1], t[3]) for t in rep.of("RESYNC") if t[2] == "UNREADABLE"]

    def test_unreadable_is_not_deleted(self):
        self.ok("CREATE Box")
        self.ok("CREATE Other")
        self.append("Box", "b1")
        rep = self.position()
        box, other = self.guid(rep, "Box"), self.guid(rep, "Other")
        self.append("Box", "b2")
        self.append("Other", "o1")
        self.lock("Box")

        ch = self.changes(rep.position)
        self.assertEqual(self.unreadable(ch), [(box, "Box")])
        self.assertIsNone(ch.status("Box"))
        self.assertEqual(ch.mailbox_events(), [])
        self.assertEqual(ch.of("APPENDED", box), [])
        self.assertEqual([uidset(t[2]) for t in ch.of("APPENDED", other)], [[1]])
        # its section is the RESYNC line alone: the next line opens another
        i = [t[0] for t in ch.lines].index("RESYNC")
        self.assertNotEqual(ch.lines[i + 1][1], box)

        # still unreadable: the same again, the position still keeps it
        ch2 = self.changes(ch.position)
        self.assertEqual(self.unreadable(ch2), [(box, "Box")])
        self.assertEqual(ch2.mailbox_events(), [])
        self.assertEqual(ch2.of("APPENDED"), [])

        # readable again: the delta since the first position, nothing else
        self.unlock("Box")
        ch3 = self.changes(ch2.position)
        self.assertEqual(ch3.of("RESYNC"), [])
        self.assertEqual(ch3.mailbox_events(), [])
        self.assertEqual([uidset(t[2]) for t in ch3.of("APPENDED", box)], [[2]])
        self.assertEqual(ch3.status("Box")["UIDNEXT"], 3)
        self.assertEqual(ch3.status("Box")["guid"], box)
        self.assertEqual(self.changes(ch3.position).kinds().count("APPENDED"), 0)

    def test_unreadable_new_mailbox(self):
        rep = self.position()
        self.ok("CREATE New")
        self.append("New", "n1")
        self.lock("New")
        ch = self.changes(rep.position)
        # not in the position: no GUID to name it by, no CREATED yet
        self.assertEqual(self.unreadable(ch), [(ZERO_GUID, "New")])
        self.assertEqual(ch.mailbox_events(), [])
        self.assertIsNone(ch.status("New"))
        self.unlock("New")
        ch2 = self.changes(ch.position)
        new = self.guid(ch2, "New")
        self.assertEqual(ch2.mailbox_events(), [("CREATED", new, ["New"])])
        self.assertEqual([uidset(t[2]) for t in ch2.of("APPENDED", new)], [[1]])

    def test_unreadable_in_position(self):
        self.ok("CREATE Box")
        self.lock("Box")
        rep = self.position()
        self.assertEqual(self.unreadable(rep), [(ZERO_GUID, "Box")])
        self.assertIsNone(rep.status("Box"))
        self.assertIsNotNone(rep.status("INBOX"))
        self.unlock("Box")
        ch = self.changes(rep.position)
        self.assertEqual([e[0] for e in ch.mailbox_events()], ["CREATED"])

    def test_unknown_identity_holds_back_deletions(self):
        """Renamed, then unreadable, with a rebuilt list index: the server cannot
        tell which mailbox Box2 is, so nothing missing is reported DELETED."""
        self.ok("CREATE Box")
        self.ok("CREATE Doomed")
        self.append("Box", "b1")
        rep = self.position()
        box, doomed = self.guid(rep, "Box"), self.guid(rep, "Doomed")
        self.ok("RENAME Box Box2")
        self.ok("DELETE Doomed")
        self.lock("Box2")
        self.drop_list_index()

        ch = self.changes(rep.position)
        self.assertEqual(self.unreadable(ch), [(ZERO_GUID, "Box2")])
        self.assertEqual(ch.mailbox_events(), [])

        self.unlock("Box2")
        ch2 = self.changes(ch.position)
        events = ch2.mailbox_events()
        self.assertIn(("RENAMED", box, ["Box", "Box2"]), events)
        self.assertIn(("DELETED", doomed, ["Doomed"]), events)
        self.assertEqual(len(events), 2)
        self.assertEqual(ch2.of("RESYNC"), [])
        self.assertEqual(ch2.status("Box2")["UIDNEXT"], 2)

    def test_unknown_identity_by_name(self):
        """Rebuilt list index, same name: the position's GUID for that name."""
        self.ok("CREATE Box")
        self.ok("CREATE Doomed")
        rep = self.position()
        box, doomed = self.guid(rep, "Box"), self.guid(rep, "Doomed")
        self.ok("DELETE Doomed")
        self.lock("Box")
        self.drop_list_index()
        ch = self.changes(rep.position)
        self.assertEqual(self.unreadable(ch), [(box, "Box")])
        # Box is accounted for by name: the real deletion is reported
        self.assertEqual(ch.mailbox_events(), [("DELETED", doomed, ["Doomed"])])

    def test_watch_initial_batch(self):
        self.ok("CREATE Box")
        rep = self.position()
        box = self.guid(rep, "Box")
        self.lock("Box")
        tag = self.c.next_tag()
        self.c.send("%s XREPLICATE WATCH %s\r\n" % (tag, rep.position))
        initial = []
        while True:
            resp = self.c.read_response()
            if resp.startswith(b"+"):
                break
            initial.append(resp)
        initial = Report(initial)
        self.assertEqual(self.unreadable(initial), [(box, "Box")])
        self.assertEqual(initial.mailbox_events(), [])
        # a later batch does not repeat it
        other = self.connect()
        self.append("INBOX", "w1", c=other)
        batch = []
        while True:
            resp = self.c.read_response(timeout=15)
            if resp.startswith(b"* OK"):
                continue
            batch.append(resp)
            if resp.startswith(b"* XREPLICATE POSITION"):
                break
        batch = Report(batch)
        self.assertEqual(batch.of("RESYNC"), [])
        self.assertEqual(batch.mailbox_events(), [])
        self.c.send("DONE\r\n")
        status, text, _ = self.c.collect(tag)
        self.assertEqual(status, "OK", text)
        self.unlock("Box")
        ch = self.changes(batch.position)
        self.assertEqual(ch.mailbox_events(), [])
        self.assertEqual(ch.status("Box")["guid"], box)


if __name__ == "__main__":
    unittest.main()


class TestGuidConflict(PluginTestCase):

    def test_copied_mailbox_directory(self):
        """Two mailboxes with one GUID (a Maildir folder copied with its index):
        neither is trusted, neither fails the command."""
        import shutil
        self.ok("CREATE Box")
        self.append("Box", "b1")
        rep = self.position()
        box = self.guid(rep, "Box")
        self.c.close()
        self.clients.remove(self.c)
        md = self.dovecot.mail_dir(self.user)
        shutil.copytree(os.path.join(md, ".Box"), os.path.join(md, ".Copy"), symlinks=True)
        if self.dovecot.privileged:
            for root, dirs, files in os.walk(os.path.join(md, ".Copy")):
                os.lchown(root, self.dovecot.uid, self.dovecot.gid)
                for n in files:
                    os.lchown(os.path.join(root, n), self.dovecot.uid, self.dovecot.gid)
        for n in os.listdir(md):
            if n.startswith("dovecot.list.index"):
                os.unlink(os.path.join(md, n))
        self.c = self.connect()
        status, text, untagged = self.c.command("XREPLICATE CHANGES " + rep.position)
        self.assertEqual(status, "OK", text)
        ch = Report(untagged)
        resyncs = {t[3]: (t[1], t[2]) for t in ch.of("RESYNC")}
        self.assertEqual(resyncs, {"Box": (box, "UNREADABLE"),
                                   "Copy": ("0" * 32, "UNREADABLE")})
        self.assertEqual([t[2] for t in ch.of("STATUS")], ["INBOX"])
        self.assertEqual(ch.mailbox_events(), [])
        self.assertEqual(self.changes(ch.position).kinds().count("RESYNC"), 2)
