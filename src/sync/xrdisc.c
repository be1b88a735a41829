/* Discovery with X-REPLICATE (sync/xr.h): which side asks XREPLICATE CHANGES, the
 * fallbacks when the server refuses, and the positions stored after a complete run. */
#include "sync/engine_internal.h"

#include "protocol/xrep.h"
#include "store/store.h"
#include "util/flags.h"
#include "sync/names.h"
#include "sync/plan.h"
#include "sync/xr.h"
#include "twinbox/config.h"
#include "twinbox/exit.h"
#include "twinbox/imap.h"
#include "twinbox/state.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "twinbox/error.h"

static bool xr_wanted(struct ctx *x, int k)
{
    const struct tb_account *a = x->acct[k];
    return a->xreplicate && tb_imap_has_cap(x->s[k].c, "X-REPLICATE");
}

/* A server that closes the connection on XREPLICATE CHANGES <token> (Dovecot's BYE for an
 * argument over its line limit, or a plugin that crashes on it) would do so on every run:
 * that position is forgotten (one warning), the side reconnected, and its listing asked
 * again without it, as if the server had refused the position. Once per side and run. */
static int wait_or_reconnect(struct ctx *x, int step[2], char *token[2], bool reconnected[2])
{
    while (tb_store_wait(x->both, 2) < 0) {
        int k = -1;
        for (int j = 0; j < 2 && k < 0; j++)
            if (x->s[j].failed && step[j] == 0 && token[j] && !reconnected[j] &&
                (x->s[j].err.kind == TB_ERR_TEMP || x->s[j].err.kind == TB_ERR_PROTOCOL))
                k = j;
        if (k < 0)
            return tb_eng_store_fail(x);
        tb_eng_warn(x, NULL, "%s; forgetting its X-REPLICATE position and falling back to QRESYNC",
                    x->s[k].err.msg);
        x->xr_logged[k] = true;
        if (tb_state_begin(x->st) < 0 || tb_state_xrep_set(x->st, k, NULL) < 0 ||
            tb_state_commit(x->st) < 0)
            return tb_eng_state_fail(x, "positions");
        tb_xrep_reply_clear(&x->xr[k]);
        x->xr[k].refused = true;
        snprintf(x->xr[k].reason, sizeof(x->xr[k].reason), "connection closed");
        tb_store_free(&x->s[k]);
        tb_store_init(&x->s[k], x->loop, x->acct[k], x->password[k]);
        reconnected[k] = true;
    }
    return 0;
}

/* Each side's listing: XREPLICATE CHANGES from the stored position where the server offers
 * it, POSITION when there is none or it was refused, LIST-STATUS when that fails too.
 * Round 0 asks; rounds 1 and 2 retry only the sides whose answer was unusable. */
int tb_eng_list_both(struct ctx *x)
{
    char *token[2] = {NULL, NULL};
    bool reconnected[2] = {false, false};
    int step[2] = {0, 0}; /* 0 CHANGES/POSITION, 1 POSITION, 2 LIST-STATUS, 3 done */
    int rc = 0;
    for (int k = 0; k < 2; k++) {
        tb_xrep_reply_clear(&x->xr[k]);
        x->xr_used[k] = x->xr_rel[k] = false;
        if (!xr_wanted(x, k) && x->acct[k]->xreplicate && !x->xr_logged[k]) {
            /* Offered before (a position is stored), not now: say so once, forget it. */
            if (tb_state_xrep_token(x->st, k, &token[k]) < 0)
                rc = tb_eng_state_fail(x, "read");
            else if (token[k])
                tb_eng_warn(x, NULL,
                            "%s: the server no longer offers X-REPLICATE; falling back to "
                            "QRESYNC",
                            x->s[k].label);
            x->xr_drop[k] = token[k] != NULL;
            x->xr_logged[k] = true;
            free(token[k]);
            token[k] = NULL;
        }
        if (!xr_wanted(x, k))
            step[k] = 2;
        else if (tb_state_xrep_token(x->st, k, &token[k]) < 0)
            rc = tb_eng_state_fail(x, "read");
        else if (!token[k])
            step[k] = 1;
    }
    for (int round = 0; round < 3 && rc == 0; round++) {
        bool busy = false;
        for (int k = 0; k < 2; k++) {
            if (step[k] == 3 || (round > 0 && step[k] < round))
                continue;
            busy = true;
            if (step[k] == 2)
                tb_store_list_start(&x->s[k]);
            else
                tb_store_xrep_start(&x->s[k], step[k] == 0 ? token[k] : NULL, &x->xr[k]);
        }
        if (!busy)
            break;
        rc = wait_or_reconnect(x, step, token, reconnected);
        if (rc != 0)
            break;
        for (int k = 0; k < 2; k++) {
            if (step[k] == 3 || (round > 0 && step[k] < round))
                continue;
            struct tb_xrep_reply *r = &x->xr[k];
            if (step[k] == 2 || !r->refused) {
                x->xr_used[k] = step[k] < 2;
                x->xr_rel[k] = step[k] == 0;
                step[k] = 3;
                continue;
            }
            if (!x->xr_logged[k])
                tb_eng_warn(x, NULL, "%s: X-REPLICATE %s: %s; falling back to QRESYNC%s",
                            x->s[k].label, step[k] == 0 ? "position refused" : "failed", r->reason,
                            step[k] == 0 ? " and a new position" : "");
            x->xr_logged[k] = true;
            tb_xrep_reply_clear(r);
            step[k]++;
        }
    }
    for (int k = 0; k < 2 && rc == 0; k++) {
        char *why = x->xr_used[k] ? tb_xr_resync_summary(&x->xr[k]) : NULL;
        if (why && !x->xr_logged[k])
            tb_eng_warn(x, NULL, "%s: X-REPLICATE cannot serve %s; falling back to QRESYNC there",
                        x->s[k].label, why);
        x->xr_logged[k] = x->xr_logged[k] || why;
        free(why);
    }
    free(token[0]);
    free(token[1]);
    return rc;
}

/* After a complete run: each X-REPLICATE side's new position, and per mailbox the number
 * it holds where that equals the state's (a settled mailbox the position saw as the state
 * records it). A failed run stores nothing: the old position and its numbers stay
 * consistent with each other, and the state's newer numbers simply do not match them. */
int tb_eng_record_positions(struct ctx *x, struct entry *ent, size_t n_ent)
{
    if (!x->xr_used[0] && !x->xr_used[1] && !x->xr_drop[0] && !x->xr_drop[1])
        return 0;
    if (tb_state_begin(x->st) < 0)
        return tb_eng_state_fail(x, "begin");
    int r = 0;
    for (int k = 0; k < 2 && r == 0; k++) {
        if (x->xr_drop[k]) {
            r = tb_state_xrep_set(x->st, k, NULL);
            continue;
        }
        if (!x->xr_used[k] || !x->xr[k].position)
            continue;
        if (strlen(x->xr[k].position) > TB_XREP_TOKEN_MAX) {
            /* It could not be sent back: keep none, and QRESYNC does the work. */
            tb_eng_warn(x, NULL,
                        "%s: X-REPLICATE position of %zu bytes is too long to use; the "
                        "account's changes are found with QRESYNC",
                        x->s[k].label, strlen(x->xr[k].position));
            r = tb_state_xrep_set(x->st, k, NULL);
            continue;
        }
        r = tb_state_xrep_set(x->st, k, x->xr[k].position);
        for (size_t i = 0; i < n_ent && r == 0; i++) {
            const struct entry *e = &ent[i];
            const struct tb_xrep_section *sec = e->sec[k];
            if (!e->st || !sec || e->unsettled || sec->uidvalidity != e->st->side[k].uidvalidity ||
                sec->uidnext != e->st->side[k].uidnext ||
                sec->highestmodseq != e->st->side[k].highestmodseq)
                continue;
            r = tb_state_xrep_mailbox_put(x->st, k, e->canon, sec->highestmodseq);
        }
    }
    if (r < 0 || tb_state_commit(x->st) < 0)
        return tb_eng_state_fail(x, "positions");
    return 0;
}
