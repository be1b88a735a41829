"""Shared machinery of the interoperability tests: a private Dovecot (side a) paired with
another server (side b: Cyrus, Courier, imap4d, hoodiecrow, or Dovecot behind a relay that
makes it look like Gmail or Microsoft 365), randomized two-sided changes, and a comparison of
both accounts through imaplib with each server's namespace prefix stripped.

Every fixture offers: start(), stop(), port, prefix, separator, client(user), login(user),
password(user), account_config(section, user), mailbox(name) (wire name of a "/"-separated
name relative to the personal namespace)."""
import os
import random
import re
import tempfile

from tests.fixture import imapcheck as ic
from tests.fixture.dovecot import Dovecot
from tests.integration.common import TestCase, twinbox

SYSTEM = ("\\Seen", "\\Flagged", "\\Answered", "\\Draft")
KEYWORDS = ("$Todo", "$Label1", "Work")


class DovecotSide:
    """The fixture interface over a fixture Dovecot (prefix "", its separator)."""

    def __init__(self, dv):
        self.dv = dv
        self.name = "dovecot"
        self.prefix = ""
        self.separator = dv.separator or "."

    def start(self):
        self.dv.start()
        return self

    def stop(self):
        self.dv.stop()

    def client(self, user="alice", timeout=30):
        return self.dv.client(user, timeout)

    def mailbox(self, name):
        return name if name == "INBOX" else name.replace("/", self.separator)

    def account_config(self, section, user="alice"):
        return (f"[account {section}]\ntype = imap\nhost = 127.0.0.1\nport = {self.dv.imap_port}\n"
                f"user = {user}\npassword = {self.dv.users[user]}\nstarttls = no\n\n")


def canon(fx, wire):
    """The canonical name of a wire name, or None outside the personal namespace."""
    if wire.upper() == "INBOX":
        return "INBOX"
    if fx.prefix and not wire.startswith(fx.prefix):
        return None
    rest = wire[len(fx.prefix):]
    return rest.replace(fx.separator, "/") if fx.separator else rest


def view(fx, user="alice"):
    """{canonical mailbox: sorted [(message-id, flags)]} of one account."""
    c = fx.client(user)
    try:
        out = {}
        for wire in ic.list_mailboxes(c, selectable_only=True):
            name = canon(fx, wire)
            if name is None:
                continue
            rows = [(m.get("message_id"), m["flags"]) for m in ic.fetch_all(c, wire)]
            c.close()
            out[name] = sorted(rows, key=lambda r: (r[0] or "", r[1]))
        return out
    finally:
        c.logout()


def keywords_ok(fx):
    """Whether the server keeps keywords (PERMANENTFLAGS lists \\*)."""
    c = fx.client()
    try:
        typ, data = c.select("INBOX")
        perm = c.response("PERMANENTFLAGS")[1]
        c.close()
        return any(b"\\*" in (p or b"") for p in perm)
    finally:
        c.logout()


class InteropBase(TestCase):
    """Subclasses set make_b() -> a started fixture (side b)."""
    ROUNDS = 8
    maxDiff = None

    def make_b(self):
        raise NotImplementedError

    def make_a(self):
        return DovecotSide(Dovecot(users={"alice": "secret"}, separator="/")).start()

    def setUp(self):
        self.a = self.make_a()
        try:
            self.b = self.make_b()
        except BaseException:
            self.a.stop()
            raise
        self.tmp = tempfile.TemporaryDirectory()
        self.cfg = os.path.join(self.tmp.name, "config")
        with open(self.cfg, "w") as f:
            f.write(self.a.account_config("a"))
            f.write(self.b.account_config("b"))
            f.write(f"[pair p]\na = a\nb = b\nstate = {self.tmp.name}/p.db\n")
        os.chmod(self.cfg, 0o600)
        self.kw = {id(self.a): keywords_ok(self.a), id(self.b): keywords_ok(self.b)}

    def tearDown(self):
        try:
            self.b.stop()
        finally:
            self.a.stop()
            self.tmp.cleanup()

    def sync(self, *args, code=0):
        r = twinbox("-c", self.cfg, "-v", "sync", *args, timeout=600)
        self.assertEqual(r.code, code, r)
        return r

    def flags_pool(self, fx):
        return SYSTEM + (KEYWORDS if self.kw[id(fx)] else ())

    def comparable(self, rows):
        """Flags both servers can keep: keywords only when both keep them."""
        both_kw = self.kw[id(self.a)] and self.kw[id(self.b)]
        out = []
        for mid, flags in rows:
            f = tuple(x for x in flags if x.startswith("\\") or both_kw)
            out.append((mid, f))
        return sorted(out, key=lambda r: (r[0] or "", r[1]))

    def assertSame(self, where=""):
        va, vb = view(self.a), view(self.b)
        self.assertEqual(sorted(va), sorted(vb), f"{where}: mailboxes differ")
        for name in va:
            self.assertEqual(self.comparable(va[name]), self.comparable(vb[name]),
                             f"{where}: mailbox {name} differs")
            ids = [r[0] for r in va[name]]
            self.assertEqual(len(ids), len(set(ids)), f"{where}: duplicate in {name} on a")
            ids = [r[0] for r in vb[name]]
            self.assertEqual(len(ids), len(set(ids)), f"{where}: duplicate in {name} on b")
        return va

    # ---- changes through imaplib --------------------------------------------------------

    def append(self, fx, name, n, seed, start):
        c = fx.client()
        try:
            wire = fx.mailbox(name)
            if name != "INBOX":
                c.create(ic.quote(wire))
            for i in range(start, start + n):
                msg, day = ic.make_message(i, size=1500, seed=seed, mailbox=name)
                ic.append(c, wire, msg, date=day)
        finally:
            c.logout()

    def store(self, fx, name, uid, op, flags):
        c = fx.client()
        try:
            c.select(ic.quote(fx.mailbox(name)))
            typ, data = c.uid("STORE", str(uid), op, "(" + flags + ")")
            self.assertEqual(typ, "OK", (fx.name, data))
        finally:
            c.logout()

    def expunge(self, fx, name, uid):
        c = fx.client()
        try:
            c.select(ic.quote(fx.mailbox(name)))
            c.uid("STORE", str(uid), "+FLAGS", "(\\Deleted)")
            if "UIDPLUS" in c.capabilities:
                c.uid("EXPUNGE", str(uid))
            else:
                c.expunge()
        finally:
            c.logout()

    def uids(self, fx, name):
        c = fx.client()
        try:
            return [m["uid"] for m in ic.fetch_all(c, fx.mailbox(name))]
        finally:
            c.logout()

    def random_round(self, rnd, fx, counter):
        v = view(fx)
        flat = [n for n in sorted(v) if "/" not in n and n != "INBOX"]
        for _ in range(rnd.randrange(1, 4)):
            box = rnd.choice(sorted(v))
            op = rnd.random()
            if op < 0.08:
                counter += 1
                self.append(fx, f"M{counter}", 1, 9, counter)
            elif op < 0.12 and flat and not getattr(fx, "status_bad_when_missing", False):
                c = fx.client()
                c.delete(ic.quote(fx.mailbox(flat.pop(rnd.randrange(len(flat))))))
                c.logout()
                return counter
            elif op < 0.16 and flat and not getattr(fx, "rename_renumbers", False):
                counter += 1
                c = fx.client()
                c.rename(ic.quote(fx.mailbox(rnd.choice(flat))), ic.quote(fx.mailbox(f"R{counter}")))
                c.logout()
                return counter
            elif op < 0.5:
                counter += 1
                self.append(fx, box, 1, 9, counter)
            else:
                uids = self.uids(fx, box)
                if not uids:
                    continue
                uid = rnd.choice(uids)
                if op < 0.85:
                    pool = self.flags_pool(fx)
                    kind = rnd.choice(["+FLAGS", "-FLAGS", "FLAGS"])
                    f = (" ".join(rnd.sample(pool, rnd.randint(0, 3))) if kind == "FLAGS"
                         else rnd.choice(pool))
                    self.store(fx, box, uid, kind, f)
                else:
                    self.expunge(fx, box, uid)
        return counter

    def run_randomized(self):
        rnd = random.Random(int(os.environ.get("TWINBOX_TEST_SEED", "20261130")))
        self.append(self.a, "INBOX", 5, 1, 0)
        self.append(self.a, "Box", 4, 2, 0)
        self.append(self.b, "INBOX", 3, 3, 0)
        self.append(self.b, "Other", 3, 4, 0)
        self.sync()
        self.assertSame("first sync")
        counter = 100
        for i in range(self.ROUNDS):
            for fx in (self.a, self.b):
                counter = self.random_round(rnd, fx, counter)
            r = self.sync()
            print(f"{self.b.name} round {i}: {r.out.strip().splitlines()[-1]}")
            self.assertSame(f"round {i}")
        return self.noop_turns()

    def noop_turns(self):
        """Runs a no-op sync; returns (turns a, turns b, strategy b); it must write nothing."""
        r = self.sync()
        last = r.out.strip().splitlines()[-1]
        self.assertRegex(last, r"copied a->b 0, b->a 0, flag updates 0, expunged 0, mailboxes "
                               r"created 0 deleted 0 renamed 0", r)
        m = re.search(r"round trips a (\d+) b (\d+)", last)
        return int(m.group(1)), int(m.group(2))
