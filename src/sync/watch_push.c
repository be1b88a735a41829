/* Push for servers without X-REPLICATE: NOTIFY (RFC 5465) where it works, else IDLE
 * (RFC 2177) on the pair's watch-mailboxes (INBOX by default), one connection each.
 *
 * Ordering, so that no change between the end of the last run and the start of the watch
 * is missed: NOTIFY SET (or EXAMINE of every watched mailbox) comes first, then a listing
 * that is compared with the state. A change before the listing shows in it; one after is
 * reported by NOTIFY, or by the IDLE connection's mailbox (Dovecot reports what changed
 * since the EXAMINE when IDLE starts). Mailboxes nobody watches wait for the interval.
 *
 * Everything a server sends here is untrusted: an unreadable line that may be a change
 * wakes the pair (a no-op run is cheap); a refused IDLE or EXAMINE leaves that mailbox to
 * the interval with one warning; an IDLE the server keeps ending is restarted at most
 * MAX_RESTARTS times per wait. */
#include "protocol/cmd.h"
#include "protocol/parse.h"
#include "store/store.h"
#include "sync/names.h"
#include "sync/watch_internal.h"
#include "twinbox/imap.h"
#include "twinbox/state.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_RESTARTS 3

static void wake(struct tb_watcher *w)
{
    w->changed = true;
    tb_watch_release_all(w);
}

/* Whether a mailbox of side k (wire name; NULL: unknown) is one the pair syncs. Names
 * outside the personal namespace are not; an unknown name may be. */
static bool wanted(struct tb_wconn *wc, const char *wire)
{
    if (!wire)
        return true;
    char *canon = tb_mbox_canon(tb_store_ns(&wc->s), wire, NULL);
    bool yes = canon && tb_pair_wants(wc->w->pair, canon);
    free(canon);
    return yes;
}

/* The mailbox a NOTIFY STATUS or LIST line is about; NULL when libetpan could not read it
 * (e.g. a LIST with OLDNAME); malloc'd. */
static char *event_mailbox(const struct tb_resp *r)
{
    if (!r->data || r->data->rsp_type != MAILIMAP_RESP_DATA_TYPE_MAILBOX_DATA)
        return NULL;
    const struct mailimap_mailbox_data *md = r->data->rsp_data.rsp_mailbox_data;
    if (md->mbd_type == MAILIMAP_MAILBOX_DATA_STATUS && md->mbd_data.mbd_status &&
        md->mbd_data.mbd_status->st_mailbox)
        return tb_mboxname_unwire(md->mbd_data.mbd_status->st_mailbox);
    if (md->mbd_type == MAILIMAP_MAILBOX_DATA_LIST && md->mbd_data.mbd_list &&
        md->mbd_data.mbd_list->mb_name)
        return strdup(md->mbd_data.mbd_list->mb_name);
    return NULL;
}

/* Connection handler of every push connection: once armed, what reports a change of a
 * mailbox wakes the pair. Lines of commands in flight (the listing) were claimed first. */
static bool push_untagged(struct tb_imap *c, const struct tb_resp *r, void *ud)
{
    (void)c;
    struct tb_wconn *wc = ud;
    if (!wc->armed || r->kind != TB_RESP_UNTAGGED)
        return false;
    char kw[24];
    tb_resp_untagged_keyword(r, kw, sizeof(kw));
    if (!strcmp(kw, "EXISTS") || !strcmp(kw, "EXPUNGE") || !strcmp(kw, "FETCH") ||
        !strcmp(kw, "VANISHED")) {
        wake(wc->w);
        return true;
    }
    if (!strcmp(kw, "STATUS") || !strcmp(kw, "LIST")) {
        char *name = event_mailbox(r);
        if (wanted(wc, name))
            wake(wc->w);
        free(name);
        return true;
    }
    /* "* NO NOTIFY error, some events may have got lost", [NOTIFICATIONOVERFLOW]: the
     * server stopped telling; let a run look. */
    bool overflow = r->raw_len > 0 && memmem(r->raw, r->raw_len, "NOTIFICATIONOVERFLOW", 20);
    if (wc->box == NULL && (!strcmp(kw, "NO") || overflow)) {
        wake(wc->w);
        return true;
    }
    return false;
}

/* ---- NOTIFY ---- */

static void notify_done(struct tb_imap *c, const struct tb_imap_result *r, void *ud)
{
    (void)c;
    struct tb_wconn *wc = ud;
    wc->s.pending--;
    if (r->status == TB_IMAP_OK) {
        wc->armed = true;
    } else if (r->status != TB_IMAP_ABORTED) {
        /* Dovecot without mailbox_list_index: NO [NOTIFICATIONOVERFLOW]. */
        tb_watch_warn(wc->w, wc->k, "NOTIFY refused (%s); IDLE instead", r->text);
        wc->w->side[wc->k].mode = TB_WMODE_IDLE;
    }
}

void tb_push_notify_start(struct tb_watcher *w, int k)
{
    struct tb_wconn *wc = &w->side[k].conn[0];
    tb_imap_add_handler(wc->s.c, push_untagged, wc);
    /* FlagChange needs MessageNew and MessageExpunge with it (RFC 5465 5.4); flag changes
     * outside the selected mailbox show as HIGHESTMODSEQ, which the session's ENABLE
     * CONDSTORE makes Dovecot send (without it, only \Seen changes show, as UNSEEN). */
    struct tb_cmd *cmd = tb_cmd_new("NOTIFY");
    tb_cmd_atom(cmd, "SET");
    tb_cmd_printf(cmd, "(personal (MessageNew MessageExpunge FlagChange MailboxName "
                       "SubscriptionChange))");
    wc->s.pending++;
    tb_imap_submit(wc->s.c, cmd, 0, notify_done, NULL, wc);
}

/* ---- IDLE ---- */

void tb_push_idle_open(struct tb_watcher *w, int k, uv_loop_t *loop, const struct tb_account *acct,
                       const char *password)
{
    struct tb_wside *sd = &w->side[k];
    const struct tb_ns *ns = tb_store_ns(&sd->conn[0].s);
    const struct tb_pair *p = w->pair;
    size_t n = p->n_watch_mailboxes ? p->n_watch_mailboxes : 1;
    if (n > TB_WATCH_MAILBOXES_MAX)
        n = TB_WATCH_MAILBOXES_MAX; /* the configuration refuses more */
    sd->n = 0;
    for (size_t i = 0; i < n; i++) {
        const char *canon = p->n_watch_mailboxes ? p->watch_mailboxes[i] : "INBOX";
        const char *why = NULL;
        char *wire = tb_mbox_wire(ns, canon, &why);
        if (!wire) {
            tb_watch_warn(w, k, "watch-mailboxes: %s: %s", canon, why ? why : "no such name");
            continue;
        }
        struct tb_wconn *wc = &sd->conn[sd->n];
        if (sd->n > 0) {
            *wc = (struct tb_wconn){.w = w, .k = k, .started = true};
            tb_store_init(&wc->s, loop, acct, password);
        }
        wc->box = wire;
        sd->n++;
    }
    if (sd->n == 0)
        sd->n = 1; /* connection 0 still lists */
}

static void examine_done(struct tb_imap *c, const struct tb_imap_result *r, void *ud)
{
    (void)c;
    struct tb_wconn *wc = ud;
    wc->s.pending--;
    if (r->status == TB_IMAP_OK) {
        wc->armed = true; /* its EXISTS came before this: from now on, news */
    } else if (r->status != TB_IMAP_ABORTED) {
        tb_watch_warn(wc->w, wc->k, "EXAMINE %s: %s; not watched", wc->box, r->text);
    }
}

void tb_push_idle_examine(struct tb_watcher *w, int k)
{
    struct tb_wside *sd = &w->side[k];
    for (int i = 0; i < sd->n; i++) {
        struct tb_wconn *wc = &sd->conn[i];
        if (!wc->box)
            continue;
        tb_imap_add_handler(wc->s.c, push_untagged, wc);
        struct tb_cmd *cmd = tb_cmd_new("EXAMINE");
        tb_cmd_astring(cmd, wc->box);
        wc->s.pending++;
        tb_imap_submit(wc->s.c, cmd, TB_CMD_FENCE, examine_done, NULL, wc);
    }
}

static void submit_idle(struct tb_wconn *wc);

static void idle_done(struct tb_imap *c, const struct tb_imap_result *r, void *ud)
{
    (void)c;
    struct tb_wconn *wc = ud;
    wc->held = false;
    wc->s.pending--;
    if (wc->w->released || r->status == TB_IMAP_ABORTED)
        return;
    if (r->status != TB_IMAP_OK) {
        tb_watch_warn(wc->w, wc->k, "IDLE in %s: %s; not watched", wc->box, r->text);
        return;
    }
    if (!wc->refresh && ++wc->restarts > MAX_RESTARTS) {
        tb_watch_warn(wc->w, wc->k, "IDLE in %s: ended by the server %d times; not watched",
                      wc->box, MAX_RESTARTS + 1);
        return;
    }
    wc->refresh = false;
    submit_idle(wc);
}

static void submit_idle(struct tb_wconn *wc)
{
    struct tb_cmd *cmd = tb_cmd_new("IDLE");
    tb_cmd_continuation(cmd, "DONE");
    wc->held = true;
    wc->s.pending++;
    tb_imap_submit(wc->s.c, cmd, TB_CMD_HOLD, idle_done, NULL, wc);
}

void tb_push_hold(struct tb_watcher *w, int k)
{
    struct tb_wside *sd = &w->side[k];
    if (sd->mode != TB_WMODE_IDLE)
        return;
    for (int i = 0; i < sd->n; i++)
        if (sd->conn[i].box && sd->conn[i].armed)
            submit_idle(&sd->conn[i]);
}

static void noop_done(struct tb_imap *c, const struct tb_imap_result *r, void *ud)
{
    (void)c;
    (void)r;
    ((struct tb_wconn *)ud)->s.pending--;
}

void tb_push_refresh(struct tb_watcher *w)
{
    for (int k = 0; k < 2; k++) {
        struct tb_wside *sd = &w->side[k];
        for (int i = 0; i < sd->n && sd->mode == TB_WMODE_IDLE; i++) {
            struct tb_wconn *wc = &sd->conn[i];
            if (wc->held && !wc->s.failed) {
                wc->refresh = true;
                tb_imap_release(wc->s.c); /* idle_done starts it again */
            }
        }
        struct tb_wconn *c0 = &sd->conn[0];
        if (sd->mode == TB_WMODE_NOTIFY && !c0->s.failed && !c0->s.pending) {
            c0->s.pending++;
            tb_imap_submit(c0->s.c, tb_cmd_new("NOOP"), 0, noop_done, NULL, c0);
        }
    }
}

/* ---- the listing ---- */

void tb_push_list_start(struct tb_watcher *w, int k)
{
    tb_store_list_start(&w->side[k].conn[0].s);
}

static bool same_numbers(const struct tb_state_side *b, const struct tb_mbox_info *m)
{
    return b->uidvalidity == m->uidvalidity && b->uidnext == m->uidnext &&
           b->highestmodseq == m->highestmodseq;
}

/* Compares the listing with the state, like X-REPLICATE's first report: a wanted mailbox
 * with other numbers, one the state lacks, or one of the state the server no longer lists
 * is a change. A mailbox listed without numbers (STATUS refused) is left to the run. */
void tb_push_listed(struct tb_watcher *w, int k)
{
    struct tb_store *s = &w->side[k].conn[0].s;
    const struct tb_ns *ns = tb_store_ns(s);
    bool *seen = tb_xcalloc(w->n_smb + 1, sizeof(*seen));
    for (size_t i = 0; i < s->n_boxes && !w->changed; i++) {
        const struct tb_mbox_info *m = &s->boxes[i];
        char *canon = tb_mbox_canon(ns, m->name, NULL);
        if (canon && tb_pair_wants(w->pair, canon)) {
            const struct tb_state_mailbox *sb = tb_watch_state_box(w, canon);
            if (sb)
                seen[sb - w->smb] = true;
            if (!m->noselect && m->have_status && (!sb || !same_numbers(&sb->side[k], m)))
                w->changed = true;
        }
        free(canon);
    }
    for (size_t i = 0; i < w->n_smb && !w->changed && !s->list_incomplete; i++)
        if (!seen[i] && tb_pair_wants(w->pair, w->smb[i].name))
            w->changed = true; /* gone from the server */
    free(seen);
}
