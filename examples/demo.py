"""The README demo: two throwaway local mail stores (Dovecot's imap binary in tunnel mode,
no daemon), one seeded with a few hundred messages in nested folders, synced both ways,
then changed on both sides and synced again."""
import imaplib
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tests.fixture import imapcheck as ic  # noqa: E402
from tests.fixture.dovecot import Dovecot  # noqa: E402

FOLDERS = ["INBOX", "Archive", "Archive.2025", "Archive.2026", "Projects",
           "Projects.twinbox", "Caf&AOk-"]


def tunnel(dv):
    # Dovecot logs each session on stderr; the demo's own reads need not show that.
    return imaplib.IMAP4_stream(dv.tunnel_command("demo") + " 2>/dev/null")


def seed(dv, per_folder=50):
    c = tunnel(dv)
    n = 0
    for f in FOLDERS:
        if f != "INBOX":
            c.create(ic.quote(f))
        for i in range(per_folder):
            msg, day = ic.make_message(n, size=1500, seed=7, mailbox=f)
            ic.append(c, f, msg, flags=("\\Seen",) if i % 3 else (), date=day)
            n += 1
    c.logout()
    return n


def show(title, a, b):
    print(f"\n== {title}")
    print(f"{'mailbox':24} {'A msgs':>7} {'A seen':>7} {'B msgs':>7} {'B seen':>7}")
    rows = {}
    for side, dv in ((0, a), (1, b)):
        c = tunnel(dv)
        sep = ic.separator(c)
        for name in ic.list_mailboxes(c, selectable_only=True):
            msgs = ic.fetch_all(c, name)
            seen = sum(1 for m in msgs if "\\Seen" in m["flags"])
            rows.setdefault(name.replace(sep, "/"), [0, 0, 0, 0])[2 * side:2 * side + 2] = \
                [len(msgs), seen]
        c.logout()
    for name in sorted(rows):
        r = rows[name]
        print(f"{name:24} {r[0]:7} {r[1]:7} {r[2]:7} {r[3]:7}")


def change_both(a, b):
    c = tunnel(a)
    c.select("INBOX")
    c.uid("STORE", "1:10", "+FLAGS", "(\\Flagged)")
    c.uid("STORE", "11:20", "+FLAGS", "(\\Deleted)")
    c.expunge()
    c.logout()
    c = tunnel(b)
    msg, day = ic.make_message(9999, seed=8, mailbox="Projects")
    ic.append(c, "Projects/twinbox", msg, date=day)
    c.create(ic.quote("Notes"))
    c.select(ic.quote("Archive/2025"))
    c.uid("STORE", "1:*", "-FLAGS", "(\\Seen)")
    c.logout()
    print("\nA: flagged 10 and expunged 10 messages in INBOX")
    print("B: new message in Projects/twinbox, new folder Notes, Archive/2025 marked unread")


def main():
    # demo.py TWINBOX [--dovecot 2.4 PLUGIN_DIR]: Debian's Dovecot 2.3 unless told to use
    # the 2.4 that the test suite builds, with the plugin built against it.
    twinbox = os.path.abspath(sys.argv[1])
    version = "2.3"
    # Both stores load the X-REPLICATE plugin when the build made it (dovecot-dev present).
    pdir = os.path.join(os.path.dirname(twinbox), "src", "dovecot")
    if sys.argv[2:3] == ["--dovecot"]:
        version, pdir = sys.argv[3], os.path.abspath(sys.argv[4])
    xr = {}
    if os.path.exists(os.path.join(pdir, "lib95_imap_xreplicate_plugin.so")):
        xr = dict(plugin_dir=pdir, extra_imap_plugins=["imap_xreplicate"])
    a = Dovecot(users={"demo": "demo"}, version=version, **xr)
    b = Dovecot(users={"demo": "demo"}, separator="/", version=version, **xr)
    tmp = tempfile.TemporaryDirectory()
    try:
        n = seed(a)
        cfg = os.path.join(tmp.name, "config")
        with open(cfg, "w") as f:
            f.write(f"[account A]\ntype = tunnel\ncommand = {a.tunnel_command('demo')}\n\n"
                    f"[account B]\ntype = tunnel\ncommand = {b.tunnel_command('demo')}\n\n"
                    f"[pair demo]\na = A\nb = B\nstate = {tmp.name}/demo.db\n")
        print(f"Dovecot {a.install.full_version()} ({a.install.imap})")
        print(f"store A: {a.mail_dir('demo')} ({n} messages, separator '.')")
        print(f"store B: {b.mail_dir('demo')} (empty, separator '/')")
        print(f"config: {cfg}")
        print("X-REPLICATE plugin: " + ("loaded in both stores (the first sync takes a "
                                        "position, the second asks for changes since it)"
                                        if xr else "not built (install dovecot-dev)") + "\n")
        for step in ("first sync", None, "second sync"):
            if step is None:
                change_both(a, b)
                continue
            print(f"\n$ twinbox -c {cfg} sync")
            r = subprocess.run([twinbox, "-c", cfg, "sync"], timeout=300)
            if r.returncode != 0:
                sys.exit(r.returncode)
            show(f"after the {step}", a, b)
        print("\n$ twinbox probe tunnel:... (store B)")
        subprocess.run([twinbox, "probe", "tunnel:" + b.tunnel_command("demo")], timeout=60)
    finally:
        a.stop()
        b.stop()
        tmp.cleanup()


if __name__ == "__main__":
    main()
