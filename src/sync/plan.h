/* Per-mailbox plan: what the 3-way comparison of state and both sides' deltas asks for.
 * Pure data, computed without I/O (plan.c), executed by the engine. Side index 0 = a,
 * 1 = b throughout. */
#ifndef TWINBOX_SYNC_PLAN_H
#define TWINBOX_SYNC_PLAN_H

#include "store/store.h"
#include "twinbox/state.h"

/* One UID STORE: '+' adds, '-' removes, '=' replaces (a message needing both an addition
 * and a removal gets one replace, so its two changes never race each other's
 * UNCHANGEDSINCE). */
struct tb_flag_group {
    char op;
    char *flags;
    uint32_t *uids;
    size_t n, cap;
};

struct tb_pair_update {
    uint32_t uid[2];
    char *flags; /* new base */
    bool remove; /* drop the pair (expunged) */
};

struct tb_plan {
    /* copies[k]: messages of side 1-k to copy to side k (borrowed from the delta) */
    const struct tb_msg_info **copies[2];
    size_t n_copies[2];
    struct tb_flag_group *groups[2];
    size_t n_groups[2];
    /* plan.c's lookup of groups by (op, flags) while it computes: open addressing, group
     * index + 1 per slot (0 empty). Freed by tb_plan_compute. */
    size_t *group_slot[2];
    size_t group_cap[2];
    uint32_t *expunge[2];
    size_t n_expunge[2];
    struct tb_pair_update *updates;
    size_t n_updates, cap_updates;
    uint64_t conflicts;
    uint64_t unstorable; /* stores that leave out flags the mailbox cannot keep */
    uint64_t filtered;   /* one-way: new source messages left out by the filters */
    uint64_t matched;    /* new on both sides, the same message: paired by identity */
    uint64_t kept;       /* one-way: expunged on the source, kept on the destination */
    /* Intents of a crashed run resolved by this plan (the copy was found: paired, or a late
     * duplicate expunged), by index into the suspects given; late: how many expunged. */
    size_t *resolved;
    size_t n_resolved;
    uint64_t late;
};

/* state: the pairs recorded for this mailbox (sorted by uid a); base_next: the UIDNEXT the
 * state recorded per side (0 when the side's listing is full). */
/* suspects: copies a crashed run had in flight (tb_state_intents). A new message on side k
 * that matches no new message on the other side but matches a suspect copy to k is that
 * copy, landed after its run died while this run copied the original again: it is
 * expunged instead of being copied back. */
/* Skipped messages (tb_state_skip) per side: held UIDs are never new (they stay skipped);
 * due UIDs are new even below the recorded UIDNEXT (they are retried). NULL: none. */
struct tb_plan_skips {
    struct tb_uidset held[2], due[2];
};
/* One-way (migration): side `source` is never written. Its new messages are copied to the
 * other side when they pass the filters; its flag changes are merged into the other side's
 * flags; the other side's new messages and changes stay there. An expunge on the source
 * reaches the destination only with `mirror`; an expunge on the destination only forgets
 * the pair. NULL: two-way. */
struct tb_plan_mode {
    int source;            /* 0 or 1 */
    bool mirror;           /* --delete */
    int64_t since, before; /* INTERNALDATE window (seconds since the epoch), 0 = open */
    uint64_t max_size;     /* 0 = any */
};
void tb_plan_compute(struct tb_plan *p, const struct tb_state_msg *pairs, size_t n_pairs,
                     struct tb_delta *delta[2], const uint32_t base_next[2],
                     const struct tb_state_intent *suspects, size_t n_suspects,
                     struct tb_plan_skips *skips, const struct tb_plan_mode *mode);
bool tb_plan_has_writes(const struct tb_plan *p);
/* Whether a source message passes a one-way mode's filters (date window, size). */
bool tb_plan_mode_wants(const struct tb_plan_mode *mode, const struct tb_msg_info *m);
/* Message identity (0: the same message): identity headers and INTERNALDATE, and the size
 * unless the headers hold a Message-ID. tb_msg_identity_sort orders pointers to messages
 * by it, then by UID (for qsort). */
int tb_msg_identity_cmp(const struct tb_msg_info *x, const struct tb_msg_info *y);
int tb_msg_identity_sort(const void *a, const void *b);
void tb_plan_free(struct tb_plan *p);

#endif
