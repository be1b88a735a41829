"""Dovecot paired with other IMAP servers: the randomized two-sided test of the engine
(appends, flag and keyword changes, expunges, mailbox create/rename/delete on both sides),
checked through imaplib with each side's namespace prefix stripped; then a no-op run that
writes nothing (its round trips are printed for the note's table)."""
import unittest

from tests.fixture.dovecot import Dovecot
from tests.integration.interop import InteropBase, view


def _report(name, turns):
    print(f"\nNOOP-TURNS {name}: a {turns[0]} b {turns[1]}")


class CyrusTest(InteropBase):
    def make_b(self):
        from tests.fixture.cyrus import Cyrus
        return Cyrus(users={"alice": "secret"}).start()

    def test_randomized(self):
        _report(self.b.name, self.run_randomized())


class ProbeTest(InteropBase):
    """probe names the strategy it will use and how each mailbox maps."""

    def make_b(self):
        from tests.fixture.courier import Courier
        return Courier(users={"alice": "secret"}).start()

    def test_probe_prints_strategy_and_mapping(self):
        from tests.integration.common import twinbox
        self.append(self.b, "Work/Sub", 1, 1, 0)
        r = twinbox("-c", self.cfg, "probe", "b")
        self.assertEqual(r.code, 0, r)
        self.assertIn('namespace: "INBOX." separator "."', r.out)
        self.assertIn("strategy: listing", r.out)
        self.assertIn("discovery: LIST, LSUB and STATUS", r.out)
        self.assertRegex(r.out, r"INBOX\.Work\.Sub uidvalidity=\d+ .* -> Work/Sub")
        r = twinbox("-c", self.cfg, "probe", "a")
        self.assertIn("strategy: QRESYNC", r.out)
        r = twinbox("-c", self.cfg, "probe", "--json", "b")
        self.assertEqual(r.json()["strategy"].split()[0], "listing")


class UnrepresentableNameTest(InteropBase):
    """A name holding Courier's separator (made on Cyrus with "/" as its separator; Dovecot's
    maildir refuses '.') cannot exist there: reported, left alone (exit 7, a person must
    rename it), never mangled into a hierarchy; the rest syncs."""

    def make_a(self):
        from tests.fixture.cyrus import Cyrus
        return Cyrus(users={"alice": "secret"}, altnamespace=True).start()

    def make_b(self):
        from tests.fixture.courier import Courier
        return Courier(users={"alice": "secret"}).start()

    def test_name_with_the_other_separator(self):
        self.append(self.a, "v1.2", 1, 1, 0)
        self.append(self.a, "Work", 1, 2, 0)
        r = self.sync(code=7)
        self.assertIn("mailbox v1.2 cannot exist on b", r.err)
        self.assertIn("1 mailbox cannot exist on the other side", r.err)
        vb = view(self.b)
        self.assertIn("Work", vb)
        self.assertNotIn("v1/2", vb, "not mangled into a hierarchy")
        self.assertNotIn("v1", vb)
        self.assertEqual(sorted(view(self.a)), ["INBOX", "Work", "v1.2"], "a untouched")


class CyrusAltTest(InteropBase):
    def make_b(self):
        from tests.fixture.cyrus import Cyrus
        return Cyrus(users={"alice": "secret"}, altnamespace=True).start()

    def test_randomized(self):
        _report(self.b.name, self.run_randomized())


class CourierTest(InteropBase):
    def make_b(self):
        from tests.fixture.courier import Courier
        return Courier(users={"alice": "secret"}).start()

    def test_randomized(self):
        _report(self.b.name, self.run_randomized())


class Imap4dTest(InteropBase):
    """No UIDPLUS, CONDSTORE, LIST-STATUS nor keywords; maildir drops APPEND flags."""

    def make_b(self):
        from tests.fixture.imap4d import Imap4d
        fx = Imap4d(users={"alice": "secret"}, mail_format="maildir").start()
        # Its RENAME gives the messages new UIDs under the same UIDVALIDITY (RFC 3501
        # violation): a rename made there reads as expunges plus new messages.
        fx.rename_renumbers = True
        return fx

    def test_randomized(self):
        _report(self.b.name, self.run_randomized())

    def test_keywords_stay_on_the_side_that_has_them(self):
        self.append(self.a, "INBOX", 2, 1, 0)
        self.sync()
        uid = self.uids(self.a, "INBOX")[0]
        self.store(self.a, "INBOX", uid, "+FLAGS", "$Todo \\Flagged")
        r = self.sync()
        self.assertRegex(r.out, r"flag updates 1,")
        self.assertIn("1 messages written without flags their mailbox cannot keep", r.out)
        self.sync()
        va, vb = view(self.a), view(self.b)
        self.assertIn("$Todo", va["INBOX"][0][1] + va["INBOX"][1][1], "the keyword stays on a")
        self.assertSame()


    def test_kill_9_during_copy(self):
        """Without UIDPLUS a copy's UID is found by identity after the batch: a run killed
        between its APPENDs and that search leaves copies the rerun must pair, not copy
        again."""
        import signal
        import subprocess
        import time
        from tests.integration.common import binary
        killed = 0
        for trial in range(3):
            self.append(self.a, "INBOX", 40, 20 + trial, 0)
            before = self.count(self.b, "INBOX")
            p = subprocess.Popen([binary("twinbox"), "-c", self.cfg, "sync"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + 60
            while p.poll() is None and time.monotonic() < deadline:
                if self.count(self.b, "INBOX") > before + 5 * (trial + 1):
                    p.send_signal(signal.SIGKILL)
                    killed += 1
                    break
                time.sleep(0.005)
            p.wait(timeout=60)
            time.sleep(0.3)  # the killed session's last APPENDs land
            self.sync()
            self.assertSame(f"after kill {trial}")
        print(f"\nkilled {killed} of 3 runs mid-copy")

    def count(self, fx, name):
        c = fx.client()
        try:
            typ, data = c.status(fx.mailbox(name), "(MESSAGES)")
            return int(data[0].split(b"MESSAGES ")[1].rstrip(b")"))
        finally:
            c.logout()


class HoodiecrowTest(InteropBase):
    def make_b(self):
        from tests.fixture.hoodiecrow import Hoodiecrow
        fx = Hoodiecrow(users={"alice": "secret"}).start()
        # STATUS of a missing mailbox is BAD there, which proves nothing: a mailbox deleted
        # on hoodiecrow is left alone (test below), so the random rounds delete only on a.
        fx.status_bad_when_missing = True
        return fx

    def test_randomized(self):
        _report(self.b.name, self.run_randomized())

    def test_deletion_without_evidence_is_left_alone(self):
        self.append(self.a, "Box", 2, 1, 0)
        self.sync()
        c = self.b.client()
        c.delete(self.b.mailbox("Box"))
        c.logout()
        r = self.sync(code=5)
        self.assertIn("STATUS: BAD", r.err)
        self.assertIn("Box", view(self.a), "nothing deleted on a")


class GmailLikeTest(InteropBase):
    def make_b(self):
        from tests.fixture import mimic
        self.dv_b = Dovecot(users={"alice": "secret"}, separator="/").start()
        self.addCleanup(self.dv_b.stop)
        return mimic.gmail_like(self.dv_b)

    def test_randomized(self):
        _report(self.b.name, self.run_randomized())


class M365LikeTest(InteropBase):
    def make_b(self):
        from tests.fixture import mimic
        self.dv_b = Dovecot(users={"alice": "secret"}, separator="/").start()
        self.addCleanup(self.dv_b.stop)
        return mimic.m365_like(self.dv_b)

    def test_randomized(self):
        _report(self.b.name, self.run_randomized())


class CyrusCourierTest(InteropBase):
    """Two servers with the "INBOX." prefix, neither of them Dovecot."""

    def make_a(self):
        from tests.fixture.cyrus import Cyrus
        return Cyrus(users={"alice": "secret"}).start()

    def make_b(self):
        from tests.fixture.courier import Courier
        return Courier(users={"alice": "secret"}).start()

    def test_randomized(self):
        _report("cyrus-courier", self.run_randomized())


if __name__ == "__main__":
    unittest.main()
