/* SQLite state: schema, permissions, lock, mailbox and message rows. */
#include "tap.h"
#include "twinbox/state.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

int main(void)
{
    char dir[] = "/tmp/tb-state-XXXXXX";
    if (!mkdtemp(dir))
        return 1;
    char path[256], err[512];
    snprintf(path, sizeof(path), "%s/p.db", dir);
    struct tb_state *st;
    CHECK(tb_state_open(path, &st, err, sizeof(err)) == 0, "create (%s)", err);
    struct stat sb;
    CHECK(stat(path, &sb) == 0 && (sb.st_mode & 077) == 0, "database is private (0600)");

    struct tb_state_mailbox mb = {0};
    mb.name = "Archive/2025";
    mb.side[0] = (struct tb_state_side){7, 10, 99};
    mb.side[1] = (struct tb_state_side){8, 11, 5000000000ull};
    CHECK(tb_state_begin(st) == 0 && tb_state_mailbox_put(st, &mb) == 0 && mb.id > 0,
          "insert mailbox");
    CHECK(tb_state_msg_put(st, mb.id, 1, 2, "\\Seen") == 0 &&
              tb_state_msg_put(st, mb.id, 3, 4, "") == 0 && tb_state_commit(st) == 0,
          "insert messages");
    /* UIDs are never reused within a UIDVALIDITY: a pair naming a taken uid b replaces the
     * stale pair instead of leaving two rows for one message. */
    CHECK(tb_state_msg_put(st, mb.id, 5, 4, "") == 0, "re-pairing uid b 4");
    tb_state_close(st);

    CHECK(tb_state_open(path, &st, err, sizeof(err)) == 0, "reopen");
    struct tb_state_mailbox *v;
    size_t n;
    CHECK(tb_state_mailboxes(st, &v, &n) == 0 && n == 1 && strcmp(v[0].name, "Archive/2025") == 0 &&
              v[0].side[1].highestmodseq == 5000000000ull && v[0].side[0].uidnext == 10,
          "mailbox row round-trips (64-bit modseq)");
    tb_state_mailboxes_free(v, n);
    struct tb_state_msg *m;
    CHECK(tb_state_messages(st, mb.id, &m, &n) == 0 && n == 2 && m[0].uid[0] == 1 &&
              m[0].uid[1] == 2 && strcmp(m[0].flags, "\\Seen") == 0 && m[1].uid[0] == 5,
          "message rows sorted by uid a; the stale pair (3,4) is gone");
    tb_state_messages_free(m, n);
    struct tb_state_intent *in;
    CHECK(tb_state_intent_add(st, "Archive/2025", "dead-run", 1, "<m@x>", 100, 7) == 0,
          "a crashed run's intent");
    CHECK(tb_state_mailbox_rename(st, mb.id, "Old") == 0, "rename");
    CHECK(tb_state_intents(st, "Old", "this-run", &in, &n) == 0 && n == 1 &&
              strcmp(in[0].ident, "<m@x>") == 0,
          "its intents follow a renamed mailbox");
    tb_state_intents_free(in, n);
    CHECK(tb_state_msg_delete(st, mb.id, 1) == 0, "delete one message");
    CHECK(tb_state_messages(st, mb.id, &m, &n) == 0 && n == 1, "one left");
    tb_state_messages_free(m, n);
    CHECK(tb_state_mailbox_delete(st, mb.id) == 0, "delete mailbox");
    CHECK(tb_state_messages(st, mb.id, &m, &n) == 0 && n == 0, "its messages went with it");
    tb_state_messages_free(m, n);
    CHECK(tb_state_intents(st, "Old", "this-run", &in, &n) == 0 && n == 0,
          "and its intents: a new mailbox of that name starts clean");
    tb_state_intents_free(in, n);
    CHECK(tb_state_xrep_set(st, 0, "TOKEN-a") == 0 &&
              tb_state_xrep_mailbox_put(st, 0, "INBOX", 42) == 0,
          "an X-REPLICATE position with one mailbox number");
    char *tok = NULL;
    uint64_t hms = 0;
    CHECK(tb_state_xrep_token(st, 0, &tok) == 0 && tok && strcmp(tok, "TOKEN-a") == 0 &&
              tb_state_xrep_mailbox(st, 0, "INBOX", &hms) == 0 && hms == 42,
          "read back");
    free(tok);
    CHECK(tb_state_xrep_token(st, 1, &tok) == 0 && tok == NULL, "side b has none");
    CHECK(tb_state_xrep_set(st, 0, "TOKEN-a2") == 0 &&
              tb_state_xrep_mailbox(st, 0, "INBOX", &hms) == 0 && hms == 0,
          "a new position forgets the old one's numbers");
    CHECK(tb_state_xrep_set(st, 0, NULL) == 0 && tb_state_xrep_token(st, 0, &tok) == 0 &&
              tok == NULL,
          "cleared");
    tb_state_close(st);

    int fd;
    CHECK(tb_state_lock(path, &fd, err, sizeof(err)) == 0, "lock");
    pid_t pid = fork();
    if (pid == 0) {
        int fd2;
        char e2[256];
        _exit(tb_state_lock(path, &fd2, e2, sizeof(e2)) == 1 ? 0 : 1);
    }
    int status;
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "a second process finds it held");
    tb_state_unlock(fd);
    CHECK(tb_state_lock(path, &fd, err, sizeof(err)) == 0, "free again after unlock");
    tb_state_unlock(fd);

    /* A database from a newer twinbox is refused, not misread. */
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "%s/new.db", dir);
    CHECK(tb_state_open(cmd, &st, err, sizeof(err)) == 0, "second db");
    tb_state_close(st);
    snprintf(cmd, sizeof(cmd), "sqlite3 %s/new.db 'PRAGMA user_version=9' 2>/dev/null", dir);
    if (system(cmd) == 0) {
        snprintf(cmd, sizeof(cmd), "%s/new.db", dir);
        CHECK(tb_state_open(cmd, &st, err, sizeof(err)) == -1 && strstr(err, "version 9"),
              "unknown schema version refused (%s)", err);
    }
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd) != 0)
        return 1;
    return tap_done();
}
