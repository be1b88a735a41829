"""Dovecot paired with other IMAP servers: the randomized two-sided test of the engine
(appends, flag and keyword changes, expunges, mailbox create/rename/delete on both sides),
checked through imaplib with each side's namespace prefix stripped; then a no-op run that
writes nothing (its round trips are printed for the note's table)."""
import unittest

from tests.integration.interop import InteropBase


def _report(name, turns):
    print(f"\nNOOP-TURNS {name}: a {turns[0]} b {turns[1]}")


class CyrusTest(InteropBase):
    def make_b(self):
        from tests.fixture.cyrus import Cyrus
        return Cyrus(users={"alice": "secret"}).start()

    def test_randomized(self):
        _report(self.b.name, self.run_randomized())


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


if __name__ == "__main__":
    unittest.main()
