/* Internals of the copy pipe shared by copy.c (FETCH into APPEND) and identify.c (finding
 * the UIDs of copies on a server without UIDPLUS). */
#ifndef TWINBOX_STORE_COPY_INTERNAL_H
#define TWINBOX_STORE_COPY_INTERNAL_H

#include "store/store.h"

/* Copies appended without a known UID: their source records (owned). */
struct tb_copy_unknown {
    struct tb_msg_info *m;
    size_t n, cap;
};

struct tb_copy_job;
struct tb_copy_held;

struct tb_copy {
    struct tb_store *src, *dst;
    char *mailbox;
    tb_copied_fn *done;
    tb_copy_skipped_fn *skipped;
    void *ud;
    /* The copies to make, borrowed (store.h: valid until tb_copy_finish): 8 bytes each
     * for a 100,000-message initial sync. tb_copy_add_at's are copies (`held`). */
    const struct tb_msg_info **queue;
    uint32_t *target; /* per queued copy: its UID on dst in replica mode; NULL: all 0 */
    size_t n, cap, next;
    struct tb_copy_held *held;
    struct tb_uidset *displaced; /* source UIDs of replica copies not placed as asked */
    struct tb_uidset misplaced;  /* their UIDs on dst, where they landed elsewhere */
    int inflight;                /* jobs: fetching, waiting in `ready`, or appending */
    /* MULTIAPPEND (copy.c): fetched jobs waiting for their APPEND, in order (a FIFO of at
     * most the window); FETCH and APPEND commands in flight. */
    struct tb_copy_job **ready;
    size_t n_ready;
    int fetches, appends;
    bool pumping; /* pump() is running: a nested call (a synchronous abort) returns */
    uint64_t bytes;
    /* The source's mailbox (owned) and its UIDVALIDITY (tb_copy_set_source). Jobs of a refused
     * MULTIAPPEND, their bodies gone (a body is freed once written): fetched again, one APPEND
     * each, once the rest is done (finish sets refetching after selecting the source's mailbox
     * again). */
    char *src_mailbox;
    uint32_t src_uidvalidity;
    struct tb_copy_job **again;
    size_t n_again, cap_again, again_head;
    bool refetching;
    int refused; /* MULTIAPPENDs refused: from REFUSED_MAX on, one message per APPEND */
    /* Copies whose new UID the server did not tell (no UIDPLUS); the lowest UID they
     * can have (the destination's UIDNEXT before the copy). */
    struct tb_copy_unknown unknown;
    uint32_t uid_floor;
    /* Set by tb_copy_finish. After a failure, commands may still be in flight on the other
     * connection; their callbacks still need cp, so the last job frees it. */
    bool finished;
};

/* Takes m's strings over (m is left without them). */
void tb_copy_unknown_add(struct tb_copy *cp, struct tb_msg_info *m);
void tb_copy_unknown_free(struct tb_copy_unknown *u);
/* Lists the destination's messages from cp->uid_floor on and pairs each unknown copy with
 * the one of the same identity; -1 (store failed) when one cannot be found. */
int tb_copy_identify(struct tb_copy *cp);

#endif
