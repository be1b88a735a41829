/* Skipped messages: see tb_state_skip in twinbox/state.h. */
#include "twinbox/state.h"

#include "state/state_internal.h"
#include "util/buf.h"

#include <stdlib.h>
#include <string.h>

int tb_state_skip_put(struct tb_state *st, const struct tb_state_skip *k)
{
    sqlite3_stmt *s = tb_state_stmt(
        st, "INSERT INTO skipped (mailbox, side, uidvalidity, uid, size, msgid, flags, reason,"
            " permanent, attempts, run, first, last) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,1,?10,"
            " strftime('%s','now'), strftime('%s','now'))"
            " ON CONFLICT (mailbox, side, uid) DO UPDATE SET uidvalidity=?3, size=?5, msgid=?6,"
            " flags=?7, reason=?8, permanent=?9, attempts=attempts+1, run=?10,"
            " last=strftime('%s','now')");
    if (!s)
        return -1;
    sqlite3_bind_text(s, 1, k->mailbox, -1, SQLITE_STATIC);
    sqlite3_bind_int(s, 2, k->side);
    sqlite3_bind_int64(s, 3, k->uidvalidity);
    sqlite3_bind_int64(s, 4, k->uid);
    sqlite3_bind_int64(s, 5, k->size);
    sqlite3_bind_text(s, 6, k->msgid ? k->msgid : "", -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 7, k->flags ? k->flags : "", -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 8, k->reason ? k->reason : "", -1, SQLITE_STATIC);
    sqlite3_bind_int(s, 9, k->permanent);
    sqlite3_bind_text(s, 10, k->run ? k->run : "", -1, SQLITE_STATIC);
    return tb_state_run(st, s);
}

static char *col_text(sqlite3_stmt *s, int i)
{
    const unsigned char *t = sqlite3_column_text(s, i);
    return tb_xstrdup(t ? (const char *)t : "");
}

static void fill_skip(sqlite3_stmt *s, void *elem)
{
    struct tb_state_skip *k = elem;
    k->mailbox = col_text(s, 0);
    k->side = sqlite3_column_int(s, 1);
    k->uidvalidity = (uint32_t)sqlite3_column_int64(s, 2);
    k->uid = (uint32_t)sqlite3_column_int64(s, 3);
    k->size = (uint32_t)sqlite3_column_int64(s, 4);
    k->msgid = col_text(s, 5);
    k->flags = col_text(s, 6);
    k->reason = col_text(s, 7);
    k->permanent = sqlite3_column_int(s, 8) != 0;
    k->attempts = sqlite3_column_int(s, 9);
    k->run = col_text(s, 10);
    k->first = sqlite3_column_int64(s, 11);
    k->last = sqlite3_column_int64(s, 12);
}

/* Two statements, not one "?1 IS NULL OR mailbox = ?1": that form cannot use the primary
 * key (mailbox, side, uid) and read the whole table for every mailbox of a run. */
#define SKIP_COLUMNS                                                                               \
    "SELECT mailbox, side, uidvalidity, uid, size, msgid, flags, reason, permanent, attempts,"     \
    " run, first, last FROM skipped"

int tb_state_skips(struct tb_state *st, const char *mailbox, struct tb_state_skip **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    sqlite3_stmt *s = mailbox
                          ? tb_state_stmt(st, SKIP_COLUMNS " WHERE mailbox = ?1 ORDER BY side, uid")
                          : tb_state_stmt(st, SKIP_COLUMNS " ORDER BY mailbox, side, uid");
    if (!s)
        return -1;
    if (mailbox)
        sqlite3_bind_text(s, 1, mailbox, -1, SQLITE_STATIC);
    void *v;
    int r = tb_state_collect(st, s, sizeof(**out), fill_skip, &v, n);
    *out = v;
    return r;
}

int tb_state_skips_exist(struct tb_state *st, bool *any)
{
    *any = true; /* when unsure, the caller looks */
    sqlite3_stmt *s = tb_state_stmt(st, "SELECT EXISTS (SELECT 1 FROM skipped)");
    if (!s)
        return -1;
    int r = sqlite3_step(s);
    if (r == SQLITE_ROW)
        *any = sqlite3_column_int(s, 0) != 0;
    tb_state_done(st, s);
    return r == SQLITE_ROW ? 0 : -1;
}

void tb_state_skips_free(struct tb_state_skip *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(v[i].mailbox);
        free(v[i].msgid);
        free(v[i].flags);
        free(v[i].reason);
        free(v[i].run);
    }
    free(v);
}

int tb_state_skip_attempts(struct tb_state *st, const char *mailbox, int side, uint32_t uid,
                           int *attempts)
{
    *attempts = 0;
    sqlite3_stmt *s =
        tb_state_stmt(st, "SELECT attempts FROM skipped WHERE mailbox=?1 AND side=?2 AND uid=?3");
    if (!s)
        return -1;
    sqlite3_bind_text(s, 1, mailbox, -1, SQLITE_STATIC);
    sqlite3_bind_int(s, 2, side);
    sqlite3_bind_int64(s, 3, uid);
    int r = sqlite3_step(s);
    if (r == SQLITE_ROW)
        *attempts = sqlite3_column_int(s, 0);
    tb_state_done(st, s);
    return r == SQLITE_ROW || r == SQLITE_DONE ? 0 : -1;
}

/* sql (static storage) with ?1 = mailbox, ?2 = side, ?3 = n. */
static int exec_row(struct tb_state *st, const char *sql, const char *mailbox, int side, uint32_t n)
{
    sqlite3_stmt *s = tb_state_stmt(st, sql);
    if (!s)
        return -1;
    sqlite3_bind_text(s, 1, mailbox, -1, SQLITE_STATIC);
    sqlite3_bind_int(s, 2, side);
    sqlite3_bind_int64(s, 3, n);
    return tb_state_run(st, s);
}

int tb_state_skip_drop(struct tb_state *st, const char *mailbox, int side, uint32_t uid)
{
    return exec_row(st, "DELETE FROM skipped WHERE mailbox=?1 AND side=?2 AND uid=?3", mailbox,
                    side, uid);
}

int tb_state_skips_stale(struct tb_state *st, const char *mailbox, int side, uint32_t uidvalidity)
{
    return exec_row(st, "DELETE FROM skipped WHERE mailbox=?1 AND side=?2 AND uidvalidity<>?3",
                    mailbox, side, uidvalidity);
}
