/* Internals shared by the store's files: store.c (connection, writes), list.c (mailbox
 * discovery), delta.c (a mailbox's changes, by the strongest method both the server and the
 * state allow), copy.c and xrep.c. Not part of any public API. */
#ifndef TWINBOX_STORE_STORE_INTERNAL_H
#define TWINBOX_STORE_STORE_INTERNAL_H

#include "store/store.h"
#include "twinbox/imap.h"

#include <stdbool.h>
#include <stddef.h>

/* A command whose NO/BAD fails the store (the engine then stops with that message), unless
 * it belongs to a delta: then the delta is unreadable and its mailbox left alone. */
struct op {
    struct tb_store *s;
    char what[320];
    struct tb_uidset *modified;
    struct tb_delta *delta; /* SELECT/FETCH of a delta: where its data goes */
    bool fetch;             /* the delta's last FETCH: its completion checks the delta */
    bool search;            /* the delta's UID SEARCH of known UIDs: claims SEARCH data */
    char *box;              /* SELECT: the mailbox, for its PERMANENTFLAGS (owned) */
    bool examine;           /* an EXAMINE: its PERMANENTFLAGS () are the session's */
};

/* Counts one command in flight on s; freed by tb_store_op_done. */
struct op *tb_store_op_new(struct tb_store *s, const char *what);
void tb_store_op_done(struct tb_imap *c, const struct tb_imap_result *r, void *ud);
/* Room for the UID set of a command whose other parts take `fixed` bytes. */
size_t tb_store_set_budget(const struct tb_store *s, size_t fixed);
/* False (and the store failed) for a write to a read-only store: a migration's source is
 * never written, whatever the engine asks. */
bool tb_store_writable(struct tb_store *s, const char *what);
/* Leaves `mailbox` when it is the selected one (UNSELECT, never CLOSE: CLOSE would expunge the
 * user's \Deleted messages): for commands Dovecot refuses, or disconnects for, on it. */
void tb_store_leave(struct tb_store *s, const char *mailbox);
/* Once a delta's commands completed: a consistent picture, or unreadable (delta.c). */
void tb_store_delta_check(struct tb_delta *d);

/* UID FETCH from:* of the selected mailbox with identity, into out (no SELECT). */
void tb_store_fetch_from(struct tb_store *s, const char *mailbox, uint32_t from,
                         struct tb_delta *out);

/* What a message's identity is read from (fetch.c turns it into tb_msg_info.ident). */
#define TB_FETCH_ITEMS                                                                             \
    "(UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER.FIELDS (MESSAGE-ID DATE FROM TO "        \
    "SUBJECT)])"

/* PERMANENTFLAGS of a mailbox, as its last SELECT announced them (perm.c). */
void tb_store_perm_set(struct tb_store *s, const char *mailbox, const char *flags, bool keywords);
/* The flags of `flags` that `mailbox` can store (all when unknown), canonical, malloc'd;
 * *dropped is set when some were left out. */
char *tb_store_perm_filter(struct tb_store *s, const char *mailbox, const char *flags,
                           bool *dropped);
void tb_store_perm_free(struct tb_store *s);

/* The early listing of tb_store_list_early, from tb_imap_events.early (list.c). */
void tb_store_list_early_send(struct tb_store *s);

#endif
