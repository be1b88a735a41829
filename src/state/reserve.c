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
    sqlite3_stmt *s;
    /* a dead run's higher reservation is kept: its fence is not raised yet */
    if (sqlite3_prepare_v2(st->db,
                           "INSERT INTO reserve (mailbox, run, uid) VALUES (?1, ?2, ?3)"
                           " ON CONFLICT(mailbox) DO UPDATE SET run = CASE WHEN excluded.uid >="
                           " uid THEN excluded.run ELSE run END, uid = max(uid, excluded.uid)",
                           -1, &s, NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_text(s, 1, mailbox, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, run, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, uid);
    int r = sqlite3_step(s);
    sqlite3_finalize(s);
    return r == SQLITE_DONE ? 0 : -1;
}

int tb_state_reserve_done(struct tb_state *st, const char *mailbox, const char *run)
{
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(st->db, "DELETE FROM reserve WHERE mailbox = ?1 AND run = ?2", -1, &s,
                           NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_text(s, 1, mailbox, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, run, -1, SQLITE_STATIC);
    int r = sqlite3_step(s);
    sqlite3_finalize(s);
    return r == SQLITE_DONE ? 0 : -1;
}

int tb_state_reserves(struct tb_state *st, struct tb_state_reserve **out, size_t *n)
{
    sqlite3_stmt *s;
    *out = NULL;
    *n = 0;
    if (sqlite3_prepare_v2(st->db, "SELECT mailbox, run, uid FROM reserve", -1, &s, NULL) !=
        SQLITE_OK)
        return -1;
    int r;
    while ((r = sqlite3_step(s)) == SQLITE_ROW) {
        *out = tb_xrealloc(*out, (*n + 1) * sizeof(**out));
        struct tb_state_reserve *v = &(*out)[(*n)++];
        v->mailbox = tb_xstrdup((const char *)sqlite3_column_text(s, 0));
        v->run = tb_xstrdup((const char *)sqlite3_column_text(s, 1));
        v->uid = (uint32_t)sqlite3_column_int64(s, 2);
    }
    sqlite3_finalize(s);
    return r == SQLITE_DONE ? 0 : -1;
}

void tb_state_reserves_free(struct tb_state_reserve *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(v[i].mailbox);
        free(v[i].run);
    }
    free(v);
}
