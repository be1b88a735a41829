/* One XREPLICATE exchange (man/twinbox-xreplicate.7): the account's whole listing, its
 * mailbox events and per-mailbox deltas since a stored position, in one command.
 *
 * The listing goes where LIST-STATUS would put it (s->boxes), so discovery downstream
 * does not care which of the two produced it. A refused position (BADTOKEN, or any NO/BAD:
 * an internal error is no reason to stop a sync that QRESYNC can do) is reported in the
 * reply, never as a store failure; only a dead connection fails the store. */
#include "store/store.h"

#include "protocol/cmd.h"
#include "protocol/parse.h"
#include "protocol/xrep.h"
#include "twinbox/imap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct xrep_op {
    struct tb_store *s;
    struct tb_xrep_reply *out;
};

void tb_xrep_reply_clear(struct tb_xrep_reply *r)
{
    for (size_t i = 0; i < r->n_sec; i++) {
        struct tb_xrep_section *x = &r->sec[i];
        free(x->name);
        free(x->resync);
        tb_uidset_free(&x->expunged);
        tb_uidset_free(&x->appended);
        for (size_t j = 0; j < x->n_flags; j++) {
            tb_uidset_free(&x->flags[j].uids);
            free(x->flags[j].add);
            free(x->flags[j].remove);
        }
        free(x->flags);
    }
    free(r->sec);
    for (size_t i = 0; i < r->n_ev; i++) {
        free(r->ev[i].name);
        free(r->ev[i].new_name);
    }
    free(r->ev);
    free(r->position);
    memset(r, 0, sizeof(*r));
}

/* The section of a mailbox: lines of one mailbox are contiguous and its STATUS closes
 * them, so only the last section can be the one a line continues. */
static struct tb_xrep_section *section(struct tb_xrep_reply *r, const char *guid)
{
    if (r->n_sec && !r->sec[r->n_sec - 1].closed && strcmp(r->sec[r->n_sec - 1].guid, guid) == 0)
        return &r->sec[r->n_sec - 1];
    if (r->n_sec == r->cap_sec) {
        r->cap_sec = r->cap_sec ? r->cap_sec * 2 : 32;
        r->sec = tb_xrealloc(r->sec, r->cap_sec * sizeof(*r->sec));
    }
    struct tb_xrep_section *x = &r->sec[r->n_sec++];
    memset(x, 0, sizeof(*x));
    snprintf(x->guid, sizeof(x->guid), "%s", guid);
    return x;
}

static void add_uids(struct tb_xrep_reply *out, const char *set, struct tb_uidset *v)
{
    if (tb_uidset_parse(v, set, strlen(set), 0, NULL, 0) < 0)
        out->malformed = true;
}

/* A section's STATUS line gives its UIDNEXT: no UID it reported may be at or above it (such
 * a UID was never assigned, so the report cannot be about this mailbox as it is). */
static bool section_in_bounds(struct tb_xrep_section *sec)
{
    if (tb_uidset_max(&sec->expunged) >= sec->uidnext ||
        tb_uidset_max(&sec->appended) >= sec->uidnext)
        return false;
    for (size_t i = 0; i < sec->n_flags; i++)
        if (tb_uidset_max(&sec->flags[i].uids) >= sec->uidnext)
            return false;
    return true;
}

static void add_box(struct tb_store *s, const struct tb_xrep *x)
{
    s->boxes = tb_xrealloc(s->boxes, (s->n_boxes + 1) * sizeof(*s->boxes));
    struct tb_mbox_info *b = &s->boxes[s->n_boxes++];
    memset(b, 0, sizeof(*b));
    b->name = tb_xstrdup(x->name);
    b->sep = s->sep;
    b->subscribed = x->subscribed;
    b->have_status = true;
    b->uidvalidity = x->uidvalidity;
    b->uidnext = x->uidnext;
    b->highestmodseq = x->highestmodseq;
    memcpy(b->guid, x->guid, sizeof(b->guid));
}

static bool xrep_untagged(struct tb_imap *c, const struct tb_resp *r, void *ud)
{
    (void)c;
    struct xrep_op *o = ud;
    struct tb_xrep_reply *out = o->out;
    const struct tb_xrep *x = tb_xrep_of(r);
    if (!x) {
        if (!tb_xrep_unreadable(r))
            return false;
        out->malformed = true; /* it could be any change: the reply is void */
        return true;
    }
    struct tb_xrep_section *sec;
    switch (x->kind) {
    case TB_XREP_MAILBOX:
        out->ev = tb_xrealloc(out->ev, (out->n_ev + 1) * sizeof(*out->ev));
        out->ev[out->n_ev].event = (int)x->event;
        out->ev[out->n_ev].name = tb_xstrdup(x->name);
        out->ev[out->n_ev].new_name = x->new_name ? tb_xstrdup(x->new_name) : NULL;
        out->n_ev++;
        break;
    case TB_XREP_STATUS:
        sec = section(out, x->guid);
        sec->closed = true;
        free(sec->name); /* a RESYNC line may have named it already */
        sec->name = tb_xstrdup(x->name);
        sec->uidvalidity = x->uidvalidity;
        sec->uidnext = x->uidnext;
        sec->highestmodseq = x->highestmodseq;
        if (!section_in_bounds(sec))
            out->malformed = true;
        add_box(o->s, x);
        break;
    case TB_XREP_RESYNC:
        sec = section(out, x->guid);
        free(sec->resync);
        sec->resync = tb_xstrdup(x->reason);
        /* Named here too: a mailbox the server could not read has no STATUS line, and the
         * engine must know which name not to take as absent. */
        if (!sec->name)
            sec->name = tb_xstrdup(x->name);
        break;
    case TB_XREP_EXPUNGED:
        sec = section(out, x->guid);
        add_uids(out, x->uids, &sec->expunged);
        break;
    case TB_XREP_APPENDED:
        sec = section(out, x->guid);
        add_uids(out, x->uids, &sec->appended);
        break;
    case TB_XREP_FLAGS: {
        sec = section(out, x->guid);
        sec->flags = tb_xrealloc(sec->flags, (sec->n_flags + 1) * sizeof(*sec->flags));
        struct tb_xrep_flagchg *f = &sec->flags[sec->n_flags++];
        tb_uidset_init(&f->uids);
        f->modseq = x->modseq;
        f->add = tb_xstrdup(x->add);
        f->remove = tb_xstrdup(x->remove);
        add_uids(out, x->uids, &f->uids);
        break;
    }
    case TB_XREP_POSITION:
        free(out->position);
        out->position = tb_xstrdup(x->token);
        break;
    }
    return true;
}

static void xrep_done(struct tb_imap *c, const struct tb_imap_result *r, void *ud)
{
    (void)c;
    struct xrep_op *o = ud;
    o->s->pending--;
    if (r->status == TB_IMAP_NO || r->status == TB_IMAP_BAD) {
        o->out->refused = true;
        snprintf(o->out->reason, sizeof(o->out->reason), "%s %s",
                 r->status == TB_IMAP_NO ? "NO" : "BAD", r->text ? r->text : "");
        if (r->resp && r->resp->raw_len &&
            memmem(r->resp->raw, r->resp->raw_len, "[XREPLICATE-BADTOKEN]", 21))
            o->out->badtoken = true;
    } else if (r->status == TB_IMAP_OK && (!o->out->position || o->out->malformed)) {
        /* A reply without its POSITION, or with a line we could not read, is unusable:
         * everything by QRESYNC. */
        o->out->refused = true;
        snprintf(o->out->reason, sizeof(o->out->reason), "%s",
                 o->out->malformed ? "unreadable response" : "reply without POSITION");
    }
    free(o);
}

void tb_store_xrep_start(struct tb_store *s, const char *token, struct tb_xrep_reply *out)
{
    memset(out, 0, sizeof(*out));
    tb_mbox_infos_free(s->boxes, s->n_boxes);
    s->boxes = NULL;
    s->n_boxes = 0;
    tb_xrep_register();
    if (token && strlen(token) > TB_XREP_TOKEN_MAX) {
        /* A server limits the size of an argument; one it refuses may cost the
         * connection. Such a position is treated as refused. */
        out->refused = true;
        snprintf(out->reason, sizeof(out->reason),
                 "stored position of %zu bytes is too long to "
                 "send",
                 strlen(token));
        return;
    }
    struct tb_cmd *cmd = tb_cmd_new("XREPLICATE");
    if (token && token[0]) {
        tb_cmd_atom(cmd, "CHANGES");
        /* Long tokens as literals: Dovecot limits a line, not a literal's share of it. */
        if (strlen(token) > 1000)
            tb_cmd_literal(cmd, token, strlen(token));
        else
            tb_cmd_astring(cmd, token);
    } else {
        tb_cmd_atom(cmd, "POSITION");
    }
    struct xrep_op *o = tb_xcalloc(1, sizeof(*o));
    o->s = s;
    o->out = out;
    s->pending++;
    tb_imap_submit(s->c, cmd, 0, xrep_done, xrep_untagged, o);
}
