"""Runs every test against each given build directory and prints one summary line.

Unit tests are the C TAP programs (build/tests/test_*); each test point counts.
Integration tests are Python unittest modules under tests/integration (and tests/plugin
when the X-REPLICATE plugin was built); each test method counts. With --dc24 BUILD (the
plugin built against Dovecot 2.4, see tests/servers/dovecot24.sh) the modules in
DOVECOT_MODULES run once more against Dovecot 2.4 (TWINBOX_DOVECOT_VERSION=2.4); their
test names say which Dovecot each run used, "[dovecot 2.4.1]". A unit program that
crashes or prints a sanitizer report counts as a failure. Fuzz targets (--fuzz BUILD, the
libFuzzer build of tests/fuzz) run over their seed corpus plus a bounded number of generated
inputs; each target counts once.

On a machine with more than one core the builds after the first run their unit and
integration tests in a child runner alongside the first build's (--serial: one after the
other); the child's lines are printed when it ends and its counts join the summary.
"""
import concurrent.futures
import fnmatch
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAN_ENV = {
    "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0:exitcode=99",
    "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1:exitcode=98",
    "LSAN_OPTIONS": "exitcode=97",
}
SAN_RE = re.compile(r"(AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|runtime error:)")


class Counter:
    def __init__(self):
        self.passed = 0
        self.failed = 0
        self.failures = []

    def ok(self, name):
        self.passed += 1
        print(f"ok - {name}", flush=True)

    def fail(self, name, detail=""):
        self.failed += 1
        self.failures.append(name)
        print(f"FAIL - {name}", flush=True)
        if detail:
            print("    " + detail.strip().replace("\n", "\n    "), flush=True)


def run_unit(build, counter):
    tdir = os.path.join(ROOT, build, "tests")
    names = sorted(n for n in os.listdir(tdir) if n.startswith("test_")
                   and os.path.isfile(os.path.join(tdir, n))
                   and os.access(os.path.join(tdir, n), os.X_OK))
    for n in names:
        env = dict(os.environ, **SAN_ENV)
        try:
            p = subprocess.run([os.path.join(tdir, n)], capture_output=True, text=True,
                               env=env, timeout=600, errors="replace")
        except subprocess.TimeoutExpired:
            counter.fail(f"{build}: {n}", "timed out after 600 s")
            continue
        points = 0
        for line in p.stdout.splitlines():
            m = re.match(r"(not ok|ok) \d+ - (.*)", line)
            if not m:
                continue
            points += 1
            name = f"{build}: {n}: {m.group(2)}"
            if m.group(1) == "ok":
                counter.ok(name)
            else:
                counter.fail(name)
        if p.returncode != 0 and points == 0 or SAN_RE.search(p.stderr) or p.returncode > 1:
            counter.fail(f"{build}: {n}: exit status {p.returncode}", p.stderr[-3000:])


# Generated inputs per fuzz target and their size limit, sized so that all targets take about
# a minute on two cores (seed corpus included); other targets get the default.
FUZZ_RUNS = {
    "fuzz_response": (60000, 4096),
    "fuzz_xrep": (200000, 2048),
    "fuzz_uidset": (500000, 256),
    "fuzz_config": (400000, 2048),
    "fuzz_xrep_token": (600000, 2048),
}
FUZZ_DEFAULT = (30000, 4096)


def _fuzz_one(build, name, scratch):
    exe = os.path.join(ROOT, build, "tests", "fuzz", name)
    runs, max_len = FUZZ_RUNS.get(name, FUZZ_DEFAULT)
    seeds = os.path.join(ROOT, "tests", "fuzz", "corpus", name)
    art = os.path.join(ROOT, build, "fuzz-artifacts", name)
    os.makedirs(art, exist_ok=True)
    work = os.path.join(scratch, name)
    os.makedirs(work)
    env = dict(os.environ, **SAN_ENV)
    env["LSAN_OPTIONS"] = "suppressions=%s:print_suppressions=0" % os.path.join(
        ROOT, "tests", "fuzz", "lsan.supp")
    # A fixed seed makes a run repeatable; TWINBOX_FUZZ_SEED explores elsewhere.
    seed = os.environ.get("TWINBOX_FUZZ_SEED", "1")
    cmd = [exe, f"-runs={runs}", f"-max_len={max_len}", "-timeout=20", "-rss_limit_mb=2048",
           f"-seed={seed}", "-max_total_time=60", "-print_final_stats=1",
           f"-artifact_prefix={art}/", work] + ([seeds] if os.path.isdir(seeds) else [])
    t0 = time.monotonic()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300,
                           errors="replace")
        out, rc = p.stderr + p.stdout, p.returncode
    except subprocess.TimeoutExpired:
        out, rc = "timed out after 300 s", -1
    return name, rc, out, time.monotonic() - t0


def run_fuzz(build, counter, pattern):
    fdir = os.path.join(ROOT, build, "tests", "fuzz")
    names = sorted(n for n in os.listdir(fdir) if n.startswith("fuzz_")
                   and os.path.isfile(os.path.join(fdir, n))
                   and os.access(os.path.join(fdir, n), os.X_OK)) if os.path.isdir(fdir) else []
    if pattern:
        names = [n for n in names if fnmatch.fnmatch(n, pattern if "*" in pattern
                                                     else f"*{pattern}*")]
    if not names:
        if not pattern:
            counter.fail(f"{build}: fuzz targets", f"none built in {fdir}")
        return
    scratch = tempfile.mkdtemp(prefix="twinbox-fuzz-")
    try:
        with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 2) as pool:
            jobs = [pool.submit(_fuzz_one, build, n, scratch) for n in names]
            for job in jobs:
                name, rc, out, secs = job.result()
                m = re.search(r"stat::number_of_executed_units: (\d+)", out)
                runs = m.group(1) if m else "?"
                label = f"{build}: fuzz: {name}"
                crash = re.search(r"Test unit written to (\S+)", out)
                if rc == 0 and not SAN_RE.search(out) and m:
                    counter.ok(f"{label} ({runs} runs, {secs:.1f}s)")
                else:
                    detail = out[-3000:]
                    if crash:
                        detail += f"\nreproducer: {crash.group(1)}"
                    counter.fail(f"{label}: exit status {rc}", detail)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


# The modules that run against each Dovecot version (the plugin's protocol tests, the
# X-REPLICATE integration tests, the crash tests and replica mode): names are prefixes of
# test ids.
DOVECOT_MODULES = ("tests.plugin.", "tests.integration.test_xreplicate.",
                   "tests.integration.test_xreplicate_safety.",
                   "tests.integration.test_crash.", "tests.integration.test_replica.",
                   # NOTIFY push on 2.4 too (all of test_watch_push runs in the first pass)
                   "tests.integration.test_watch_push.NotifyPushTest.")


def _versioned(test):
    return test.id().startswith(DOVECOT_MODULES)


def _dovecot_label():
    """"[dovecot 2.4.1] ": the version the fixture starts by default in this process."""
    from tests.fixture import dovecot
    return "[dovecot %s] " % dovecot.INSTALLS[dovecot.default_version()].full_version()


class _Result(unittest.TestResult):
    def __init__(self, build, counter):
        super().__init__()
        self.build = build
        self.counter = counter
        self.t0 = 0
        self.label = _dovecot_label()

    def startTest(self, test):
        super().startTest(test)
        self.t0 = time.monotonic()

    def _name(self, test):
        label = self.label if _versioned(test) else ""
        return f"{self.build}: {label}{test.id().replace('tests.', '', 1)}"

    def addSuccess(self, test):
        self.counter.ok(self._name(test) + f" ({time.monotonic() - self.t0:.1f}s)")

    def addFailure(self, test, err):
        self.counter.fail(self._name(test), self._exc_info_to_string(err, test))

    def addError(self, test, err):
        self.counter.fail(self._name(test), self._exc_info_to_string(err, test))

    def addSkip(self, test, reason):
        # A skipped test did not run: it is reported but not counted as passed.
        print(f"skip - {self._name(test)}: {reason}", flush=True)


def _flatten(suite):
    for t in suite:
        if isinstance(t, unittest.TestSuite):
            yield from _flatten(t)
        else:
            yield t


def run_integration(build, counter, pattern, plugin_tests, only_versioned=False):
    os.environ["TWINBOX_BUILD"] = os.path.join(ROOT, build)
    os.environ.update(SAN_ENV)
    loader = unittest.TestLoader()
    if pattern:
        loader.testNamePatterns = [pattern if "*" in pattern else f"*{pattern}*"]
    suite = unittest.TestSuite()
    # tests/plugin speaks to Dovecot alone (no twinbox binary): once is enough.
    for d in ("tests/integration",) + (("tests/plugin",) if plugin_tests else ()):
        if os.path.isdir(os.path.join(ROOT, d)):
            suite.addTests(loader.discover(os.path.join(ROOT, d), top_level_dir=ROOT))
    if only_versioned:
        suite = unittest.TestSuite(t for t in _flatten(suite) if _versioned(t))
    suite.run(_Result(build, counter))


def run_dovecot24(build, dc24_build, counter, pattern):
    """The DOVECOT_MODULES once more, against Dovecot 2.4 with the plugin built for it."""
    from tests.fixture import dovecot
    pdir = os.path.join(ROOT, dc24_build, "src", "dovecot")
    if not dovecot.available("2.4"):
        counter.fail(f"{build}: [dovecot 2.4] tests", "Dovecot 2.4 is not built in "
                     f"{dovecot.DOVECOT24_DIR} (tests/servers/dovecot24.sh)")
        return
    if not os.path.exists(os.path.join(pdir, "lib95_imap_xreplicate_plugin.so")):
        counter.fail(f"{build}: [dovecot 2.4] tests", f"no plugin built in {pdir}")
        return
    saved = {k: os.environ.get(k) for k in ("TWINBOX_DOVECOT_VERSION", "TWINBOX_PLUGIN_DIR")}
    os.environ["TWINBOX_DOVECOT_VERSION"] = "2.4"
    os.environ["TWINBOX_PLUGIN_DIR"] = pdir
    try:
        run_integration(build, counter, pattern, plugin_tests=True, only_versioned=True)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def start_pass(build, pattern):
    """The unit and integration tests of one more build in a child runner (--pass-of), its
    output kept in a file until merge_pass: on two cores the passes of two builds overlap
    (a pass keeps about two thirds of one core busy: servers, fixtures, waits)."""
    out = tempfile.TemporaryFile(mode="w+", errors="replace")
    cmd = [sys.executable, os.path.abspath(__file__), "--pass-of", build]
    if pattern:
        cmd += ["-k", pattern]
    print(f"# {build}: unit and integration tests run alongside, reported when they end",
          flush=True)
    return build, subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT), out


# How long the runner waits for a child pass once its own tests are done: a pass that hangs
# is stopped and counted as failed, with what it printed so far, not left to CI's timeout.
PASS_WAIT = int(os.environ.get("TWINBOX_PASS_WAIT", "3600"))


def merge_pass(child, counter):
    """Prints a child pass's report and adds its counts (its last line) to counter; a pass
    still running PASS_WAIT seconds on is stopped, what it printed so far kept."""
    build, proc, out = child
    try:
        rc = proc.wait(timeout=PASS_WAIT)
        why = f"the runner exited with status {rc} before its summary line"
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        why = f"still running {PASS_WAIT} s after the other passes ended: stopped"
    out.seek(0)
    lines = out.read().splitlines()
    out.close()
    m = re.fullmatch(r"(\d+) passed, (\d+) failed", lines[-1] if lines else "")
    for line in lines[:-1] if m else lines:
        if line.startswith("FAIL - "):
            counter.failures.append(line[len("FAIL - "):])
        if not line or line.startswith(("failed:", "  ")) and not line.startswith("    "):
            continue  # the child's own list of failures: the merged one is printed at the end
        print(line, flush=True)
    if not m:
        counter.fail(f"{build}: test pass", why + " (its lines so far are above)")
        return
    counter.passed += int(m.group(1))
    counter.failed += int(m.group(2))


def main():
    args = sys.argv[1:]
    pattern = None
    if "-k" in args:
        i = args.index("-k")
        pattern = args[i + 1]
        del args[i:i + 2]
    serial = "--serial" in args
    if serial:
        args.remove("--serial")
    pass_of = None
    if "--pass-of" in args:  # a child of start_pass: one build's unit and integration tests
        i = args.index("--pass-of")
        pass_of = args[i + 1]
        del args[i:i + 2]
    fuzz_builds = []
    while "--fuzz" in args:
        i = args.index("--fuzz")
        fuzz_builds.append(args[i + 1])
        del args[i:i + 2]
    dc24_build = None
    if "--dc24" in args:
        i = args.index("--dc24")
        dc24_build = args[i + 1]
        del args[i:i + 2]
    builds = args or ["build"]
    sys.path.insert(0, ROOT)
    counter = Counter()
    # The X-REPLICATE plugin is loaded into Dovecot from the first build that has it
    # (a sanitized build leaves it out: Dovecot cannot load an instrumented module).
    for b in builds:
        pdir = os.path.join(ROOT, b, "src", "dovecot")
        if "TWINBOX_PLUGIN_DIR" not in os.environ and os.path.exists(
                os.path.join(pdir, "lib95_imap_xreplicate_plugin.so")):
            os.environ["TWINBOX_PLUGIN_DIR"] = pdir
    # Tests that pair versions (2.3 with 2.4) find each version's plugin here.
    if "TWINBOX_PLUGIN_DIR" in os.environ:
        os.environ.setdefault("TWINBOX_PLUGIN_DIR_23", os.environ["TWINBOX_PLUGIN_DIR"])
    if dc24_build:
        os.environ.setdefault("TWINBOX_PLUGIN_DIR_24",
                              os.path.join(ROOT, dc24_build, "src", "dovecot"))
    if pass_of:
        builds = [pass_of]
    children = []
    if not serial and len(builds) > 1 and (os.cpu_count() or 1) > 1:
        children = [start_pass(b, pattern) for b in builds[1:]]
        builds = builds[:1]
    try:
        for i, b in enumerate(builds):
            if not pattern:
                run_unit(b, counter)
            # tests/plugin speaks to Dovecot alone: in the first build's pass only.
            run_integration(b, counter, pattern, plugin_tests=(i == 0 and not pass_of))
        if dc24_build:
            run_dovecot24(builds[0], dc24_build, counter, pattern)
        for b in fuzz_builds:
            run_fuzz(b, counter, pattern)
        for child in children:  # the longer ASan pass is still running by then
            merge_pass(child, counter)
        children = []
    finally:
        for _, proc, _ in children:  # interrupted: no pass outlives the runner
            proc.kill()
            proc.wait()
    if counter.failures:
        print("\nfailed:\n  " + "\n  ".join(counter.failures))
    print(f"{counter.passed} passed, {counter.failed} failed", flush=True)
    sys.exit(1 if counter.failed else 0)


if __name__ == "__main__":
    main()
