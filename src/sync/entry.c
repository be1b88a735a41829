/* One mailbox of the run: what its presence on each side means (created where missing,
 * deleted where the survey proved it gone, left alone where unsure), subscriptions made to
 * agree, then its passes (mailbox.c). The run's order and batching are engine.c's. */
#include "sync/engine_internal.h"

#include "store/store.h"
#include "twinbox/config.h"

#include <stdlib.h>

bool tb_eng_unchanged(const struct entry *e)
{
    return tb_eng_side_unchanged(e, 0) && tb_eng_side_unchanged(e, 1) && !e->due[0] && !e->due[1];
}

/* A state mailbox the survey found gone on side g, with nothing new on the other side: it
 * goes there too. */
static int delete_other(struct ctx *x, struct entry *e, int g)
{
    struct tb_sync_event ev = {.kind = TB_SYNC_EV_DELETE, .mailbox = tb_eng_show(e), .side = 1 - g};
    tb_eng_emit(x, &ev, "%s: deleted on %s, deleting on %s", ev.mailbox, g ? "b" : "a",
                g ? "a" : "b");
    if (x->o->dry_run)
        return 0;
    char *w = tb_eng_wire(x, e, 1 - g);
    tb_store_delete(&x->s[1 - g], w);
    free(w);
    if (tb_store_wait(x->both, 2) < 0)
        return tb_eng_store_fail(x);
    if (tb_state_mailbox_delete(x->st, e->st->id) < 0)
        return tb_eng_state_fail(x, "delete mailbox");
    x->stats->deleted++;
    return 0;
}

/* Creates the mailbox where it is missing and makes subscriptions agree. */
static int create_and_subscribe(struct ctx *x, struct entry *e, const bool present[2],
                                bool subscribed)
{
    bool sent = false;
    for (int k = 0; k < 2; k++) {
        if (present[k] && e->box[k]->subscribed == subscribed)
            continue;
        if (x->mode && k == x->mode->source)
            continue; /* one-way: the source is only read */
        if (x->o->dry_run) {
            struct tb_sync_event ev = {.kind =
                                           present[k] ? TB_SYNC_EV_SUBSCRIBE : TB_SYNC_EV_CREATE,
                                       .mailbox = tb_eng_show(e),
                                       .side = k};
            tb_eng_emit(x, &ev, "%s: %s on %s", ev.mailbox, present[k] ? "subscribe" : "create",
                        k ? "b" : "a");
            continue;
        }
        char *w = tb_eng_wire(x, e, k);
        if (!present[k] && x->pair->replica) {
            /* with the other side's UIDVALIDITY and GUID, waited for: -1 = left alone */
            int r = tb_eng_replica_create(x, e, k, w);
            if (r != 0) {
                free(w);
                return r;
            }
        } else if (!present[k]) {
            const struct tb_mbox_info *src = e->box[1 - k];
            tb_store_create(&x->s[k], w, src ? src->special_use : NULL);
            x->stats->created++;
            e->creating = true;
        }
        if (subscribed || present[k])
            tb_store_subscribe(&x->s[k], w, subscribed);
        sent = true;
        free(w);
    }
    /* A mailbox created here is read next (it has no state to take a side from): its
     * SELECTs go out in the same flight and that wait covers the CREATE. With nothing sent
     * there is nothing to wait for (a write batch's listings may be in flight). */
    if (sent && !e->creating && tb_store_wait(x->both, 2) < 0)
        return tb_eng_store_fail(x);
    return 0;
}

/* One-way: what happens to a mailbox missing on a side. Missing on the source: deleted
 * on the destination only when mirroring (on the survey's evidence), else the state
 * forgets it and the destination keeps its copy. Missing on the destination (deleted
 * there): the state forgets it, and it is created and filled again. Returns 1 when the
 * caller goes on with a fresh sync of the mailbox. */
static int one_way_missing(struct ctx *x, struct entry *e, const bool present[2])
{
    int s = x->mode->source;
    if (present[s] && present[1 - s])
        return 1;
    if (!present[s] && present[1 - s] && e->st && x->mode->mirror &&
        (e->gone == GONE_DELETE || e->gone == GONE_RECREATE))
        return delete_other(x, e, s);
    if (!present[s] && e->st && e->gone == GONE_UNKNOWN && present[1 - s])
        return 0; /* unknown on the source: the survey warned */
    if (e->st && !x->o->dry_run && tb_state_mailbox_delete(x->st, e->st->id) < 0)
        return tb_eng_state_fail(x, "delete mailbox");
    if (e->st) {
        free(e->st->name);
        free(e->st);
        e->st = NULL;
    }
    return present[s] ? 1 : 0;
}

int tb_eng_entry_begin(struct ctx *x, struct entry *e, bool *reset_out, bool *subscribed_out)
{
    if (e->skip)
        return 0; /* the survey said why */
    if (x->mode) {
        bool here[2] = {e->box[0] != NULL, e->box[1] != NULL};
        int r = one_way_missing(x, e, here);
        if (r != 1)
            return r;
    }
    bool present[2] = {e->box[0] != NULL, e->box[1] != NULL};
    bool reset = false;
    if (e->st && (!present[0] || !present[1])) {
        if (!present[0] && !present[1]) {
            if (!x->o->dry_run && tb_state_mailbox_delete(x->st, e->st->id) < 0)
                return tb_eng_state_fail(x, "delete mailbox");
            return 0;
        }
        int gone = present[0] ? 1 : 0;
        if (e->gone == GONE_DELETE)
            return delete_other(x, e, gone);
        if (e->gone != GONE_RECREATE)
            return 0; /* unknown: the survey warned */
        /* Deleted on one side while the other changed: recreate it, so nothing unsynced
         * is lost. */
        reset = true;
    }
    /* replica mode: a mailbox whose sides differ in UIDVALIDITY or GUID is aligned first,
     * or left alone (-1), even when nothing changed since the state */
    int rc = x->pair->replica ? tb_eng_replica_align(x, e, &reset) : 0;
    if (rc != 0)
        return rc == -1 ? 0 : rc;
    bool subscribed = (e->box[0] && e->box[0]->subscribed) || (e->box[1] && e->box[1]->subscribed);
    if (e->st && present[0] && present[1]) {
        bool sub[2] = {e->box[0]->subscribed, e->box[1]->subscribed};
        subscribed = sub[0] != e->st->subscribed ? sub[0] : sub[1];
        if (e->box[0]->uidvalidity != e->st->side[0].uidvalidity ||
            e->box[1]->uidvalidity != e->st->side[1].uidvalidity || x->o->full_resync)
            reset = true;
        else if (tb_eng_unchanged(e) && sub[0] == sub[1])
            return 0;
    }
    rc = create_and_subscribe(x, e, present, subscribed);
    if (rc == -1)
        return 0; /* left alone this run: warned */
    if (rc == 0 && x->o->dry_run && (!present[0] || !present[1])) {
        /* Not created in a dry run, so not read either: its messages would all be copied
         * (the filters of a migration are not applied to this estimate). */
        int k = present[0] ? 1 : 0;
        if (!x->mode || k != x->mode->source) {
            struct tb_sync_event ev = {
                .kind = TB_SYNC_EV_ESTIMATE,
                .mailbox = tb_eng_show(e),
                .side = k,
                .copies = {k ? 0 : e->box[1]->messages, k ? e->box[0]->messages : 0}};
            tb_eng_emit(x, &ev, "%s: copy a->b %u, b->a %u (a mailbox to create; before filters)",
                        ev.mailbox, k ? e->box[0]->messages : 0, k ? 0 : e->box[1]->messages);
        }
        return 0;
    }
    if (rc != 0)
        return rc;
    *reset_out = reset || !e->st;
    *subscribed_out = subscribed;
    return 1;
}

int tb_eng_sync_entry(struct ctx *x, struct entry *e)
{
    bool reset, subscribed;
    int rc = tb_eng_entry_begin(x, e, &reset, &subscribed);
    return rc == 1 ? tb_eng_sync_messages(x, e, reset, subscribed) : rc;
}
