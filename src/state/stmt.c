/* The statement cache of a state handle: see tb_state_stmt in state/state_internal.h. */
#include "state/state_internal.h"

#include "util/buf.h"

#include <stdlib.h>

/* A handful of dozen statements at most: a linear search by address costs less than the
 * hash of the text would. */
static struct tb_state_cached *lookup(struct tb_state *st, const char *sql)
{
    for (size_t i = 0; i < st->n_cache; i++)
        if (st->cache[i].sql == sql)
            return &st->cache[i];
    return NULL;
}

sqlite3_stmt *tb_state_stmt(struct tb_state *st, const char *sql)
{
    sqlite3_stmt *s = NULL;
    struct tb_state_cached *c = lookup(st, sql);
    if (c && !c->busy) {
        c->busy = true;
        return c->s;
    }
    if (c) {
        /* In use further up the stack: a statement of its own, finalized when done. */
        return sqlite3_prepare_v3(st->db, sql, -1, 0, &s, NULL) == SQLITE_OK ? s : NULL;
    }
    if (sqlite3_prepare_v3(st->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &s, NULL) != SQLITE_OK)
        return NULL; /* not cached: the next call tries again and reports again */
    if (st->n_cache == st->cap_cache) {
        st->cap_cache = st->cap_cache ? st->cap_cache * 2 : 32;
        st->cache = tb_xrealloc(st->cache, st->cap_cache * sizeof(*st->cache));
    }
    st->cache[st->n_cache++] = (struct tb_state_cached){.sql = sql, .s = s, .busy = true};
    return s;
}

void tb_state_done(struct tb_state *st, sqlite3_stmt *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < st->n_cache; i++) {
        if (st->cache[i].s != s)
            continue;
        /* reset returns (and leaves on the connection) the last step's error, if any */
        sqlite3_reset(s);
        sqlite3_clear_bindings(s);
        st->cache[i].busy = false;
        return;
    }
    sqlite3_finalize(s);
}

int tb_state_run(struct tb_state *st, sqlite3_stmt *s)
{
    int r = sqlite3_step(s);
    tb_state_done(st, s);
    return r == SQLITE_DONE ? 0 : -1;
}

int tb_state_collect(struct tb_state *st, sqlite3_stmt *s, size_t size, tb_state_fill_fn fill,
                     void **out, size_t *n)
{
    unsigned char *v = NULL;
    size_t cap = 0;
    int r;
    *n = 0;
    while ((r = sqlite3_step(s)) == SQLITE_ROW) {
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            v = tb_xrealloc(v, cap * size);
        }
        fill(s, v + (*n)++ * size);
    }
    tb_state_done(st, s);
    *out = v;
    return r == SQLITE_DONE ? 0 : -1;
}

void tb_state_stmts_free(struct tb_state *st)
{
    for (size_t i = 0; i < st->n_cache; i++)
        sqlite3_finalize(st->cache[i].s);
    free(st->cache);
    st->cache = NULL;
    st->n_cache = st->cap_cache = 0;
}
