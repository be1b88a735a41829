#include "sync/watch.h"

#include "protocol/cmd.h"
#include "protocol/parse.h"
#include "protocol/xrep.h"
#include "store/store.h"
#include "sync/names.h"
#include "sync/watch_internal.h"
#include "twinbox/config.h"
#include "twinbox/imap.h"
#include "twinbox/state.h"
#include "util/buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TICK_MS   200
#define SETTLE_MS 2000
/* RFC 2177: servers may end an IDLE after 29 minutes of inactivity (and an idle session
 * after 30): restart IDLE, and NOOP a NOTIFY session, well before. */
#define REFRESH_MS (25.0 * 60 * 1000)

void tb_watch_release_all(struct tb_watcher *w)
{
    if (w->released)
        return;
    w->released = true;
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < w->side[k].n; i++) {
            struct tb_wconn *wc = &w->side[k].conn[i];
            if (wc->held && !wc->s.failed)
                tb_imap_release(wc->s.c);
        }
}

const struct tb_state_mailbox *tb_watch_state_box(const struct tb_watcher *w, const char *canon)
{
    for (size_t i = 0; i < w->n_smb; i++)
        if (strcmp(w->smb[i].name, canon) == 0)
            return &w->smb[i];
    return NULL;
}

void tb_watch_warn(struct tb_watcher *w, int k, const char *fmt, ...)
{
    char text[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    struct tb_sync_event ev = {.kind = TB_SYNC_EV_WARNING, .pair = w->pair->name, .side = k};
    tb_sync_emitf(w->on_event, w->event_ud, &ev, "%s: %s", w->side[k].conn[0].s.label, text);
}

/* ---- X-REPLICATE WATCH ---- */

/* The first report covers everything since the stored position, our own last writes
 * included: only numbers that differ from the state's are a change. After it, any line
 * but STATUS and POSITION is one. */
static bool watch_untagged(struct tb_imap *c, const struct tb_resp *r, void *ud)
{
    (void)c;
    struct tb_wconn *sd = ud;
    struct tb_watcher *w = sd->w;
    const struct tb_xrep *x = tb_xrep_of(r);
    if (!x) {
        if (!tb_xrep_unreadable(r))
            return false;
        w->changed = true; /* unreadable: let a sync look */
    } else if (!sd->reported && x->kind == TB_XREP_STATUS) {
        char *canon = tb_name_canon(x->name, tb_store_ns(&sd->s));
        const struct tb_state_mailbox *m = tb_watch_state_box(w, canon);
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
        tb_watch_release_all(w);
    return true;
}

static void watch_done(struct tb_imap *c, const struct tb_imap_result *r, void *ud)
{
    (void)c;
    struct tb_wconn *sd = ud;
    sd->held = false;
    sd->s.pending--;
    if (r->status == TB_IMAP_NO || r->status == TB_IMAP_BAD) {
        /* A refused position: the next sync starts over; wake it. */
        tb_watch_warn(sd->w, sd->k, "XREPLICATE WATCH: %s", r->text);
        sd->w->changed = true;
    }
    tb_watch_release_all(sd->w); /* the other side has nothing left to wait for */
}

static void xrep_watch(struct tb_wconn *sd, const char *token)
{
    struct tb_cmd *cmd = tb_cmd_new("XREPLICATE");
    tb_cmd_atom(cmd, "WATCH");
    if (strlen(token) > 1000)
        tb_cmd_literal(cmd, token, strlen(token));
    else
        tb_cmd_astring(cmd, token);
    tb_cmd_continuation(cmd, "DONE");
    sd->held = true;
    sd->s.pending++;
    tb_imap_submit(sd->s.c, cmd, TB_CMD_HOLD, watch_done, watch_untagged, sd);
}

/* ---- the wait ---- */

static void on_tick(uv_timer_t *t)
{
    struct tb_watcher *w = t->data;
    w->left_ms -= TICK_MS;
    w->refresh_ms -= TICK_MS;
    /* Another thread (the daemon's main one) sets the flag: an atomic load, not a plain
     * read of a volatile. */
    if (__atomic_load_n(w->stop, __ATOMIC_RELAXED) || w->left_ms <= 0) {
        tb_watch_release_all(w);
    } else if (w->refresh_ms <= 0) {
        w->refresh_ms = w->refresh_every_ms;
        tb_push_refresh(w);
    }
}

/* Every started store, for tb_store_wait. */
static int all_stores(struct tb_watcher *w, struct tb_store **out)
{
    int n = 0;
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < w->side[k].n; i++)
            if (w->side[k].conn[i].started)
                out[n++] = &w->side[k].conn[i].s;
    return n;
}

static bool any_failed(struct tb_watcher *w, char *err, size_t errlen)
{
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < w->side[k].n; i++)
            if (w->side[k].conn[i].started && w->side[k].conn[i].s.failed) {
                snprintf(err, errlen, "%s", w->side[k].conn[i].s.err.msg);
                return true;
            }
    return false;
}

/* Runs the loop until every store is idle (a set-up phase is done), or the wait is over
 * (the interval, *stop, a change: a server that never answers must not hold SIGTERM up for
 * its timeout). 0 done, 1 over, -1 a store failed. */
static int wait_phase(struct tb_watcher *w, uv_loop_t *loop)
{
    struct tb_store *st[2 * TB_WATCH_MAILBOXES_MAX];
    for (;;) {
        int n = all_stores(w, st), busy = 0;
        for (int i = 0; i < n; i++) {
            if (st[i]->failed)
                return -1;
            busy += st[i]->pending > 0;
        }
        if (!busy)
            return 0;
        if (w->released)
            return 1;
        uv_run(loop, UV_RUN_ONCE); /* the tick wakes it at least every TICK_MS */
    }
}

/* After the release: the DONEs' answers, for at most SETTLE_MS (a server that never
 * answers must not hold a stop up for its timeout). */
static void settle(struct tb_watcher *w, uv_loop_t *loop)
{
    struct tb_store *st[2 * TB_WATCH_MAILBOXES_MAX];
    uint64_t t0 = uv_now(loop);
    for (;;) {
        int n = all_stores(w, st), busy = 0;
        for (int i = 0; i < n; i++)
            busy += !st[i]->failed && st[i]->pending > 0;
        if (!busy || uv_now(loop) - t0 >= SETTLE_MS)
            return;
        uv_run(loop, UV_RUN_ONCE); /* the tick wakes it at least every TICK_MS */
    }
}

/* Until a change, the interval's end, *stop, or a connection's failure (-1). */
static int hold_until_done(struct tb_watcher *w, uv_loop_t *loop, char *err, size_t errlen)
{
    while (!w->released) {
        if (any_failed(w, err, errlen))
            return -1;
        uv_run(loop, UV_RUN_ONCE);
    }
    settle(w, loop);
    return 0;
}

/* LOGOUT where a connection is idle; the others are closed by tb_store_free. */
static void logout_idle(struct tb_watcher *w)
{
    struct tb_store *st[2 * TB_WATCH_MAILBOXES_MAX];
    int n = all_stores(w, st), m = 0;
    for (int i = 0; i < n; i++)
        if (!st[i]->failed && st[i]->ready && !st[i]->pending)
            st[m++] = st[i];
    tb_store_logout(st, m);
}

/* Which way side k is watched; connection 0 is started for every side but NONE. */
static enum tb_wmode side_mode(const struct tb_account *acct, struct tb_state *st, int k,
                               char **token)
{
    if (acct->xreplicate && tb_state_xrep_token(st, k, token) == 0 && *token &&
        strlen(*token) > TB_XREP_TOKEN_MAX) {
        free(*token); /* never sent: see TB_XREP_TOKEN_MAX */
        *token = NULL;
    }
    return *token ? TB_WMODE_XREP : TB_WMODE_IDLE; /* refined once connected */
}

/* After connecting: X-REPLICATE only where offered; else NOTIFY, else IDLE, else nothing. */
static void refine_mode(struct tb_watcher *w, int k, char **token)
{
    struct tb_wside *sd = &w->side[k];
    struct tb_imap *c = sd->conn[0].s.c;
    if (sd->mode == TB_WMODE_XREP && !tb_imap_has_cap(c, "X-REPLICATE")) {
        free(*token);
        *token = NULL;
        sd->mode = TB_WMODE_IDLE;
    }
    if (sd->mode == TB_WMODE_IDLE && tb_imap_has_cap(c, "NOTIFY"))
        sd->mode = TB_WMODE_NOTIFY;
    else if (sd->mode == TB_WMODE_IDLE && !tb_imap_has_cap(c, "IDLE"))
        sd->mode = TB_WMODE_NONE;
}

/* A side nothing can watch needs no connection during the wait. */
static void drop_side(struct tb_watcher *w, int k)
{
    struct tb_wconn *c0 = &w->side[k].conn[0];
    struct tb_store *one = &c0->s;
    tb_store_logout(&one, 1);
    tb_store_free(one);
    c0->started = false;
}

/* The phases of the push sides before they hold (see watch_internal.h), each run on both
 * sides and waited for before the next: 0 done, 1 the wait is over, -1 a store failed. A
 * NOTIFY refused in the first phase turns its side to IDLE for the next ones. */
static int push_phases(struct tb_watcher *w, uv_loop_t *loop, const struct tb_account *acct[2],
                       const char *password[2])
{
    for (int phase = 0; phase < 5; phase++) {
        for (int k = 0; k < 2; k++) {
            enum tb_wmode m = w->side[k].mode;
            bool push = m == TB_WMODE_NOTIFY || m == TB_WMODE_IDLE;
            if (phase == 0 && m == TB_WMODE_NOTIFY)
                tb_push_notify_start(w, k);
            else if (phase == 1 && m == TB_WMODE_IDLE)
                tb_push_idle_open(w, k, loop, acct[k], password[k]);
            else if (phase == 2 && m == TB_WMODE_IDLE)
                tb_push_idle_examine(w, k);
            else if (phase == 3 && push)
                tb_push_list_start(w, k);
            else if (phase == 4 && push)
                tb_push_listed(w, k);
        }
        int r = phase < 4 ? wait_phase(w, loop) : 0;
        if (r)
            return r;
    }
    return 0;
}

static void watcher_free(struct tb_watcher *w, uv_loop_t *loop)
{
    w->released = true; /* aborted callbacks must not start anything */
    uv_timer_stop(&w->tick);
    uv_close((uv_handle_t *)&w->tick, NULL);
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < w->side[k].n; i++) {
            if (w->side[k].conn[i].started)
                tb_store_free(&w->side[k].conn[i].s);
            free(w->side[k].conn[i].box);
        }
    uv_run(loop, UV_RUN_DEFAULT);
    tb_state_mailboxes_free(w->smb, w->n_smb);
    free(w);
}

static double refresh_every(void)
{
    /* Tests shorten it to see a restarted IDLE still report. */
    const char *e = getenv("TWINBOX_TEST_IDLE_REFRESH_MS");
    double v = e ? strtod(e, NULL) : 0;
    return v >= TICK_MS && v <= REFRESH_MS ? v : REFRESH_MS;
}

int tb_watch_wait(uv_loop_t *loop, const struct tb_pair *pair, const struct tb_account *acct[2],
                  const char *password[2], struct tb_state *st, double max_wait_s,
                  volatile sig_atomic_t *stop, tb_sync_event_fn *on_event, void *event_ud,
                  int *watched, char *err, size_t errlen)
{
    struct tb_watcher *w = tb_xcalloc(1, sizeof(*w));
    *w = (struct tb_watcher){.pair = pair,
                             .stop = stop,
                             .left_ms = max_wait_s * 1000,
                             .refresh_every_ms = refresh_every(),
                             .on_event = on_event,
                             .event_ud = event_ud};
    w->refresh_ms = w->refresh_every_ms;
    char *token[2] = {NULL, NULL};
    int rc = 0;
    *watched = 0;
    if (tb_state_mailboxes(st, &w->smb, &w->n_smb) < 0) {
        snprintf(err, errlen, "pair %s: state: %s", pair->name, tb_state_error(st));
        free(w);
        return -1;
    }
    for (int k = 0; k < 2; k++) {
        struct tb_wconn *c0 = &w->side[k].conn[0];
        w->side[k].mode = side_mode(acct[k], st, k, &token[k]);
        w->side[k].n = 1;
        *c0 = (struct tb_wconn){.w = w, .k = k, .started = true};
        tb_store_init(&c0->s, loop, acct[k], password[k]);
    }
    uv_timer_init(loop, &w->tick);
    w->tick.data = w;
    uv_timer_start(&w->tick, on_tick, TICK_MS, TICK_MS);
    int r = wait_phase(w, loop); /* connected */
    for (int k = 0; k < 2 && r == 0; k++) {
        refine_mode(w, k, &token[k]);
        if (w->side[k].mode == TB_WMODE_NONE)
            drop_side(w, k);
    }
    if (r == 0)
        r = push_phases(w, loop, acct, password);
    for (int k = 0; k < 2 && r == 0 && !w->released && !w->changed; k++) {
        if (w->side[k].mode == TB_WMODE_XREP)
            xrep_watch(&w->side[k].conn[0], token[k]);
        else
            tb_push_hold(w, k);
        *watched += w->side[k].mode != TB_WMODE_NONE;
    }
    if (r == 0 && w->changed)
        tb_watch_release_all(w);
    if (r == 0)
        rc = hold_until_done(w, loop, err, errlen);
    else if (r < 0)
        rc = -1;
    if (rc < 0)
        any_failed(w, err, errlen);
    if (rc < 0 && w->changed)
        rc = 0; /* a change was seen before the failure: worth a run all the same */
    if (rc == 0) {
        rc = w->changed ? 1 : 0;
        logout_idle(w);
    }
    for (int k = 0; k < 2; k++)
        free(token[k]);
    watcher_free(w, loop);
    return rc;
}
