"""Positions too large for an inline token: kept server-side behind a handle
(xreplicate_server_positions, the default), or refused with [XREPLICATE-TOOBIG]."""
import glob
import os
import re
import secrets
import stat
import time
import unittest

from tests.plugin.common import PluginTestCase, make_maildir_folders, message
from tests.plugin.xrclient import Client, Report, uidset

HANDLE = re.compile(r"^S1\.[0-9a-f]{32}$")
LARGE = 2000  # ~80 KB as an inline token: past Dovecot's 64 KB imap_max_line_length


def store_files(dovecot, user):
    """Stored positions (the mailbox list index directory is the Maildir root)."""
    return sorted(glob.glob(os.path.join(dovecot.mail_dir(user),
                                         "dovecot-xreplicate.*")))


class LargeAccountCase(PluginTestCase):
    """One user with LARGE folders, made on disk before its first login."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.big = cls.free_users.pop()
        make_maildir_folders(cls.dovecot, cls.big,
                             ["Folder%04d" % i for i in range(LARGE)])

    def big_client(self):
        c = Client.connect(self.dovecot.imap_port, self.big, "pw", timeout=120)
        self.clients.append(c)
        return c


class TestServerPositions(LargeAccountCase):

    def test_large_account_position_changes_changes(self):
        c = self.big_client()
        t0 = time.monotonic()
        rep = self.position(c)
        self.assertRegex(rep.position, HANDLE)
        self.assertEqual(len(rep.of("STATUS")), LARGE + 1)  # and INBOX
        guid = self.guid(rep, "Folder1234")

        self.append("Folder1234", "m1", c=c)
        ch = self.changes(rep.position, c)
        self.assertRegex(ch.position, HANDLE)
        self.assertNotEqual(ch.position, rep.position)
        self.assertEqual([uidset(t[2]) for t in ch.of("APPENDED", guid)], [[1]])
        self.assertEqual(len(ch.of("STATUS")), LARGE + 1)

        again = self.changes(ch.position, c)
        self.assertEqual(again.of("APPENDED"), [])
        self.assertEqual(len(again.of("STATUS")), LARGE + 1)
        # nothing changed: the same handle again, not a new stored position
        self.assertEqual(again.position, ch.position)

        # the previous handle is still usable after a newer one was issued
        # (a client that crashed before storing the newer one)
        old = self.changes(rep.position, c)
        self.assertEqual([uidset(t[2]) for t in old.of("APPENDED", guid)], [[1]])
        self.assertLess(time.monotonic() - t0, 40)

        # the stored positions: private files, never listed as mailboxes
        files = [f for f in store_files(self.dovecot, self.big) if not f.endswith(".tmp")]
        self.assertTrue(files)
        self.assertLessEqual(len(files), 8)
        for f in files:
            self.assertEqual(stat.S_IMODE(os.stat(f).st_mode), 0o600, f)
        listed = self.ok('LIST "" "dovecot*"', c)
        self.assertEqual(listed, [])

    def test_server_killed_while_storing(self):
        """The imap process is killed (SIGKILL) the moment a new stored position
        shows up in the directory, as a temporary file or under its final name:
        every stored position is complete, and the handle the client holds still
        works."""
        import signal
        c = self.big_client()
        h1 = self.position(c).position
        self.append("Folder0042", "k1", c=c)
        md = self.dovecot.mail_dir(self.big)
        before = set(os.listdir(md))
        t = Client.tunnel(self.dovecot.tunnel_command(self.big), timeout=60)
        self.clients.append(t)
        # the reply (2,000 STATUS lines) must be read for the server to get to
        # the POSITION: drain it meanwhile
        import threading
        fd = t.proc.stdout.fileno()
        drain = threading.Thread(target=lambda: [None for _ in iter(
            lambda: os.read(fd, 65536), b"")], daemon=True)
        drain.start()
        t.send("t1 XREPLICATE CHANGES %s\r\n" % h1)
        deadline = time.monotonic() + 30
        new = set()
        while not new and time.monotonic() < deadline:
            new = {n for n in os.listdir(md) if n.startswith("dovecot-xreplicate.")} - before
        os.kill(t.proc.pid, signal.SIGKILL)
        self.assertTrue(new, "no position was stored")
        t.proc.wait(10)
        drain.join(10)
        # complete: the checksum at the end covers the whole file (a handle
        # used here would store a new position and push older ones out)
        import struct
        import zlib
        finals = [f for f in store_files(self.dovecot, self.big) if not f.endswith(".tmp")]
        for f in finals:
            with open(f, "rb") as fp:
                data = fp.read()
            self.assertEqual(struct.unpack(">I", data[-4:])[0], zlib.crc32(data[:-4]), f)
            self.assertEqual(data[1:5], struct.pack(">I", zlib.crc32(self.big.encode())))
        ch = self.changes(h1, c)
        self.assertEqual(len(ch.of("APPENDED")), 1)

    def test_handle_as_literal_and_quoted(self):
        c = self.big_client()
        rep = self.position(c)
        status, text, untagged = c.command("XREPLICATE CHANGES",
                                           literal=rep.position.encode())
        self.assertEqual(status, "OK", text)
        status, text, untagged = c.command('XREPLICATE CHANGES "%s"' % rep.position)
        self.assertEqual(status, "OK", text)


class TestServerPositionsOff(LargeAccountCase):
    # a 2 kB inline limit: a few dozen mailboxes outgrow it (the default 8 kB
    # takes ~200, slow to create over IMAP); the large account is far past both
    plugin_settings = {"xreplicate_server_positions": "no",
                       "xreplicate_inline_token_max": "2k"}
    GROW = 80

    def assert_toobig(self, status, text, untagged):
        self.assertEqual(status, "NO", text)
        self.assertIn("[XREPLICATE-TOOBIG]", text)

    def test_large_account_is_refused_cleanly(self):
        c = self.big_client()
        status, text, untagged = c.command("XREPLICATE POSITION")
        self.assert_toobig(status, text, untagged)
        # refused before anything was sent
        self.assertEqual(Report(untagged).lines, [])
        # the connection stays usable
        self.ok("NOOP", c)
        self.assertEqual(store_files(self.dovecot, self.big), [])

    def grow(self, n, c=None):
        c = c or self.c
        for i in range(n):
            c.send("g%d CREATE Grown%04d\r\n" % (i, i))
        for i in range(n):
            status, text, _ = c.collect("g%d" % i)
            self.assertEqual(status, "OK", text)

    def test_changes_and_watch_refused_once_grown(self):
        rep = self.position()
        self.assertNotRegex(rep.position, HANDLE)
        self.grow(self.GROW)  # ~3 kB inline
        status, text, untagged = self.c.command("XREPLICATE CHANGES " + rep.position)
        self.assert_toobig(status, text, untagged)
        self.ok("NOOP")
        # WATCH: refused before "+ watching"
        status, text, untagged = self.c.command("XREPLICATE WATCH " + rep.position)
        self.assert_toobig(status, text, untagged)
        self.ok("NOOP")

    def test_watch_ends_when_position_outgrows(self):
        rep = self.position()
        tag = self.c.next_tag()
        self.c.send("%s XREPLICATE WATCH %s\r\n" % (tag, rep.position))
        while not self.c.read_response().startswith(b"+"):
            pass
        other = self.connect()
        self.grow(self.GROW, other)
        # batches with POSITIONs while they fit, then the tagged NO
        deadline = time.monotonic() + 30
        while True:
            resp = self.c.read_response(timeout=max(0.1, deadline - time.monotonic()))
            if resp.startswith(tag.encode() + b" "):
                break
        self.assertTrue(resp.startswith(tag.encode() + b" NO [XREPLICATE-TOOBIG]"), resp)
        self.ok("NOOP")

    def test_handle_refused_when_off(self):
        status, text, _ = self.c.command("XREPLICATE CHANGES S1." + secrets.token_hex(16))
        self.assertEqual(status, "NO", text)
        self.assertIn("[XREPLICATE-BADTOKEN]", text)


class TestHandles(PluginTestCase):
    """Every position is a handle (inline limit 0); three are kept per user."""
    plugin_settings = {"xreplicate_inline_token_max": "0",
                       "xreplicate_server_positions_keep": "3"}

    def fresh_handles(self, n):
        """n distinct handles in issue order, a message appended between them."""
        handles = [self.position().position]
        for i in range(n - 1):
            self.append("INBOX", "h%d" % i)
            handles.append(self.changes(handles[-1]).position)
        self.assertEqual(len(set(handles)), n)
        return handles

    def assert_badtoken(self, token, status="NO", c=None):
        got, text, _ = (c or self.c).command("XREPLICATE CHANGES " + token)
        self.assertEqual((got, "[XREPLICATE-BADTOKEN]" in text), (status, True),
                         "%s -> %s %s" % (token, got, text))

    def test_handle_form(self):
        rep = self.position()
        self.assertRegex(rep.position, HANDLE)
        (f,) = store_files(self.dovecot, self.user)
        self.assertTrue(f.endswith(rep.position[3:]))
        self.assertEqual(stat.S_IMODE(os.stat(f).st_mode), 0o600)

    def test_other_users_handle(self):
        rep = self.position()
        other = Client.connect(self.dovecot.imap_port, self.free_users.pop(0), "pw")
        self.clients.append(other)
        self.assert_badtoken(rep.position, c=other)
        # a stored position copied into the other user's directory is still bound
        # to the user it was issued to
        other_user = self.free_users.pop(0)
        c3 = Client.connect(self.dovecot.imap_port, other_user, "pw")
        self.clients.append(c3)
        self.ok("XREPLICATE POSITION", c3)  # makes its directory and a file
        (src,) = store_files(self.dovecot, self.user)
        dst = os.path.join(self.dovecot.mail_dir(other_user), os.path.basename(src))
        with open(src, "rb") as f, open(dst, "wb") as g:
            g.write(f.read())
        if self.dovecot.privileged:
            os.chown(dst, self.dovecot.uid, self.dovecot.gid)
        self.assert_badtoken(rep.position, c=c3)

    def test_forged_and_malformed_handles(self):
        self.position()
        self.assert_badtoken("S1." + secrets.token_hex(16))
        for bad in ["S1.", "S1." + "A" * 32, "S1." + "a" * 31, "S1." + "a" * 33,
                    "S1.%sx" % ("0" * 32), "S2." + "0" * 32, "S1..", "S1.../etc"]:
            self.assert_badtoken(bad, "BAD")
            self.ok("NOOP")

    def test_expired_handle(self):
        handles = self.fresh_handles(4)
        self.assertEqual(len(store_files(self.dovecot, self.user)), 3)
        self.assert_badtoken(handles[0])
        # the newest: nothing changed since, handed out again (no new file)
        self.assertEqual(self.changes(handles[3]).position, handles[3])
        # an older one still kept: a new position is stored, the oldest
        # untouched one goes (using a handle keeps it among the newest)
        ch = self.changes(handles[2])
        self.assertEqual(len(ch.of("APPENDED")), 1)
        self.assertEqual(len(store_files(self.dovecot, self.user)), 3)
        self.assert_badtoken(handles[1])
        self.changes(handles[2])
        self.changes(ch.position)

    def test_previous_handle_survives(self):
        h1, h2 = self.fresh_handles(2)
        # a client that never read the reply with h2 (crashed) uses h1 again
        ch = self.changes(h1)
        self.assertEqual(len(ch.of("APPENDED")), 1)
        # a reply the client dropped unread
        lost = self.connect()
        lost.send("z1 XREPLICATE CHANGES %s\r\n" % h2)
        lost.close()
        self.changes(h2)
        self.changes(h1)

    def test_unchanged_keeps_handle(self):
        h = self.position().position
        self.assertEqual(self.changes(h).position, h)
        self.assertEqual(len(store_files(self.dovecot, self.user)), 1)

    def test_leftover_temporary_files(self):
        self.position()
        md = self.dovecot.mail_dir(self.user)
        stale = os.path.join(md, "dovecot-xreplicate.%s.tmp" % secrets.token_hex(16))
        young = os.path.join(md, "dovecot-xreplicate.%s.tmp" % secrets.token_hex(16))
        for p in (stale, young):
            with open(p, "wb") as f:
                f.write(b"partial")
        os.utime(stale, (time.time() - 7200, time.time() - 7200))
        # a crash before the rename: its handle was never handed out
        self.assert_badtoken("S1." + os.path.basename(young)[19:51])
        self.fresh_handles(2)
        self.assertFalse(os.path.exists(stale))
        self.assertTrue(os.path.exists(young))

    def test_damaged_stored_position(self):
        h = self.position().position
        (f,) = store_files(self.dovecot, self.user)
        with open(f, "r+b") as fp:
            fp.seek(10)
            fp.write(b"\xff\xfe")
        self.assert_badtoken(h)
        with open(f, "wb") as fp:
            fp.truncate(0)
        self.assert_badtoken(h)
        self.ok("NOOP")

    def test_watch_hands_out_handles(self):
        h = self.position().position
        tag = self.c.next_tag()
        self.c.send("%s XREPLICATE WATCH %s\r\n" % (tag, h))
        initial = []
        while True:
            resp = self.c.read_response()
            if resp.startswith(b"+"):
                break
            initial.append(resp)
        self.assertEqual(Report(initial).position, h)
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
        pushed = Report(batch).position
        self.assertRegex(pushed, HANDLE)
        self.c.send("DONE\r\n")
        status, text, _ = self.c.collect(tag)
        self.assertEqual(status, "OK", text)
        self.assertEqual(self.changes(pushed).of("APPENDED"), [])


if __name__ == "__main__":
    unittest.main()


def varint(v):
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return bytes(out)


def forge_token(user, entries, count=None, base=None):
    """An inline token in the plugin's format (src/dovecot/xrep-token.h) with a
    valid checksum: entries are (shared, rest bytes, guid bytes, uidvalidity,
    uidnext, modseq, age, flags)."""
    import struct
    import zlib
    base = int(time.time()) if base is None else base
    b = bytearray(b"\x01")
    b += struct.pack(">II", zlib.crc32(user.encode()), base)
    b += varint(len(entries) if count is None else count)
    for shared, rest, guid, uv, un, ms, age, flags in entries:
        b += varint(shared) + varint(len(rest)) + rest + guid
        b += varint(uv) + varint(un) + varint(ms) + varint(age) + bytes([flags])
    b += struct.pack(">I", zlib.crc32(bytes(b)))
    import base64
    return base64.urlsafe_b64encode(bytes(b)).decode().rstrip("=")


class TestHostileTokens(PluginTestCase):
    """Tokens with valid checksums but hostile contents: refused or served, never
    a crash, never a long stall."""

    def guid(self, i):
        return i.to_bytes(16, "big")

    def command(self, token):
        t0 = time.monotonic()
        status, text, untagged = self.c.command("XREPLICATE CHANGES",
                                                literal=token.encode())
        self.assertLess(time.monotonic() - t0, 10)
        return status, text, untagged

    def test_forged_tokens(self):
        self.position()
        u = self.user
        e = lambda shared, rest, i, **kw: (shared, rest, self.guid(i), kw.get("uv", 1),
                                           kw.get("un", 1), kw.get("ms", 1),
                                           kw.get("age", 0), kw.get("flags", 0))
        # front coding that would make ~1,000 names of 16 kB out of 40 kB
        bomb = [e(0 if i == 0 else 4096 * i, b"a" * 4096, i) for i in range(4)]
        bomb += [e(16383, bytes([0x61 + i % 26]), 10 + i) for i in range(1000)]
        cases = {
            "name bomb": forge_token(u, bomb),
            "name too long": forge_token(u, [e(0, b"a" * 4096, 1)] +
                                         [e(4096 * k, b"a" * 4096, 1 + k) for k in range(1, 5)]),
            "huge count": forge_token(u, [e(0, b"INBOX", 1)], count=2 ** 62),
            "count past data": forge_token(u, [e(0, b"INBOX", 1)], count=100000),
            "shared past name": forge_token(u, [e(0, b"A", 1), e(5, b"B", 2)]),
            "empty name": forge_token(u, [e(0, b"", 1)]),
            "NUL in name": forge_token(u, [e(0, b"a\0b", 1)]),
            "not UTF-8": forge_token(u, [e(0, b"\xff\xfe", 1)]),
            "duplicate GUID": forge_token(u, [e(0, b"A", 1), e(0, b"B", 1)]),
            "duplicate name": forge_token(u, [e(0, b"A", 1), e(0, b"A", 2)]),
            "flags": forge_token(u, [e(0, b"A", 1, flags=7)]),
            "uidvalidity > 32 bits": forge_token(u, [e(0, b"A", 1, uv=2 ** 40)]),
            "age > base": forge_token(u, [e(0, b"A", 1, age=2 ** 40)]),
        }
        for what, tok in cases.items():
            status, text, _ = self.command(tok)
            self.assertEqual(status, "BAD", "%s: %s" % (what, text))
            self.assertIn("[XREPLICATE-BADTOKEN]", text, what)
            if what.startswith("name"):
                self.assertIn("bad mailbox name", text, what)
            self.ok("NOOP")

    def test_forged_but_valid_tokens_are_served(self):
        """Odd but well-formed positions: names with CR LF, quotes, 8-bit UTF-8,
        extreme numbers; everything in them is reported gone or changed."""
        inbox = self.guid(0)
        odd = [(0, b"A\r\nB", self.guid(1), 5, 2 ** 32 - 1, 2 ** 64 - 1, 0, 1),
               (0, '"\\\u00e9t\u00e9*%'.encode(), self.guid(2), 0, 0, 0, 0, 0),
               (0, b"INBOX", inbox, 1, 1, 1, 0, 0),
               (0, b"x" * 4000, self.guid(3), 1, 1, 1, 0, 0)]
        status, text, untagged = self.command(forge_token(self.user, odd))
        self.assertEqual(status, "OK", text)
        rep = Report(untagged)
        deleted = sorted(t[3][:20] for t in rep.of("MAILBOX") if t[2] == "DELETED")
        # names go out in modified UTF-7 (CR LF included), quoted or literal
        self.assertEqual(deleted, ['"\\&AOk-t&AOk-*%', "A&AA0ACg-B", "INBOX", "x" * 20])
        # the real INBOX has another GUID than the forged one: recreated
        self.assertEqual([t[2] for t in rep.of("RESYNC")], ["RECREATED"])
        self.ok("NOOP")
        self.changes(rep.position)
