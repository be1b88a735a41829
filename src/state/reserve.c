/* Replica mode's UID reservations. Before a pass pins copies to UIDs, it records the highest
 * UID it may use in the mailbox; the row goes when the pass is recorded (every APPEND then
 * answered). A row of another run is a run that died with pinned APPENDs possibly still
 * queued at a server, which could land after the next run read the mailbox; the next run
 * first raises both sides' UIDNEXT past it (tb_eng_replica_fence), so none can land late. */
#include "state/state_internal.h"
#include "twinbox/state.h"
#include "util/buf.h"

#include <stdlib.h>

int tb_state_reserve_put(struct tb_state *st, const char *mailbox, const char *run, uint32_t uid)
{
    /* a dead run's higher reservation is kept: its fence is not raised yet */
    sqlite3_stmt *s =
        tb_state_stmt(st, "INSERT INTO reserve (mailbox, run, uid) VALUES (?1, ?2, ?3)"
                          " ON CONFLICT(mailbox) DO UPDATE SET run = CASE WHEN excluded.uid >="
                          " uid THEN excluded.run ELSE run END, uid = max(uid, excluded.uid)");
    if (!s)
        return -1;
    sqlite3_bind_text(s, 1, mailbox, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, run, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, uid);
    return tb_state_run(st, s);
}

int tb_state_reserve_done(struct tb_state *st, const char *mailbox, const char *run)
{
    sqlite3_stmt *s = tb_state_stmt(st, "DELETE FROM reserve WHERE mailbox = ?1 AND run = ?2");
    if (!s)
        return -1;
    sqlite3_bind_text(s, 1, mailbox, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, run, -1, SQLITE_STATIC);
    return tb_state_run(st, s);
}

static void fill_reserve(sqlite3_stmt *s, void *elem)
{
    struct tb_state_reserve *v = elem;
    v->mailbox = tb_xstrdup((const char *)sqlite3_column_text(s, 0));
    v->run = tb_xstrdup((const char *)sqlite3_column_text(s, 1));
    v->uid = (uint32_t)sqlite3_column_int64(s, 2);
}

int tb_state_reserves(struct tb_state *st, struct tb_state_reserve **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    sqlite3_stmt *s = tb_state_stmt(st, "SELECT mailbox, run, uid FROM reserve");
    if (!s)
        return -1;
    void *v;
    int r = tb_state_collect(st, s, sizeof(**out), fill_reserve, &v, n);
    *out = v;
    return r;
}

void tb_state_reserves_free(struct tb_state_reserve *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(v[i].mailbox);
        free(v[i].run);
    }
    free(v);
}
