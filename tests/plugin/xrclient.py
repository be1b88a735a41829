"""A small raw IMAP client for the X-REPLICATE tests (stdlib only).

imaplib cannot follow WATCH (a continuation in the middle of a command), so this
client reads the server's byte stream itself: a response is a line plus any {n}
literals; X-REPLICATE payloads are tokenised into atoms, strings and lists."""
import re
import select
import socket
import subprocess
import time

_LITERAL = re.compile(rb"\{(\d+)\+?\}\r\n$")


class ImapError(Exception):
    pass


def tokenize(data):
    """Parses an IMAP response tail into atoms (str), strings (Str) and lists."""
    pos = 0
    stack = [[]]
    while pos < len(data):
        ch = data[pos:pos + 1]
        if ch == b" ":
            pos += 1
        elif ch == b"(":
            stack.append([])
            pos += 1
        elif ch == b")":
            inner = stack.pop()
            stack[-1].append(inner)
            pos += 1
        elif ch == b'"':
            out = bytearray()
            pos += 1
            while data[pos:pos + 1] != b'"':
                if data[pos:pos + 1] == b"\\":
                    pos += 1
                out += data[pos:pos + 1]
                pos += 1
            pos += 1
            stack[-1].append(Str(out.decode()))
        elif ch == b"{":
            end = data.index(b"}", pos)
            n = int(data[pos + 1:end].rstrip(b"+"))
            start = end + 3  # "}\r\n"
            stack[-1].append(Str(data[start:start + n].decode()))
            pos = start + n
        else:
            m = re.compile(rb"[^ ()]+").match(data, pos)
            stack[-1].append(m.group(0).decode())
            pos = m.end()
    if len(stack) != 1:
        raise ImapError("unbalanced parentheses in %r" % data)
    return stack[0]


class Str(str):
    """A quoted string or literal, as opposed to an atom."""


class Client:
    def __init__(self, sock=None, proc=None, timeout=30):
        self.sock, self.proc = sock, proc
        self.buf = b""
        self.timeout = timeout
        self.tagn = 0
        self.greeting = self.read_response()

    @classmethod
    def connect(cls, port, user, password, timeout=30):
        c = cls(sock=socket.create_connection(("127.0.0.1", port), timeout=timeout),
                timeout=timeout)
        status, text, _ = c.command("LOGIN %s %s" % (user, password))
        if status != "OK":
            raise ImapError("login failed: %s" % text)
        return c

    @classmethod
    def tunnel(cls, shell_command, timeout=30):
        proc = subprocess.Popen(["/bin/sh", "-c", shell_command], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        return cls(proc=proc, timeout=timeout)

    # ---- raw I/O --------------------------------------------------------------
    def _fileno(self):
        return self.sock.fileno() if self.sock else self.proc.stdout.fileno()

    def _recv(self, deadline):
        wait = deadline - time.monotonic()
        if wait <= 0:
            raise TimeoutError("no data from server")
        r, _, _ = select.select([self._fileno()], [], [], wait)
        if not r:
            raise TimeoutError("no data from server")
        data = self.sock.recv(65536) if self.sock else \
            __import__("os").read(self.proc.stdout.fileno(), 65536)
        if not data:
            raise ConnectionError("server closed the connection")
        self.buf += data

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        if self.sock:
            self.sock.sendall(data)
        else:
            self.proc.stdin.write(data)
            self.proc.stdin.flush()

    def read_response(self, timeout=None):
        """One response: a line with its literals, CRLF stripped."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        out = b""
        while True:
            while b"\r\n" not in self.buf:
                self._recv(deadline)
            i = self.buf.index(b"\r\n") + 2
            line, self.buf = self.buf[:i], self.buf[i:]
            m = _LITERAL.search(line)
            if not m:
                return out + line[:-2]
            n = int(m.group(1))
            while len(self.buf) < n:
                self._recv(deadline)
            out += line + self.buf[:n]
            self.buf = self.buf[n:]

    def next_tag(self):
        self.tagn += 1
        return "x%d" % self.tagn

    def command(self, line, literal=None):
        """Sends a command; returns (status, text, [untagged responses as bytes])."""
        tag = self.next_tag()
        if literal is not None:
            self.send("%s %s {%d+}\r\n" % (tag, line, len(literal)))
            self.send(literal + b"\r\n")
        else:
            self.send("%s %s\r\n" % (tag, line))
        return self.collect(tag)

    def collect(self, tag):
        untagged = []
        while True:
            resp = self.read_response()
            if resp.startswith(tag.encode() + b" "):
                status, _, text = resp[len(tag) + 1:].decode(errors="replace").partition(" ")
                return status, text, untagged
            untagged.append(resp)

    def close(self):
        try:
            if self.sock:
                self.sock.close()
            else:
                self.proc.stdin.close()
                self.proc.wait(10)
                self.proc.stdout.close()
                self.proc.stderr.close()
        except Exception:
            pass


class Report:
    """The X-REPLICATE responses of one CHANGES/POSITION reply or WATCH batch."""

    def __init__(self, untagged):
        self.lines = []
        for u in untagged:
            if u.startswith(b"* XREPLICATE "):
                self.lines.append(tokenize(u[len(b"* XREPLICATE "):]))
        pos = [t for t in self.lines if t[0] == "POSITION"]
        self.position = pos[-1][1] if pos else None

    def of(self, kind, guid=None):
        return [t for t in self.lines if t[0] == kind and (guid is None or t[1] == guid)]

    def mailbox_events(self):
        return [(t[2], t[1], list(t[3:])) for t in self.of("MAILBOX")]

    def status(self, name):
        for t in self.of("STATUS"):
            if t[2] == name:
                d = t[3]
                return {"guid": t[1], "UIDVALIDITY": int(d[1]), "UIDNEXT": int(d[3]),
                        "HIGHESTMODSEQ": int(d[5]), "subscribed": "\\Subscribed" in t[4]}
        return None

    def kinds(self):
        return [t[0] for t in self.lines]


def uidset(s):
    """Expands a UID sequence-set ("1:3,7") into a list."""
    out = []
    for part in s.split(","):
        a, _, b = part.partition(":")
        out.extend(range(int(a), int(b or a) + 1))
    return out
