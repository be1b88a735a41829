#include "store/store_internal.h"

#include "protocol/cmd.h"
#include "protocol/parse.h"
#include "store/fetch.h"
#include "twinbox/imap.h"
#include "util/flags.h"
#include "util/strpool.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- the strings of a delta's records ---- */

/* m's strings into d's pool (the record's own ones freed): m->pooled is set. */
static void pool_take(struct tb_delta *d, struct tb_msg_info *m)
{
    char *flags = m->flags, *ident = m->ident;
    bool own = !m->pooled;
    m->flags = flags ? tb_strpool_intern(&d->pool, flags) : NULL;
    m->ident = ident ? tb_strpool_store(&d->pool, ident) : NULL;
    m->pooled = true;
    if (own) {
        free(flags);
        free(ident);
    }
}

/* ---- per-mailbox deltas ---- */

void tb_delta_clear(struct tb_delta *d)
{
    for (size_t i = 0; i < d->n_msgs; i++)
        tb_msg_info_clear(&d->msgs[i]); /* records of others (xr.c) own their strings */
    free(d->msgs);
    tb_strpool_free(&d->pool);
    tb_uidset_free(&d->vanished);
    tb_uidset_free(&d->present);
    tb_uidset_free(&d->asked);
    free(d->unreadable);
    free(d->perm);
    tb_uidmap_free(&d->by_uid);
    memset(d, 0, sizeof(*d));
}

void tb_delta_unreadable(struct tb_delta *d, const char *why, const char *raw, size_t len)
{
    if (d->unreadable)
        return; /* the first cause is the one worth showing */
    size_t n = len;
    while (n && (raw[n - 1] == '\n' || raw[n - 1] == '\r'))
        n--;
    struct tb_buf b;
    tb_buf_init(&b);
    tb_buf_printf(&b, n ? "%s: " : "%s", why);
    /* The first bytes of the line, printable ASCII only: it goes into one log line. */
    for (size_t i = 0; i < n && i < 80; i++)
        tb_buf_printf(&b, "%c", raw[i] >= 0x20 && raw[i] < 0x7f ? raw[i] : '?');
    if (n > 80)
        tb_buf_puts(&b, "...");
    d->unreadable = tb_xstrdup(tb_buf_cstr(&b));
    tb_buf_free(&b);
}

/* The UIDs asked for by name that the listing did not answer, below the mailbox's UIDNEXT,
 * into d->vanished: a copy of this run expunged before its settling pass read it. Without
 * this, a CONDSTORE server's expunge of it was never seen: that pass records a
 * HIGHESTMODSEQ past the expunge, so no later run looks at the mailbox again. By ranges:
 * a faulty server's APPENDUID may name any UID. */
static void asked_missing(struct tb_delta *d)
{
    if (tb_uidset_empty(&d->asked) || d->uidnext <= d->base_uidnext)
        return; /* without the mailbox's UIDNEXT, nothing above the base is proven */
    struct tb_uidset seen;
    tb_uidset_init(&seen);
    for (size_t i = 0; i < d->n_msgs; i++)
        if (d->msgs[i].uid >= d->base_uidnext)
            tb_uidset_add(&seen, d->msgs[i].uid);
    tb_uidset_normalize(&seen);
    tb_uidset_normalize(&d->asked);
    size_t j = 0;
    for (size_t i = 0; i < d->asked.n; i++) {
        uint64_t lo = d->asked.r[i].lo, hi = d->asked.r[i].hi;
        if (hi >= d->uidnext)
            hi = d->uidnext - 1;
        while (j < seen.n && seen.r[j].hi < lo)
            j++;
        /* lo..hi less the seen ranges that overlap it, in order */
        for (size_t k = j; lo <= hi && k < seen.n && seen.r[k].lo <= hi; k++) {
            if (seen.r[k].lo > lo)
                tb_uidset_add_range(&d->vanished, (uint32_t)lo, seen.r[k].lo - 1);
            if ((uint64_t)seen.r[k].hi + 1 > lo)
                lo = (uint64_t)seen.r[k].hi + 1;
        }
        if (lo <= hi)
            tb_uidset_add_range(&d->vanished, (uint32_t)lo, (uint32_t)hi);
    }
    tb_uidset_free(&seen);
}

/* Without QRESYNC the expunges are what is missing from the listing of the known messages
 * (UID SEARCH, or the UID FLAGS listing): trusted only when that listing and the new
 * messages together are exactly EXISTS. */
static void listing_check(struct tb_delta *d)
{
    tb_uidset_normalize(&d->present);
    uint64_t old = tb_uidset_count(&d->present), fresh = 0;
    for (size_t i = 0; i < d->n_msgs; i++)
        if (d->msgs[i].uid >= d->base_uidnext)
            fresh++;
    if (!d->have_exists || old + fresh != d->exists) {
        char why[200];
        if (d->have_exists)
            snprintf(why, sizeof(why),
                     "the listing has %llu known and %llu new messages, EXISTS says %u",
                     (unsigned long long)old, (unsigned long long)fresh, d->exists);
        else
            snprintf(why, sizeof(why), "the server sent no EXISTS");
        d->unreadable = tb_xstrdup(why);
        return;
    }
    /* vanished = [1, base UIDNEXT) less what is present, as ranges */
    uint32_t next = 1;
    for (size_t i = 0; i < d->present.n && next < d->base_uidnext; i++) {
        uint64_t lo = d->present.r[i].lo, hi = d->present.r[i].hi;
        if (lo > next)
            tb_uidset_add_range(
                &d->vanished, next,
                (uint32_t)(lo - 1 < d->base_uidnext - 1 ? lo - 1 : d->base_uidnext - 1));
        if (hi + 1 > next)
            next = hi + 1 > UINT32_MAX ? UINT32_MAX : (uint32_t)(hi + 1);
    }
    if (next < d->base_uidnext)
        tb_uidset_add_range(&d->vanished, next, d->base_uidnext - 1);
    asked_missing(d);
}

/* Once the delta's FETCH completed: what it holds must be a consistent picture, or the pass
 * must not act on it. A VANISHED UID at or above UIDNEXT was never assigned (the server is
 * wrong, so nothing it said about this mailbox can be trusted); a full listing must list
 * exactly EXISTS messages, or absences in it prove nothing. */
void tb_store_delta_check(struct tb_delta *d)
{
    if (!d || d->unreadable)
        return;
    char why[160];
    if (!tb_uidset_empty(&d->vanished) && d->uidnext && tb_uidset_max(&d->vanished) >= d->uidnext) {
        snprintf(why, sizeof(why), "VANISHED names UID %u, at or above UIDNEXT %u",
                 tb_uidset_max(&d->vanished), d->uidnext);
        d->unreadable = tb_xstrdup(why);
        return;
    }
    if (d->by_listing) {
        listing_check(d);
        return;
    }
    if (d->full && (!d->have_exists || d->n_msgs != d->exists)) {
        if (d->have_exists)
            snprintf(why, sizeof(why), "the listing has %zu messages, EXISTS says %u", d->n_msgs,
                     d->exists);
        else
            snprintf(why, sizeof(why), "the server sent no EXISTS");
        d->unreadable = tb_xstrdup(why);
    }
}

/* The index of the first record of `uid` in d->msgs: the one at d->next_merge when it has
 * the UID and no UID is there twice (store.h). Otherwise by d->by_uid: brought up to date
 * with the records appended since (first index wins, as a front-to-back search would
 * find), and rebuilt when it no longer matches (msgs reordered or replaced since). */
static bool record_of(struct tb_delta *d, uint32_t uid, size_t *at)
{
    if (d->n_unique == d->n_msgs && d->next_merge < d->n_msgs &&
        d->msgs[d->next_merge].uid == uid) {
        *at = d->next_merge;
        return true;
    }
    for (int pass = 0; pass < 2; pass++) {
        if (pass || d->n_indexed > d->n_msgs) {
            tb_uidmap_clear(&d->by_uid);
            d->n_indexed = 0;
        }
        for (size_t i = d->n_indexed, seen; i < d->n_msgs; i++)
            if (!tb_uidmap_get(&d->by_uid, d->msgs[i].uid, &seen))
                tb_uidmap_put(&d->by_uid, d->msgs[i].uid, i);
        d->n_indexed = d->n_msgs;
        if (!tb_uidmap_get(&d->by_uid, uid, at))
            return false;
        if (*at < d->n_msgs && d->msgs[*at].uid == uid)
            return true;
    }
    return false; /* not reached: a fresh index is consistent */
}

/* One FETCH of a delta: merged into the record of its UID (the same UID can arrive twice:
 * the SELECT's changes, then the new-message FETCH). A FETCH without a UID is unusable. */
static bool delta_fetch(struct tb_delta *d, struct mailimap_msg_att *att, const struct tb_resp *r)
{
    struct tb_msg_info m;
    if (!tb_fetch_to_info(att, &m, NULL, NULL)) {
        tb_msg_info_clear(&m);
        tb_delta_unreadable(d, "FETCH without UID", r->raw, r->raw_len);
        return true;
    }
    if (d->by_listing && m.uid < d->base_uidnext)
        tb_uidset_add(&d->present, m.uid); /* the UID FLAGS listing of the known messages */
    tb_delta_merge(d, &m);
    return true;
}

/* More records than the messages EXISTS announced (and a margin for the odd duplicate): a
 * server cannot list them, so a hostile one streaming FETCH lines does not grow memory. */
static bool over_announced(const struct tb_delta *d)
{
    return d->have_exists && d->n_msgs >= d->announced + d->announced / 8 + 1024;
}

void tb_delta_merge(struct tb_delta *d, struct tb_msg_info *m)
{
    /* Servers answer in UID order: a UID above the last one recorded is new to the delta
     * (no lookup, no index); any other is looked up by UID. */
    size_t at;
    bool looked = d->n_msgs && m->uid <= d->msgs[d->n_msgs - 1].uid;
    bool found = looked && record_of(d, m->uid, &at);
    if (!found && over_announced(d)) {
        if (!d->unreadable)
            tb_delta_unreadable(d, "more messages listed than EXISTS announced", "", 0);
        tb_msg_info_clear(m);
        return;
    }
    pool_take(d, m);
    if (found) {
        struct tb_msg_info *x = &d->msgs[at];
        d->next_merge = at + 1;
        if (!x->pooled)
            pool_take(d, x); /* a record put there by its owner: one kind of record */
        if (m->flags)
            x->flags = m->flags;
        if (m->ident)
            x->ident = m->ident;
        if (m->size)
            x->size = m->size;
        if (m->internaldate) {
            x->internaldate = m->internaldate;
            x->tz_minutes = m->tz_minutes;
        }
        if (m->modseq)
            x->modseq = m->modseq;
        memset(m, 0, sizeof(*m));
        return;
    }
    if (d->n_msgs == d->cap_msgs) {
        /* Doubling, but no further than the mailbox's announced size (and a few arrivals)
         * when that is nearer: a 100,000-message listing would otherwise hold room for
         * 131,072 records. The server's number only ever lowers the step. */
        size_t cap = d->cap_msgs ? d->cap_msgs * 2 : 256;
        if (d->have_exists && d->exists > d->n_msgs && (size_t)d->exists + 16 < cap)
            cap = (size_t)d->exists + 16;
        d->cap_msgs = cap;
        d->msgs = tb_xrealloc(d->msgs, d->cap_msgs * sizeof(*d->msgs));
    }
    /* Not found, or above every UID the merge appended: not there yet. (A UID above the
     * last record only is appended too, even when an earlier record has it.) */
    if (d->n_unique == d->n_msgs && (looked || !d->n_msgs || m->uid > d->top_uid))
        d->n_unique++;
    if (m->uid > d->top_uid)
        d->top_uid = m->uid;
    d->msgs[d->n_msgs++] = *m;
    memset(m, 0, sizeof(*m));
}

/* A SELECT's PERMANENTFLAGS: remembered for the mailbox (writes are filtered by it) and
 * given to the delta (the plan keeps what a side cannot store). */
static void perm_of(struct op *o, clist *flags)
{
    /* EXAMINE answers PERMANENTFLAGS () for the read-only session: it says nothing about
     * what the mailbox can keep (taken as it is, the plan would keep every flag off). */
    if (o->examine)
        return;
    struct tb_buf b;
    tb_buf_init(&b);
    bool keywords = false;
    for (clistiter *it = flags ? clist_begin(flags) : NULL; it; it = clist_next(it)) {
        struct mailimap_flag_perm *fp = clist_content(it);
        if (fp->fl_type == MAILIMAP_FLAG_PERM_ALL) {
            keywords = true;
            continue;
        }
        char *one = tb_flag_name(fp->fl_flag);
        tb_buf_printf(&b, "%s ", one);
        free(one);
    }
    const char *list = tb_buf_cstr(&b);
    if (o->box)
        tb_store_perm_set(o->s, o->box, list, keywords);
    if (o->delta) {
        free(o->delta->perm);
        o->delta->perm = tb_flags_canon(list);
        o->delta->perm_known = true;
        o->delta->perm_keywords = keywords;
    }
    tb_buf_free(&b);
}

/* A plain SELECT before writes: only its PERMANENTFLAGS are of interest. */
static bool select_untagged(struct tb_imap *c, const struct tb_resp *r, void *ud)
{
    (void)c;
    struct op *o = ud;
    if (!r->data || r->data->rsp_type != MAILIMAP_RESP_DATA_TYPE_COND_STATE ||
        !r->data->rsp_data.rsp_cond_state->rsp_text)
        return false;
    struct mailimap_resp_text_code *code = r->data->rsp_data.rsp_cond_state->rsp_text->rsp_code;
    if (!code || code->rc_type != MAILIMAP_RESP_TEXT_CODE_PERMANENTFLAGS)
        return false;
    perm_of(o, code->rc_data.rc_perm_flags);
    return true;
}

/* Routes SELECT/FETCH data into the delta of the command. Untagged data is offered to the
 * oldest command in flight first, and the server runs a connection's commands in order: all
 * data of one mailbox comes before the tagged completion of its FETCH, so several
 * mailboxes' SELECT+FETCH may be pipelined (tb_store_delta_queue) as long as each claims
 * what it recorded. A response nobody could parse, arriving while a delta is being read,
 * is claimed by that delta and makes it unreadable: it could have been any message. */
static bool delta_untagged(struct tb_imap *c, const struct tb_resp *r, void *ud)
{
    (void)c;
    struct op *o = ud;
    struct tb_delta *d = o->delta;
    if (!d)
        return false;
    if (!r->data) {
        if (r->kind != TB_RESP_UNTAGGED)
            return false;
        /* hoodiecrow: "* OK [HIGHESTMODSEQ NIL]" for a mailbox never written to. */
        if (r->raw_len >= 26 && strncasecmp(r->raw, "* OK [HIGHESTMODSEQ NIL]", 24) == 0)
            return true;
        /* GNU mailutils imap4d announces expunges as "* N EXPUNGED". */
        unsigned n;
        char word[10];
        if (sscanf(r->raw, "* %u %9s", &n, word) == 2 && strcasecmp(word, "EXPUNGED") == 0) {
            if (d->exists)
                d->exists--;
            return true;
        }
        tb_delta_unreadable(d, "unreadable response", r->raw, r->raw_len);
        return true;
    }
    struct mailimap_response_data *rd = r->data;
    if (rd->rsp_type == MAILIMAP_RESP_DATA_TYPE_MAILBOX_DATA &&
        rd->rsp_data.rsp_mailbox_data->mbd_type == MAILIMAP_MAILBOX_DATA_SEARCH) {
        if (!o->search)
            return false;
        clist *l = rd->rsp_data.rsp_mailbox_data->mbd_data.mbd_search;
        for (clistiter *it = l ? clist_begin(l) : NULL; it; it = clist_next(it)) {
            uint32_t uid = *(uint32_t *)clist_content(it);
            if (uid >= d->base_uidnext) {
                tb_delta_unreadable(d, "SEARCH answered a UID outside the range asked", r->raw,
                                    r->raw_len);
                break;
            }
            tb_uidset_add(&d->present, uid);
        }
        return true;
    }
    if (rd->rsp_type == MAILIMAP_RESP_DATA_TYPE_MESSAGE_DATA &&
        rd->rsp_data.rsp_message_data->mdt_type == MAILIMAP_MESSAGE_DATA_FETCH)
        return delta_fetch(d, rd->rsp_data.rsp_message_data->mdt_msg_att, r);
    if (rd->rsp_type == MAILIMAP_RESP_DATA_TYPE_MESSAGE_DATA &&
        rd->rsp_data.rsp_message_data->mdt_type == MAILIMAP_MESSAGE_DATA_EXPUNGE) {
        if (d->exists)
            d->exists--;
        return true;
    }
    if (rd->rsp_type == MAILIMAP_RESP_DATA_TYPE_MAILBOX_DATA &&
        rd->rsp_data.rsp_mailbox_data->mbd_type == MAILIMAP_MAILBOX_DATA_EXISTS) {
        uint32_t n = rd->rsp_data.rsp_mailbox_data->mbd_data.mbd_exists;
        if (!d->have_exists)
            d->announced = n;
        else if (n > d->exists)
            d->announced += n - d->exists; /* arrivals since (EXPUNGEs lowered exists) */
        d->exists = n;
        d->have_exists = true;
        return true;
    }
    if (rd->rsp_type == MAILIMAP_RESP_DATA_TYPE_EXTENSION_DATA) {
        struct mailimap_extension_data *e = rd->rsp_data.rsp_extension_data;
        if (e->ext_extension->ext_id == MAILIMAP_EXTENSION_QRESYNC &&
            e->ext_type == MAILIMAP_QRESYNC_TYPE_VANISHED) {
            struct mailimap_qresync_vanished *v = e->ext_data;
            uint64_t before = tb_uidset_count(&d->vanished);
            for (clistiter *it = clist_begin(v->qr_known_uids->set_list); it; it = clist_next(it)) {
                struct mailimap_set_item *si = clist_content(it);
                tb_uidset_add_range(&d->vanished, si->set_first, si->set_last);
            }
            /* Without EARLIER: expunged now, announced instead of EXPUNGE (RFC 7162). */
            if (!v->qr_earlier) {
                uint64_t gone = tb_uidset_count(&d->vanished) - before;
                d->exists = gone >= d->exists ? 0 : d->exists - (uint32_t)gone;
            }
            return true;
        }
    }
    if (rd->rsp_type == MAILIMAP_RESP_DATA_TYPE_COND_STATE &&
        rd->rsp_data.rsp_cond_state->rsp_text) {
        struct mailimap_resp_text_code *code = rd->rsp_data.rsp_cond_state->rsp_text->rsp_code;
        if (!code)
            return false;
        if (code->rc_type == MAILIMAP_RESP_TEXT_CODE_PERMANENTFLAGS) {
            perm_of(o, code->rc_data.rc_perm_flags);
            return true;
        }
        if (code->rc_type == MAILIMAP_RESP_TEXT_CODE_UIDVALIDITY) {
            d->uidvalidity = code->rc_data.rc_uidvalidity;
            return true;
        }
        if (code->rc_type == MAILIMAP_RESP_TEXT_CODE_UIDNEXT) {
            d->uidnext = code->rc_data.rc_uidnext;
            return true;
        }
        if (code->rc_type == MAILIMAP_RESP_TEXT_CODE_EXTENSION &&
            code->rc_data.rc_ext_data->ext_extension->ext_id == MAILIMAP_EXTENSION_CONDSTORE) {
            struct mailimap_condstore_resptextcode *cs = code->rc_data.rc_ext_data->ext_data;
            if (cs->cs_type == MAILIMAP_CONDSTORE_RESPTEXTCODE_HIGHESTMODSEQ) {
                d->highestmodseq = cs->cs_data.cs_modseq_value;
                return true;
            }
        }
    }
    return false;
}

enum tb_strategy tb_store_strategy(const struct tb_store *s)
{
    if (tb_imap_has_cap(s->c, "QRESYNC"))
        return TB_STRATEGY_QRESYNC;
    if (tb_imap_has_cap(s->c, "CONDSTORE"))
        return TB_STRATEGY_CONDSTORE;
    return TB_STRATEGY_LISTING;
}

const char *tb_strategy_name(enum tb_strategy st)
{
    return st == TB_STRATEGY_QRESYNC ? "QRESYNC"
           : st == TB_STRATEGY_CONDSTORE
               ? "CONDSTORE (flags by CHANGEDSINCE, expunges by UID SEARCH)"
               : "listing (UID FLAGS of every known message)";
}

enum { SEL_QUEUED = 1, SEL_EXAMINE = 2 };

/* SELECT (QRESYNC from the base when base_modseq > 0); a fence unless SEL_QUEUED; EXAMINE
 * with SEL_EXAMINE or on a read-only store. */
static void select_mailbox(struct tb_store *s, const char *mailbox, uint32_t base_uidvalidity,
                           uint64_t base_modseq, struct tb_delta *delta, int how)
{
    free(s->selected);
    s->selected = tb_xstrdup(mailbox);
    /* A migration's source is EXAMINEd: not even \Recent changes there. */
    bool examine = s->read_only || (how & SEL_EXAMINE);
    s->selected_ro = examine && !s->read_only;
    char what[300];
    snprintf(what, sizeof(what), "mailbox %s: SELECT", mailbox); /* store.c looks for it */
    struct tb_cmd *cmd = tb_cmd_new(examine ? "EXAMINE" : "SELECT");
    tb_cmd_astring(cmd, mailbox);
    if (base_modseq > 0)
        tb_cmd_printf(cmd, "(QRESYNC (%u %llu))", base_uidvalidity,
                      (unsigned long long)base_modseq);
    else if (tb_imap_has_cap(s->c, "CONDSTORE"))
        tb_cmd_atom(cmd, "(CONDSTORE)");
    struct op *o = tb_store_op_new(s, what);
    o->delta = delta;
    o->box = tb_xstrdup(mailbox);
    o->examine = examine;
    tb_imap_submit(s->c, cmd, (how & SEL_QUEUED) ? 0 : TB_CMD_FENCE, tb_store_op_done,
                   delta ? delta_untagged : select_untagged, o);
}

/* One command of a delta, its untagged data routed into it. */
static struct op *delta_cmd(struct tb_store *s, struct tb_delta *out, const char *mailbox,
                            const char *what, struct tb_cmd *cmd)
{
    char w[300];
    snprintf(w, sizeof(w), "mailbox %s: %s", mailbox, what);
    struct op *o = tb_store_op_new(s, w);
    o->delta = out;
    tb_imap_submit(s->c, cmd, 0, tb_store_op_done, delta_untagged, o);
    return o;
}

/* Pieces of `set` in as many commands "UID FETCH <piece> items" as the line limit needs:
 * skipped messages to retry, a settling pass's own copies and the UIDs between them. */
static void fetch_pieces(struct tb_store *s, const char *mailbox, struct tb_uidset *set,
                         const char *items, struct tb_delta *out)
{
    struct tb_buf b;
    tb_buf_init(&b);
    size_t budget = tb_store_set_budget(s, strlen("UID FETCH ") + strlen(items) + 1);
    for (size_t pos = 0; pos < set->n;) {
        b.len = 0;
        tb_uidset_render(set, &pos, &b, budget);
        struct tb_cmd *cmd = tb_cmd_new("UID FETCH");
        tb_cmd_printf(cmd, "%s %s", b.data, items);
        delta_cmd(s, out, mailbox, "FETCH", cmd);
    }
    tb_buf_free(&b);
}

/* The rungs below QRESYNC, for a mailbox with a base: the known messages' changed flags
 * (CHANGEDSINCE) and which of them still exist (UID SEARCH), or, without CONDSTORE, the
 * flags of every known message; what is missing is expunged (tb_store_delta_check). */
static void known_messages(struct tb_store *s, const char *mailbox, uint64_t base_modseq,
                           uint32_t base_uidnext, struct tb_delta *out)
{
    out->by_listing = true;
    out->base_uidnext = base_uidnext;
    if (base_uidnext <= 1)
        return;
    struct tb_cmd *cmd = tb_cmd_new("UID FETCH");
    if (tb_store_strategy(s) == TB_STRATEGY_CONDSTORE && base_modseq > 0) {
        tb_cmd_printf(cmd, "1:%u (UID FLAGS) (CHANGEDSINCE %llu)", base_uidnext - 1,
                      (unsigned long long)base_modseq);
        delta_cmd(s, out, mailbox, "FETCH", cmd);
        cmd = tb_cmd_new("UID SEARCH");
        tb_cmd_printf(cmd, "UID 1:%u", base_uidnext - 1);
        delta_cmd(s, out, mailbox, "SEARCH", cmd)->search = true;
    } else {
        tb_cmd_printf(cmd, "1:%u (UID FLAGS)", base_uidnext - 1);
        delta_cmd(s, out, mailbox, "FETCH", cmd);
    }
}

/* The new messages (UID >= from) of a mailbox whose writes made `known` of them (their
 * pairs recorded): the others with their identity; the known ones by their flags only, which
 * a QRESYNC SELECT has already reported (every one of them changed since the base). A
 * settling pass after 5,000 copies thus reads 5,000 flag lists instead of 1.6 MB of
 * identity headers. Returns the UID from which everything is fetched with identity (the
 * last command, "UID FETCH n:*"). Whatever `known` holds (an APPENDUID of a faulty server),
 * every UID from `from` on is asked for: each one either way. */
static uint32_t known_new(struct tb_store *s, const char *mailbox, uint32_t from,
                          struct tb_uidset *known, bool flags_reported, struct tb_delta *out)
{
    struct tb_uidset gaps, ours;
    tb_uidset_init(&gaps);
    tb_uidset_init(&ours);
    uint64_t next = from;
    tb_uidset_normalize(known);
    for (size_t i = 0; i < known->n; i++) {
        uint64_t lo = known->r[i].lo, hi = known->r[i].hi;
        if (hi < next)
            continue;
        if (lo < next)
            lo = next;
        if (lo > next)
            tb_uidset_add_range(&gaps, (uint32_t)next, (uint32_t)(lo - 1));
        tb_uidset_add_range(&ours, (uint32_t)lo, (uint32_t)hi);
        next = hi + 1;
    }
    if (!flags_reported) {
        fetch_pieces(s, mailbox, &ours, "(UID FLAGS)", out);
        tb_uidset_add_set(&out->asked, &ours); /* the ones not answered are gone */
    }
    fetch_pieces(s, mailbox, &gaps, TB_FETCH_ITEMS, out);
    tb_uidset_free(&gaps);
    tb_uidset_free(&ours);
    /* next:* also answers the last message when next is past it: merged, harmless. */
    return next > UINT32_MAX ? UINT32_MAX : (uint32_t)next;
}

static void delta_start(struct tb_store *s, const char *mailbox, uint32_t base_uidvalidity,
                        uint64_t base_modseq, uint32_t base_uidnext, struct tb_uidset *extra,
                        struct tb_uidset *known, struct tb_delta *out, int how)
{
    memset(out, 0, sizeof(*out));
    bool base = base_uidvalidity > 0 && base_uidnext > 0;
    bool qresync = base && base_modseq > 0 && tb_store_strategy(s) == TB_STRATEGY_QRESYNC;
    select_mailbox(s, mailbox, base_uidvalidity, qresync ? base_modseq : 0, out, how);
    /* QRESYNC's SELECT reports changed flags and vanished UIDs; without it the known
     * messages are listed. New messages (UID >= the base UIDNEXT) are fetched with their
     * identity. Without a base: everything. */
    out->full = !base;
    if (base && !qresync)
        known_messages(s, mailbox, base_modseq, base_uidnext, out);
    out->by_name = base && extra;
    if (base && extra)
        fetch_pieces(s, mailbox, extra, TB_FETCH_ITEMS, out);
    uint32_t from = base ? base_uidnext : 1;
    if (base && known && !tb_uidset_empty(known))
        from = known_new(s, mailbox, from, known, qresync, out);
    struct tb_cmd *cmd = tb_cmd_new("UID FETCH");
    tb_cmd_printf(cmd, "%u:* " TB_FETCH_ITEMS, from);
    delta_cmd(s, out, mailbox, "FETCH", cmd)->fetch = true;
}

void tb_store_delta_start(struct tb_store *s, const char *mailbox, uint32_t base_uidvalidity,
                          uint64_t base_modseq, uint32_t base_uidnext, struct tb_uidset *extra,
                          struct tb_delta *out)
{
    delta_start(s, mailbox, base_uidvalidity, base_modseq, base_uidnext, extra, NULL, out, 0);
}

void tb_store_delta_start_known(struct tb_store *s, const char *mailbox, uint32_t base_uidvalidity,
                                uint64_t base_modseq, uint32_t base_uidnext,
                                struct tb_uidset *known, struct tb_delta *out)
{
    delta_start(s, mailbox, base_uidvalidity, base_modseq, base_uidnext, NULL, known, out, 0);
}

void tb_store_delta_queue(struct tb_store *s, const char *mailbox, uint32_t base_uidvalidity,
                          uint64_t base_modseq, uint32_t base_uidnext, struct tb_uidset *extra,
                          struct tb_delta *out)
{
    delta_start(s, mailbox, base_uidvalidity, base_modseq, base_uidnext, extra, NULL, out,
                SEL_QUEUED);
}

void tb_store_delta_examine_queue(struct tb_store *s, const char *mailbox,
                                  uint32_t base_uidvalidity, uint64_t base_modseq,
                                  uint32_t base_uidnext, struct tb_uidset *known,
                                  struct tb_delta *out)
{
    delta_start(s, mailbox, base_uidvalidity, base_modseq, base_uidnext, NULL, known, out,
                SEL_QUEUED | SEL_EXAMINE);
}

void tb_store_select(struct tb_store *s, const char *mailbox)
{
    if (!s->selected || strcmp(s->selected, mailbox) != 0 || s->selected_ro)
        select_mailbox(s, mailbox, 0, 0, NULL, 0);
}

void tb_store_select_into(struct tb_store *s, const char *mailbox, struct tb_delta *out)
{
    memset(out, 0, sizeof(*out));
    select_mailbox(s, mailbox, 0, 0, out, 0);
}

void tb_store_select_queued(struct tb_store *s, const char *mailbox)
{
    if (!s->selected || strcmp(s->selected, mailbox) != 0 || s->selected_ro)
        select_mailbox(s, mailbox, 0, 0, NULL, SEL_QUEUED);
}

void tb_store_fetch_from(struct tb_store *s, const char *mailbox, uint32_t from,
                         struct tb_delta *out)
{
    memset(out, 0, sizeof(*out));
    /* SELECT again first: GNU mailutils imap4d (maildir) shows a selected session nothing
     * appended after its SELECT, not even its own APPENDs. */
    select_mailbox(s, mailbox, 0, 0, NULL, SEL_QUEUED);
    struct tb_cmd *cmd = tb_cmd_new("UID FETCH");
    tb_cmd_printf(cmd, "%u:* " TB_FETCH_ITEMS, from ? from : 1);
    delta_cmd(s, out, mailbox, "FETCH", cmd);
}

void tb_store_list_uids_queue(struct tb_store *s, const char *mailbox, struct tb_delta *out)
{
    memset(out, 0, sizeof(*out));
    select_mailbox(s, mailbox, 0, 0, out, SEL_QUEUED);
    out->full = true; /* checked against EXISTS like any full listing */
    struct tb_cmd *cmd = tb_cmd_new("UID FETCH");
    tb_cmd_atom(cmd, "1:* (UID INTERNALDATE RFC822.SIZE)");
    delta_cmd(s, out, mailbox, "FETCH", cmd)->fetch = true;
}
