"""The README demo: two throwaway stores, seeded on one side, probed by twinbox."""
import imaplib
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tests.fixture.dovecot import Dovecot  # noqa: E402
from tests.fixture.imapcheck import make_message  # noqa: E402

FOLDERS = ["INBOX", "Archive", "Archive.2025", "Archive.2026", "Projects", "Projects.twinbox"]


def seed(dv, count_per_folder=50):
    c = imaplib.IMAP4_stream(dv.tunnel_command("demo"))
    n = 0
    for f in FOLDERS:
        if f != "INBOX":
            c.create(f)
        for i in range(count_per_folder):
            flags = "(\\Seen)" if i % 3 else "()"
            c.append(f, flags, None, make_message(n, size=1500, seed=7, mailbox=f))
            n += 1
    c.logout()
    return n


def main():
    twinbox = os.path.abspath(sys.argv[1])
    a = Dovecot(users={"demo": "demo"})
    b = Dovecot(users={"demo": "demo"})
    try:
        n = seed(a)
        print(f"== store A: {a.mail_dir('demo')} seeded with {n} messages in "
              f"{len(FOLDERS)} folders")
        print(f"== store B: {b.mail_dir('demo')} (empty)\n")
        for name, dv in (("A", a), ("B", b)):
            print(f"== twinbox probe tunnel:... (store {name})", flush=True)
            r = subprocess.run([twinbox, "probe", "tunnel:" + dv.tunnel_command("demo")],
                               timeout=120)
            if r.returncode != 0:
                sys.exit(r.returncode)
            print(flush=True)
        print("The sync engine (twinbox sync) arrives with the next milestone; this demo "
              "will then sync A and B both ways.")
    finally:
        a.stop()
        b.stop()


if __name__ == "__main__":
    main()
