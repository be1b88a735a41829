#include "sync/watch.h"

#include "protocol/cmd.h"
#include "protocol/parse.h"
#include "protocol/xrep.h"
#include "store/store.h"
#include "sync/names.h"
#include "twinbox/config.h"
#include "twinbox/imap.h"
#include "twinbox/state.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct side {
    struct watcher *w;
    int k;
    bool active;    /* WATCH in flight */
    bool reported;  /* its first report (up to the first POSITION) is in */
    size_t matched; /* state mailboxes its first report showed unchanged */
};

struct watcher {
    const struct tb_pair *pair;
    struct tb_store s[2];
    struct tb_store *both[2];
    struct side side[2];
    struct tb_state_mailbox *smb;
    size_t n_smb;
    bool changed, released;
    volatile sig_atomic_t *stop;
    uv_timer_t tick;
    double left_ms;
    tb_sync_event_fn *on_event;
    void *event_ud;
};

static void release_all(struct watcher *w)
{
    if (w->released)
        return;
    w->released = true;
    for (int k = 0; k < 2; k++)
        if (w->side[k].active && !w->s[k].failed)
            tb_imap_release(w->s[k].c);
}

static const struct tb_state_mailbox *state_box(struct watcher *w, const char *canon)
{
    for (size_t i = 0; i < w->n_smb; i++)
        if (strcmp(w->smb[i].name, canon) == 0)
            return &w->smb[i];
    return NULL;
}

/* The first report covers everything since the stored position, our own last writes
 * included: only numbers that differ from the state's are a change. After it, any line
 * but STATUS and POSITION is one. */
static bool watch_untagged(struct tb_imap *c, const struct tb_resp *r, void *ud)
{
    (void)c;
    struct side *sd = ud;
    struct watcher *w = sd->w;
    const struct tb_xrep *x = tb_xrep_of(r);
    if (!x) {
        if (!tb_xrep_unreadable(r))
            return false;
        w->changed = true; /* unreadable: let a sync look */
    } else if (!sd->reported && x->kind == TB_XREP_STATUS) {
        char *canon = tb_name_canon(x->name, tb_store_ns(&w->s[sd->k]));
        const struct tb_state_mailbox *m = state_box(w, canon);
        if (tb_pair_wants(w->pair, canon)) {
            const struct tb_state_side *b = m ? &m->side[sd->k] : NULL;
            if (!b || b->uidvalidity != x->uidvalidity || b->uidnext != x->uidnext ||
                b->highestmodseq != x->highestmodseq)
                w->changed = true;
            else
                sd->matched++;
        }
        free(canon);
    } else if (!sd->reported && x->kind == TB_XREP_POSITION) {
        sd->reported = true;
        size_t want = 0;
        for (size_t i = 0; i < w->n_smb; i++)
            want += tb_pair_wants(w->pair, w->smb[i].name);
        if (sd->matched != want)
            w->changed = true; /* a mailbox of the state is gone */
    } else if (sd->reported && x->kind != TB_XREP_STATUS && x->kind != TB_XREP_POSITION) {
        w->changed = true;
    }
    if (w->changed)
        release_all(w);
    return true;
}

static void watch_done(struct tb_imap *c, const struct tb_imap_result *r, void *ud)
{
    (void)c;
    struct side *sd = ud;
    sd->active = false;
    sd->w->s[sd->k].pending--;
    if (r->status == TB_IMAP_NO || r->status == TB_IMAP_BAD) {
        /* A refused position: the next sync starts over; wake it. */
        struct tb_sync_event ev = {
            .kind = TB_SYNC_EV_WARNING, .pair = sd->w->pair->name, .side = sd->k};
        tb_sync_emitf(sd->w->on_event, sd->w->event_ud, &ev, "%s: XREPLICATE WATCH: %s",
                      sd->w->s[sd->k].label, r->text);
        sd->w->changed = true;
    }
    release_all(sd->w); /* the other side has nothing left to wait for */
}

static void on_tick(uv_timer_t *t)
{
    struct watcher *w = t->data;
    w->left_ms -= 200;
    if (*w->stop || w->left_ms <= 0)
        release_all(w);
}

int tb_watch_wait(uv_loop_t *loop, const struct tb_pair *pair, const struct tb_account *acct[2],
                  const char *password[2], struct tb_state *st, double max_wait_s,
                  volatile sig_atomic_t *stop, tb_sync_event_fn *on_event, void *event_ud,
                  int *watched, char *err, size_t errlen)
{
    struct watcher w = {.pair = pair,
                        .stop = stop,
                        .left_ms = max_wait_s * 1000,
                        .on_event = on_event,
                        .event_ud = event_ud};
    char *token[2] = {NULL, NULL};
    int n = 0, rc = 0;
    *watched = 0;
    if (tb_state_mailboxes(st, &w.smb, &w.n_smb) < 0) {
        snprintf(err, errlen, "pair %s: state: %s", pair->name, tb_state_error(st));
        return -1;
    }
    for (int k = 0; k < 2; k++) {
        w.side[k].w = &w;
        w.side[k].k = k;
        if (acct[k]->xreplicate && tb_state_xrep_token(st, k, &token[k]) == 0 && token[k] &&
            strlen(token[k]) > TB_XREP_TOKEN_MAX) {
            free(token[k]); /* never sent: see TB_XREP_TOKEN_MAX */
            token[k] = NULL;
        }
        if (token[k])
            tb_store_init(&w.s[k], loop, acct[k], password[k]);
        if (token[k])
            w.both[n++] = &w.s[k];
    }
    uv_timer_init(loop, &w.tick);
    w.tick.data = &w;
    uv_timer_start(&w.tick, on_tick, 200, 200);
    if (n && tb_store_wait(w.both, n) < 0)
        rc = -1;
    for (int k = 0; k < 2 && rc == 0; k++) {
        if (!token[k] || !tb_imap_has_cap(w.s[k].c, "X-REPLICATE"))
            continue;
        struct tb_cmd *cmd = tb_cmd_new("XREPLICATE");
        tb_cmd_atom(cmd, "WATCH");
        if (strlen(token[k]) > 1000)
            tb_cmd_literal(cmd, token[k], strlen(token[k]));
        else
            tb_cmd_astring(cmd, token[k]);
        tb_cmd_continuation(cmd, "DONE");
        w.side[k].active = true;
        w.s[k].pending++;
        (*watched)++;
        tb_imap_submit(w.s[k].c, cmd, TB_CMD_HOLD, watch_done, watch_untagged, &w.side[k]);
    }
    if (rc == 0 && *watched) {
        if (tb_store_wait(w.both, n) < 0)
            rc = -1;
    } else if (rc == 0) {
        /* Nothing to watch: the interval alone, still stoppable. */
        while (!w.released)
            uv_run(loop, UV_RUN_ONCE);
    }
    if (rc < 0) {
        for (int k = 0; k < 2; k++)
            if (token[k] && w.s[k].failed)
                snprintf(err, errlen, "%s", w.s[k].err.msg);
    } else {
        rc = w.changed ? 1 : 0;
        tb_store_logout(w.both, n);
    }
    uv_timer_stop(&w.tick);
    uv_close((uv_handle_t *)&w.tick, NULL);
    for (int k = 0; k < 2; k++) {
        if (token[k])
            tb_store_free(&w.s[k]);
        free(token[k]);
    }
    uv_run(loop, UV_RUN_DEFAULT);
    tb_state_mailboxes_free(w.smb, w.n_smb);
    return rc;
}
