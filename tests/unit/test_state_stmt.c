/* The state's statement cache (src/state/stmt.c): a statement in use is never reset under
 * its user, a cached one comes back reset, errors keep their text, and the per-run reads
 * that replaced per-mailbox queries (counts, skips) answer as the queries did. */
#include "state/state_internal.h"
#include "tap.h"
#include "twinbox/state.h"

#include <stdlib.h>
#include <unistd.h>

static const char *Q = "SELECT id, name FROM mailbox ORDER BY id";

static void fill(struct tb_state *st)
{
    CHECK(tb_state_begin(st) == 0, "begin");
    int ok = 1;
    for (int i = 0; i < 5; i++) {
        char n[16];
        snprintf(n, sizeof(n), "box%d", i);
        struct tb_state_mailbox mb = {.name = n};
        ok &= tb_state_mailbox_put(st, &mb) == 0 && mb.id == i + 1;
        ok &= tb_state_msg_put(st, mb.id, 1, 1, "") == 0;
        if (i % 2)
            ok &= tb_state_msg_put(st, mb.id, 2, 2, "\\Seen") == 0;
    }
    CHECK(ok && tb_state_commit(st) == 0, "five mailboxes, seven messages");
}

static void nested(struct tb_state *st)
{
    sqlite3_stmt *a = tb_state_stmt(st, Q);
    CHECK(a && sqlite3_step(a) == SQLITE_ROW && sqlite3_column_int(a, 0) == 1, "outer row 1");
    sqlite3_stmt *b = tb_state_stmt(st, Q);
    CHECK(b && b != a, "the same SQL while in use: a statement of its own");
    int nb = 0;
    while (b && sqlite3_step(b) == SQLITE_ROW)
        nb++;
    CHECK(nb == 5, "inner reads all rows (%d)", nb);
    tb_state_done(st, b);
    CHECK(sqlite3_step(a) == SQLITE_ROW && sqlite3_column_int(a, 0) == 2,
          "outer goes on at row 2: not reset under its user");
    tb_state_done(st, a);
    sqlite3_stmt *c = tb_state_stmt(st, Q);
    CHECK(c == a && sqlite3_step(c) == SQLITE_ROW && sqlite3_column_int(c, 0) == 1,
          "cached statement comes back reset");
    tb_state_done(st, c);
}

static void reads(struct tb_state *st)
{
    struct tb_state_count *cnt;
    size_t n;
    int ok = tb_state_message_counts(st, &cnt, &n) == 0 && n == 5;
    for (size_t i = 0; ok && i < n; i++)
        ok &= cnt[i].mailbox == (int64_t)i + 1 && cnt[i].n == (i % 2 ? 2u : 1u);
    CHECK(ok, "message counts of every mailbox in one read");
    free(cnt);
    bool any = true;
    CHECK(tb_state_skips_exist(st, &any) == 0 && !any, "no skipped rows");
    struct tb_state_skip k = {.mailbox = "box1", .side = 1, .uid = 7, .run = "r"};
    CHECK(tb_state_skip_put(st, &k) == 0, "skip in box1");
    k.mailbox = "box0";
    CHECK(tb_state_skip_put(st, &k) == 0, "skip in box0");
    CHECK(tb_state_skips_exist(st, &any) == 0 && any, "skipped rows exist");
    struct tb_state_skip *rows;
    CHECK(tb_state_skips(st, "box1", &rows, &n) == 0 && n == 1 &&
              strcmp(rows[0].mailbox, "box1") == 0,
          "one mailbox's skips");
    tb_state_skips_free(rows, n);
    CHECK(tb_state_skips(st, NULL, &rows, &n) == 0 && n == 2 &&
              strcmp(rows[0].mailbox, "box0") == 0,
          "all skips, ordered by mailbox");
    tb_state_skips_free(rows, n);
}

int main(void)
{
    char dir[] = "/tmp/tb-stmt-XXXXXX";
    if (!mkdtemp(dir))
        return 1;
    char path[256], err[512];
    snprintf(path, sizeof(path), "%s/p.db", dir);
    struct tb_state *st;
    CHECK(tb_state_open(path, &st, err, sizeof(err)) == 0, "open (%s)", err);
    fill(st);
    nested(st);
    reads(st);
    struct tb_state_mailbox dup = {.name = "box1"};
    CHECK(tb_state_mailbox_put(st, &dup) < 0 && strstr(tb_state_error(st), "UNIQUE"),
          "an error keeps its text after the statement went back (%s)", tb_state_error(st));
    sqlite3_stmt *d = tb_state_stmt(st, Q);
    CHECK(d && sqlite3_step(d) == SQLITE_ROW, "a statement left busy");
    tb_state_close(st); /* finalizes it: LeakSanitizer would report it otherwise */
    char side[300];
    const char *suffix[] = {"", "-wal", "-shm", ".lock"};
    for (size_t i = 0; i < 4; i++) {
        snprintf(side, sizeof(side), "%s%s", path, suffix[i]);
        unlink(side);
    }
    rmdir(dir);
    return tap_done();
}
