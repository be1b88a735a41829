/* Sync state of one account pair, in SQLite (WAL, schema versioned, file mode 0600).
 *
 * Invariant kept by the sync engine: a mailbox row's UIDNEXT / HIGHESTMODSEQ are only
 * advanced in the same transaction that records every message pair and base flag set they
 * imply, so a crash at any instant leaves a state that is merely older, never ahead of
 * what both servers hold. Rows are owned by the caller once returned (free with the
 * matching _free function). */
#ifndef TWINBOX_STATE_H
#define TWINBOX_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct tb_state;

struct tb_state_side {
    uint32_t uidvalidity, uidnext;
    uint64_t highestmodseq;
};

struct tb_state_mailbox {
    int64_t id;
    char *name; /* canonical name: hierarchy separated by '/' , modified UTF-7 as on the wire */
    struct tb_state_side side[2]; /* 0 = a, 1 = b */
    bool subscribed;
};

struct tb_state_msg {
    uint32_t uid[2];
    char *flags; /* base flags and keywords both sides agreed on: sorted, space-separated */
};

int tb_state_open(const char *path, struct tb_state **out, char *err, size_t errlen);
void tb_state_close(struct tb_state *st);
/* Takes the pair's lock (flock on PATH.lock). 0 ok, 1 held by another process, -1 error. */
int tb_state_lock(const char *db_path, int *fd, char *err, size_t errlen);
void tb_state_unlock(int fd);
/* Default path: $XDG_STATE_HOME/twinbox/PAIR.db (~/.local/state/twinbox/PAIR.db). */
int tb_state_default_path(const char *pair, char *buf, size_t len);
/* The same path; its directories are created only when `create`. */
int tb_state_path_for(const char *pair, bool create, char *buf, size_t len);

int tb_state_begin(struct tb_state *st);
int tb_state_commit(struct tb_state *st);
void tb_state_rollback(struct tb_state *st);
const char *tb_state_error(struct tb_state *st);

int tb_state_mailboxes(struct tb_state *st, struct tb_state_mailbox **out, size_t *n);
void tb_state_mailboxes_free(struct tb_state_mailbox *v, size_t n);
/* Inserts when id == 0 (and sets it), updates otherwise. */
int tb_state_mailbox_put(struct tb_state *st, struct tb_state_mailbox *mb);
int tb_state_mailbox_delete(struct tb_state *st, int64_t id);
int tb_state_mailbox_rename(struct tb_state *st, int64_t id, const char *name);

/* Sorted by uid a. */
int tb_state_messages(struct tb_state *st, int64_t mailbox, struct tb_state_msg **out, size_t *n);
void tb_state_messages_free(struct tb_state_msg *v, size_t n);
int tb_state_msg_put(struct tb_state *st, int64_t mailbox, uint32_t uid_a, uint32_t uid_b,
                     const char *flags);
int tb_state_msg_delete(struct tb_state *st, int64_t mailbox, uint32_t uid_a);
int tb_state_message_count(struct tb_state *st, int64_t mailbox, uint64_t *n);
/* Every mailbox's count at once: (mailbox id, pairs) for each mailbox holding any, sorted by
 * id; the caller frees *out. One read where a count per mailbox paid a read transaction
 * (file locks) each. */
struct tb_state_count {
    int64_t mailbox;
    uint64_t n;
};
int tb_state_message_counts(struct tb_state *st, struct tb_state_count **out, size_t *n);
int tb_state_msgs_clear(struct tb_state *st, int64_t mailbox);

/* Copies in flight. run identifies this process's run; intents of other runs are copies a
 * crashed run had sent, whose APPEND the server may still complete after the crash. */
struct tb_state_intent {
    int side; /* the destination */
    char *ident;
    uint32_t size;
    int64_t internaldate;
};
int tb_state_intent_add(struct tb_state *st, const char *mailbox, const char *run, int side,
                        const char *ident, uint32_t size, int64_t internaldate);
/* Intents of other runs for this mailbox. */
int tb_state_intents(struct tb_state *st, const char *mailbox, const char *run,
                     struct tb_state_intent **out, size_t *n);
void tb_state_intents_free(struct tb_state_intent *v, size_t n);
/* Drops one intent of another run (it was resolved: the copy was found). */
int tb_state_intent_drop(struct tb_state *st, const char *mailbox, const char *run,
                         const struct tb_state_intent *i);
/* Drops this run's intents and those older than max_age seconds. */
int tb_state_intents_done(struct tb_state *st, const char *mailbox, const char *run,
                          int64_t max_age);

/* X-REPLICATE positions (schema v3). The token of side 0/1 (NULL when none); setting one
 * (NULL clears) forgets every mailbox number of that side, which the caller then records
 * with tb_state_xrep_mailbox_put in the same transaction: the HIGHESTMODSEQ the token holds
 * for a mailbox (canonical name), recorded only where it equals the state's own. */
int tb_state_xrep_token(struct tb_state *st, int side, char **token);
int tb_state_xrep_set(struct tb_state *st, int side, const char *token);
int tb_state_xrep_mailbox_put(struct tb_state *st, int side, const char *name, uint64_t hms);
/* *hms = 0 when the token holds no usable number for the mailbox. */
int tb_state_xrep_mailbox(struct tb_state *st, int side, const char *name, uint64_t *hms);

/* Skipped messages (schema v4): a message of `side` that could not be copied to the other
 * side. permanent: the destination refused it (too big, over quota, a flag it rejects), or
 * it exceeds max-message-size; it is retried when its flags change or on request.
 * Otherwise the source could not deliver it (FETCH NO, OK without the body, NIL body): it is
 * retried by the next runs, once per run, and counts as permanent after
 * TB_SKIP_MAX_ATTEMPTS. `run` is the run that last tried it. Rows are kept by mailbox name,
 * follow renames and go with the mailbox; a UIDVALIDITY change makes them stale. */
#define TB_SKIP_MAX_ATTEMPTS 3

struct tb_state_skip {
    char *mailbox; /* canonical name */
    int side;      /* the side holding the message */
    uint32_t uidvalidity, uid, size;
    char *msgid; /* Message-ID as far as known, "" otherwise */
    char *flags; /* its flags when it was skipped (a change makes it due again) */
    char *reason;
    bool permanent;
    int attempts;
    char *run;
    int64_t first, last; /* seconds since the epoch */
};

/* Inserts, or updates the row of (mailbox, side, uid), counting one more attempt. */
int tb_state_skip_put(struct tb_state *st, const struct tb_state_skip *k);
/* Rows of one mailbox (mailbox != NULL) or all of them, ordered by mailbox, side, uid. */
int tb_state_skips(struct tb_state *st, const char *mailbox, struct tb_state_skip **out, size_t *n);
void tb_state_skips_free(struct tb_state_skip *v, size_t n);
/* *any = whether the state holds any skipped row at all: one look that spares a run the
 * per-mailbox tb_state_skips of the common case, where nothing was ever skipped. */
int tb_state_skips_exist(struct tb_state *st, bool *any);
int tb_state_skip_drop(struct tb_state *st, const char *mailbox, int side, uint32_t uid);
/* The attempts recorded for one message (0 without a row) into *attempts: one indexed
 * lookup, where tb_state_skips would read every row of the mailbox. */
int tb_state_skip_attempts(struct tb_state *st, const char *mailbox, int side, uint32_t uid,
                           int *attempts);
/* Drops the rows of a side whose UIDVALIDITY is no longer `uidvalidity`. */
int tb_state_skips_stale(struct tb_state *st, const char *mailbox, int side, uint32_t uidvalidity);

/* Replica mode's UID reservations (state/reserve.c): the highest UID a pass may pin copies
 * to in a mailbox, recorded before it runs them and dropped with the pass's commit. Rows of
 * other runs are those of runs that died; the caller fences them off (raises UIDNEXT past
 * them) and drops them. */
struct tb_state_reserve {
    char *mailbox, *run;
    uint32_t uid;
};
int tb_state_reserve_put(struct tb_state *st, const char *mailbox, const char *run, uint32_t uid);
int tb_state_reserve_done(struct tb_state *st, const char *mailbox, const char *run);
int tb_state_reserves(struct tb_state *st, struct tb_state_reserve **out, size_t *n);
void tb_state_reserves_free(struct tb_state_reserve *v, size_t n);

#endif
