/* Shared by the files of src/state: the database handle and its statement cache. Not part
 * of any public API. A handle is used by one thread at a time (each watch worker opens its
 * own), so the cache needs no lock. */
#ifndef TWINBOX_STATE_INTERNAL_H
#define TWINBOX_STATE_INTERNAL_H

#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>

/* One statement prepared for the life of the handle, keyed by the address of its SQL. */
struct tb_state_cached {
    const char *sql; /* borrowed: a string of static storage */
    sqlite3_stmt *s; /* owned; finalized by tb_state_close */
    bool busy;       /* handed out by tb_state_stmt and not given back yet */
};

struct tb_state {
    sqlite3 *db;
    struct tb_state_cached *cache;
    size_t n_cache, cap_cache;
};

/* The statement of `sql`, ready for binding, or NULL (sqlite3_errmsg says why). `sql` must
 * have static storage (a string literal): its address is the cache key, so the text is
 * compiled once per handle instead of once per call, which dominated a 1,000-mailbox
 * no-op run. A statement still handed out (a nested use of the same SQL) is never reset
 * under its user: the caller gets a fresh one instead. Give it back with tb_state_done. */
sqlite3_stmt *tb_state_stmt(struct tb_state *st, const char *sql);
/* Gives s back: reset (ending its read of the database, so it holds no WAL snapshot) with
 * its bindings cleared (they may point into the caller's memory), or finalized when it was
 * a fresh one. Keeps the error of its last step for tb_state_error. NULL is ignored. */
void tb_state_done(struct tb_state *st, sqlite3_stmt *s);
/* Steps s once and gives it back: 0 when it ran to completion (SQLITE_DONE), else -1. */
int tb_state_run(struct tb_state *st, sqlite3_stmt *s);
/* Fills one element (of the size given to tb_state_collect) from the current row of s. */
typedef void (*tb_state_fill_fn)(sqlite3_stmt *s, void *elem);
/* Steps s through its rows into a new array *out (NULL when none) of *n elements of `size`
 * bytes, one filled by fill per row, then gives s back. 0 when every row was read, -1 on
 * an error (*out then holds the rows read before it, for the caller's _free). */
int tb_state_collect(struct tb_state *st, sqlite3_stmt *s, size_t size, tb_state_fill_fn fill,
                     void **out, size_t *n);
/* Finalizes every cached statement (before sqlite3_close, which refuses to close a
 * connection with statements left). */
void tb_state_stmts_free(struct tb_state *st);

#endif
