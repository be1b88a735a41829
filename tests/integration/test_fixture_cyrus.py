"""Self-test of the private Cyrus IMAP fixture (tests/fixture/cyrus.py), in both namespace
settings, and `twinbox probe` against it.
Run: python3 -m unittest tests.integration.test_fixture_cyrus
"""
import imaplib
import os
import re
import tempfile
import time

from tests.fixture.cyrus import Cyrus
from tests.integration.common import TestCase, twinbox

MESSAGE = (b"From: a@example.org\r\nTo: b@example.org\r\nSubject: cyrus fixture\r\n"
           b"Message-ID: <cyrus-fixture@example.org>\r\n\r\nhello\r\n")


def caps_of(client):
    _typ, data = client.capability()
    return set(data[0].decode().upper().split())


class CyrusFixtureBase:
    """Run for each namespace setting (subclasses set ALT and the expectations)."""
    ALT = False
    NAME = PREFIX = SEP = None

    @classmethod
    def setUpClass(cls):
        t = time.monotonic()
        cls.cy = Cyrus(altnamespace=cls.ALT).start()
        cls.start_time = time.monotonic() - t

    @classmethod
    def tearDownClass(cls):
        cls.cy.stop()

    def client(self):
        c = self.cy.client("alice")
        self.addCleanup(self._logout, c)
        return c

    @staticmethod
    def _logout(c):
        try:
            c.logout()
        except (imaplib.IMAP4.error, OSError):
            pass

    def test_attributes(self):
        cy = self.cy
        self.assertEqual((cy.name, cy.host, cy.prefix, cy.separator),
                         (self.NAME, "127.0.0.1", self.PREFIX, self.SEP))
        self.assertEqual(cy.users, {"alice": "secret"})
        self.assertEqual(cy.login("alice"), "alice")
        self.assertEqual(cy.password("alice"), "secret")
        self.assertEqual(cy.mailbox("INBOX"), "INBOX")
        self.assertEqual(cy.mailbox("Work/Sub"), self.PREFIX + "Work" + self.SEP + "Sub")
        self.assertLess(self.start_time, 15)

    def test_namespace(self):
        typ, data = self.client().namespace()
        self.assertEqual(typ, "OK")
        sep = re.escape(self.SEP)
        personal = r'^\(\("%s" "%s"\)\)' % (re.escape(self.PREFIX), sep)
        self.assertRegex(data[0].decode(), personal)

    def test_fresh_account_has_inbox_only(self):
        typ, data = self.client().list()
        self.assertEqual(typ, "OK")
        names = [d.decode().rsplit(" ", 1)[-1].strip('"') for d in data if d]
        self.assertIn("INBOX", names)
        self.assertNotIn("Trash", names)

    def test_capabilities(self):
        c = self.client()
        caps = caps_of(c)
        for cap in ("QRESYNC", "CONDSTORE", "UIDPLUS", "NAMESPACE", "ENABLE", "IDLE"):
            self.assertIn(cap, caps)

    def test_create_append_fetch(self):
        c = self.client()
        box = self.cy.mailbox("Work")
        self.assertEqual(box, self.PREFIX + "Work")
        typ, data = c.create(box)
        self.assertEqual(typ, "OK", data)
        typ, data = c.create(self.cy.mailbox("Work/Sub"))
        self.assertEqual(typ, "OK", data)
        typ, data = c.list()
        listed = b"\n".join(d for d in data if d).decode()
        self.assertIn('"%s" %s' % (self.SEP, box), listed)
        self.assertIn(self.cy.mailbox("Work/Sub"), listed)
        typ, data = c.append(box, r"(\Flagged $Label1)", None, MESSAGE)
        self.assertEqual(typ, "OK", data)
        self.assertIn(b"APPENDUID", data[0])
        typ, data = c.select(box)
        self.assertEqual(typ, "OK", data)
        self.assertEqual(int(data[0]), 1)
        typ, data = c.uid("FETCH", "1:*", "(FLAGS RFC822.SIZE BODY.PEEK[])")
        self.assertEqual(typ, "OK", data)
        meta, body = data[0]
        self.assertIn(b"\\Flagged", meta)
        self.assertIn(b"$Label1", meta)
        self.assertIn(b"RFC822.SIZE %d" % len(MESSAGE), meta)
        self.assertEqual(body, MESSAGE)
        typ, data = c.delete(self.cy.mailbox("Work/Sub"))
        self.assertEqual(typ, "OK", data)

    def test_top_level_create(self):
        """Default namespace: "Top" is outside the personal namespace (Permission denied);
        altnamespace: it is the personal mailbox "Top"."""
        c = self.client()
        typ, data = c.create("Top")
        self.assertEqual(typ, "OK" if self.ALT else "NO", data)

    def test_second_instance(self):
        with Cyrus(users={"bob": "pw2"}, altnamespace=self.ALT) as other:
            self.assertNotEqual(other.port, self.cy.port)
            self.assertNotEqual(other.tmp, self.cy.tmp)
            c2 = other.client("bob")
            c1 = self.client()
            box = other.mailbox("OnlyOther")
            self.assertEqual(c2.create(box)[0], "OK")
            self.assertEqual(c1.status("INBOX", "(MESSAGES)")[0], "OK")
            self.assertEqual(c1.status(self.cy.mailbox("OnlyOther"), "(MESSAGES)")[0], "NO")
            stranger = imaplib.IMAP4("127.0.0.1", other.port)
            self.addCleanup(stranger.shutdown)
            with self.assertRaises(imaplib.IMAP4.error):  # other users, other server
                stranger.login("alice", "secret")
            c2.logout()
            tmp = other.tmp
        self.assertFalse(os.path.exists(tmp))
        self.assertEqual(self.client().noop()[0], "OK")  # the first one still serves

    def test_twinbox_probe(self):
        with tempfile.TemporaryDirectory() as d:
            cfg = os.path.join(d, "config")
            with open(cfg, "w") as f:
                f.write(self.cy.account_config("a"))
            os.chmod(cfg, 0o600)
            r = twinbox("-c", cfg, "probe", "a", env={"TWINBOX_PASSWORD": ""})
            self.assertEqual(r.code, 0, "%r\n%s" % (r, self.cy.log_tail()))
            self.assertRegex(r.out, r"INBOX uidvalidity=\d+ uidnext=\d+ highestmodseq=\d+")


class CyrusDefaultNamespaceTest(CyrusFixtureBase, TestCase):
    ALT = False
    NAME, PREFIX, SEP = "cyrus", "INBOX.", "."


class CyrusAltNamespaceTest(CyrusFixtureBase, TestCase):
    ALT = True
    NAME, PREFIX, SEP = "cyrus-alt", "", "/"


class CyrusStopTest(TestCase):
    def test_stop_leaves_nothing(self):
        cy = Cyrus().start()
        c = cy.client()  # a live session: its imapd must go too
        pgid = cy.proc.pid
        tmp = cy.tmp
        cy.stop()
        self.assertEqual(cy._our_processes(pgid), [])
        self.assertFalse(os.path.exists(tmp))
        with self.assertRaises((imaplib.IMAP4.abort, OSError)):
            c.noop()
        c.shutdown()
        cy.stop()  # twice is harmless


if __name__ == "__main__":
    import unittest
    unittest.main()
