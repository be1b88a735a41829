/* Internals of the sync engine shared by its files: engine.c (discovery, mailbox
 * create/rename/delete, the run), mailbox.c (a mailbox's passes and their commits),
 * xrdisc.c (discovery and positions with X-REPLICATE). Not part of any public API. */
#ifndef TWINBOX_SYNC_ENGINE_INTERNAL_H
#define TWINBOX_SYNC_ENGINE_INTERNAL_H

#include "store/store.h"
#include "sync/engine.h"
#include "sync/plan.h"
#include "twinbox/state.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MAX_PASSES 4

struct entry {
    char *canon;
    struct tb_mbox_info *box[2];
    struct tb_state_mailbox *st;
    struct tb_xrep_section *sec[2]; /* X-REPLICATE's report on it, per side (borrowed) */
    bool unsettled; /* its last pass still wrote: the state's numbers are pre-write */
    /* Written and committed; the pass that confirms the writes settled is left to
     * settle_deferred, which pipelines it with other mailboxes'. */
    bool deferred, wrote[2], subscribed;
};

struct ctx {
    const struct tb_pair *pair;
    const struct tb_account *const *acct;
    struct tb_store s[2];
    struct tb_store *both[2];
    struct tb_state *st;
    const struct tb_sync_opts *o;
    struct tb_sync_stats *stats;
    struct tb_error *err;
    int rc;
    char run[64]; /* this run's id for copy intents */
    /* pairs recorded by the copy callbacks of the current pass */
    struct tb_pair_update *copied;
    size_t n_copied, cap_copied;
    /* X-REPLICATE per side: used for discovery; rel: relative to the stored position, so
     * its events and deltas apply (see sync/xr.h). */
    struct tb_xrep_reply xr[2];
    bool xr_used[2], xr_rel[2], xr_logged[2];
    bool xr_drop[2]; /* forget the stored position: the server stopped offering it */
    bool may_defer;  /* sync_messages may leave its settling pass to settle_deferred */
};

/* One line into x->err from the failed store / the state's last error; the exit code. */
int tb_eng_store_fail(struct ctx *x);
int tb_eng_state_fail(struct ctx *x, const char *what);

/* mailbox.c */
int tb_eng_sync_messages(struct ctx *x, struct entry *e, bool reset, bool subscribed);
int tb_eng_settle_deferred(struct ctx *x, struct entry *ent, size_t n_ent);
void tb_eng_clear_copied(struct ctx *x);

/* xrdisc.c */
int tb_eng_list_both(struct ctx *x);
int tb_eng_record_positions(struct ctx *x, struct entry *ent, size_t n_ent);

#endif
