"""Shared helpers for integration tests: locating and running the built binaries."""
import json
import os
import re
import subprocess
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SAN_RE = re.compile(r"(AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|runtime error:)")


def build_dir():
    return os.environ.get("TWINBOX_BUILD", os.path.join(ROOT, "build"))


def binary(name):
    path = os.path.join(build_dir(), name)
    if not os.path.exists(path):
        path = os.path.join(build_dir(), "tests", name)
    return path


class Run:
    def __init__(self, p):
        self.code = p.returncode
        self.out = p.stdout
        self.err = p.stderr

    def json(self):
        return json.loads(self.out)

    def __repr__(self):
        return f"exit {self.code}\nstdout: {self.out[-2000:]}\nstderr: {self.err[-2000:]}"


def run(argv, env=None, timeout=120, input=None):
    """Runs a twinbox binary; a sanitizer report is a test failure whatever the exit code."""
    e = dict(os.environ)
    e.update(env or {})
    p = subprocess.run(argv, capture_output=True, text=True, env=e, timeout=timeout,
                       input=input, errors="replace",
                       stdin=None if input is not None else subprocess.DEVNULL)
    r = Run(p)
    if SAN_RE.search(p.stderr):
        raise AssertionError(f"sanitizer report:\n{p.stderr[-4000:]}")
    return r


def twinbox(*args, **kw):
    return run([binary("twinbox"), *args], **kw)


def tb_client(*args, **kw):
    return run([binary("tb-client"), *args], **kw)


class TestCase(unittest.TestCase):
    def assertOneLineError(self, r, *needles):
        lines = [l for l in r.err.splitlines() if l.strip()]
        self.assertNotEqual(r.code, 0, r)
        self.assertEqual(len(lines), 1, f"expected one error line: {r}")
        for n in needles:
            self.assertIn(n, lines[0], r)
