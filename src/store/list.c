#include "store/store_internal.h"

#include "protocol/cmd.h"
#include "protocol/xrep.h"
#include "protocol/parse.h"
#include "protocol/mboxname.h"
#include "store/fetch.h"
#include "twinbox/imap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- LIST with STATUS ---- */

void tb_mbox_infos_free(struct tb_mbox_info *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(v[i].name);
        free(v[i].special_use);
    }
    free(v);
}

/* LIST-STATUS: a STATUS line follows the LIST line of its mailbox (RFC 5819), so the last
 * box listed is tried first; tb_list_status_collect's search of every box (quadratic in
 * mailboxes) is left for a server that sends them otherwise. */
static bool status_of_last(struct tb_store *s, const struct mailimap_response_data *d)
{
    if (!s->n_boxes || !d || d->rsp_type != MAILIMAP_RESP_DATA_TYPE_MAILBOX_DATA ||
        d->rsp_data.rsp_mailbox_data->mbd_type != MAILIMAP_MAILBOX_DATA_STATUS)
        return false;
    struct mailimap_mailbox_data_status *st = d->rsp_data.rsp_mailbox_data->mbd_data.mbd_status;
    struct tb_mbox_info *last = &s->boxes[s->n_boxes - 1];
    char *name = tb_mboxname_unwire(st->st_mailbox);
    bool mine = strcmp(name, last->name) == 0;
    free(name);
    if (mine)
        tb_status_apply(st, last, 1);
    return mine;
}

static bool list_untagged(struct tb_imap *c, const struct tb_resp *r, void *ud)
{
    (void)c;
    struct tb_store *s = ((struct op *)ud)->s;
    if (!r->data && r->kind == TB_RESP_UNTAGGED) {
        /* Could be any mailbox: the listing no longer proves that a name is absent. */
        if (!s->list_incomplete) {
            char line[100];
            size_t n = r->raw_len < 80 ? r->raw_len : 80;
            for (size_t i = 0; i < n; i++)
                line[i] = r->raw[i] >= 0x20 && r->raw[i] < 0x7f ? r->raw[i] : '?';
            line[n] = 0;
            snprintf(s->list_bad, sizeof(s->list_bad), "unreadable response: %s", line);
        }
        s->list_incomplete = true;
        return true;
    }
    if (status_of_last(s, r->data))
        return true;
    if (!tb_list_status_collect(r->data, &s->boxes, &s->n_boxes))
        return false;
    if (!s->sep && s->n_boxes && s->boxes[s->n_boxes - 1].sep)
        s->sep = s->boxes[s->n_boxes - 1].sep;
    return true;
}

/* RFC 3501: INBOX always exists. Some servers list it only once it was first selected
 * (GNU mailutils imap4d); an unlisted INBOX is still a mailbox to sync, never one to create
 * (CREATE INBOX fails) nor one that was deleted. */
static void ensure_inbox(struct tb_store *s)
{
    for (size_t i = 0; i < s->n_boxes; i++)
        if (strcasecmp(s->boxes[i].name, "INBOX") == 0)
            return;
    s->boxes = tb_xrealloc(s->boxes, (s->n_boxes + 1) * sizeof(*s->boxes));
    struct tb_mbox_info *b = &s->boxes[s->n_boxes++];
    memset(b, 0, sizeof(*b));
    b->name = tb_xstrdup("INBOX");
}

/* ---- without LIST-STATUS: LIST and LSUB, then one STATUS per mailbox, pipelined ---- */

struct listing {
    struct tb_store *s;
    int left;    /* LIST and LSUB still to complete */
    bool failed; /* either failed: the store failed with it */
    char **lsub; /* subscribed names, as on the wire */
    size_t n_lsub;
};

struct status_op {
    struct tb_store *s;
    char *name;
    size_t idx; /* of the box in s->boxes when sent; checked by name before use */
};

/* Parses the "(ITEM value ...)" list ending a STATUS line; NIL counts as 0 (hoodiecrow sends
 * HIGHESTMODSEQ NIL for a mailbox never written to). false when a value is not a number in
 * range. */
static bool status_items(const char *p, size_t n, struct tb_mbox_info *b)
{
    while (n && (p[n - 1] == '\r' || p[n - 1] == '\n' || p[n - 1] == ' '))
        n--;
    if (!n || p[n - 1] != ')')
        return false;
    size_t open = n - 1;
    while (open > 0 && p[open] != '(')
        open--;
    if (p[open] != '(')
        return false;
    size_t i = open + 1, end = n - 1;
    while (i < end) {
        while (i < end && p[i] == ' ')
            i++;
        size_t k = i;
        while (i < end && p[i] != ' ')
            i++;
        size_t klen = i - k;
        while (i < end && p[i] == ' ')
            i++;
        size_t v = i;
        while (i < end && p[i] != ' ')
            i++;
        if (klen == 0)
            break;
        if (klen == 6 && strncasecmp(p + k, "X-GUID", 6) == 0) {
            /* Dovecot's mailbox GUID (replica mode compares and copies it) */
            if (i - v != 32 || !tb_xrep_guid_parse(b->guid, p + v))
                return false;
            continue;
        }
        uint64_t val = 0;
        bool nil = i - v == 3 && strncasecmp(p + v, "NIL", 3) == 0;
        if (!nil) {
            if (i == v || i - v > 19)
                return false;
            for (size_t j = v; j < i; j++) {
                if (p[j] < '0' || p[j] > '9')
                    return false;
                val = val * 10 + (uint64_t)(p[j] - '0');
            }
        }
#define IS(w) (klen == strlen(w) && strncasecmp(p + k, w, klen) == 0)
        if ((IS("MESSAGES") || IS("UIDNEXT") || IS("UIDVALIDITY")) && val > UINT32_MAX)
            return false;
        if (IS("HIGHESTMODSEQ") && val > INT64_MAX)
            return false;
        if (IS("MESSAGES"))
            b->messages = (uint32_t)val;
        else if (IS("UIDNEXT"))
            b->uidnext = (uint32_t)val;
        else if (IS("UIDVALIDITY"))
            b->uidvalidity = (uint32_t)val;
        else if (IS("HIGHESTMODSEQ"))
            b->highestmodseq = val;
#undef IS
    }
    return true;
}

/* The mailbox name of a raw "* STATUS name (...)" line, or NULL. */
static char *status_name(const char *p, size_t n)
{
    if (n < 9 || strncasecmp(p, "* STATUS ", 9) != 0)
        return NULL;
    size_t end = n;
    while (end > 9 && p[end - 1] != '(')
        end--;
    if (end <= 10)
        return NULL;
    char *raw = tb_xstrndup(p + 9, end - 1 - 9); /* up to the blank before "(" */
    size_t rl = strlen(raw);
    while (rl && raw[rl - 1] == ' ')
        raw[--rl] = 0;
    char *name = rl ? tb_mboxname_unwire(raw) : NULL;
    free(raw);
    return name;
}

static bool status_untagged(struct tb_imap *c, const struct tb_resp *r, void *ud)
{
    (void)c;
    struct status_op *o = ud;
    char *name = status_name(r->raw, r->raw_len);
    bool mine = name && (strcmp(name, o->name) == 0 ||
                         (strcasecmp(name, "INBOX") == 0 && strcasecmp(o->name, "INBOX") == 0));
    free(name);
    if (!mine)
        return false;
    struct tb_store *s = o->s;
    /* The box it was sent for, unless the listing changed since (then searched by name). */
    struct tb_mbox_info *b = o->idx < s->n_boxes && strcmp(s->boxes[o->idx].name, o->name) == 0
                                 ? &s->boxes[o->idx]
                                 : NULL;
    for (size_t i = 0; !b && i < s->n_boxes; i++)
        if (strcmp(s->boxes[i].name, o->name) == 0)
            b = &s->boxes[i];
    if (!b)
        return true;
    struct tb_mbox_info tmp = *b;
    if (status_items(r->raw, r->raw_len, &tmp)) {
        *b = tmp;
        b->have_status = true;
    }
    return true;
}

/* A STATUS answered NO leaves the mailbox without numbers: its pass selects it. */
static void status_done(struct tb_imap *c, const struct tb_imap_result *r, void *ud)
{
    (void)c;
    (void)r;
    struct status_op *o = ud;
    o->s->pending--;
    free(o->name);
    free(o);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Marks the subscribed boxes: LSUB's names sorted once and searched, not scanned per box
 * (quadratic in mailboxes). INBOX is subscribed in any case (RFC 3501). */
static void mark_subscribed(struct listing *l)
{
    struct tb_store *s = l->s;
    bool inbox = false;
    for (size_t j = 0; j < l->n_lsub && !inbox; j++)
        inbox = strcasecmp(l->lsub[j], "INBOX") == 0;
    if (l->n_lsub > 1)
        qsort(l->lsub, l->n_lsub, sizeof(*l->lsub), cmp_str);
    for (size_t i = 0; i < s->n_boxes; i++) {
        struct tb_mbox_info *b = &s->boxes[i];
        if (!b->subscribed)
            b->subscribed = (inbox && strcasecmp(b->name, "INBOX") == 0) ||
                            (l->n_lsub && bsearch(&b->name, l->lsub, l->n_lsub, sizeof(*l->lsub),
                                                  cmp_str) != NULL);
    }
}

static void statuses(struct listing *l)
{
    struct tb_store *s = l->s;
    mark_subscribed(l);
    for (size_t i = 0; i < s->n_boxes; i++) {
        struct tb_mbox_info *b = &s->boxes[i];
        if (b->noselect)
            continue;
        struct status_op *o = tb_xcalloc(1, sizeof(*o));
        o->s = s;
        o->name = tb_xstrdup(b->name);
        o->idx = i;
        struct tb_cmd *cmd = tb_cmd_new("STATUS");
        tb_cmd_astring(cmd, b->name);
        tb_cmd_printf(cmd, "(MESSAGES UIDNEXT UIDVALIDITY%s%s)",
                      tb_imap_has_cap(s->c, "CONDSTORE") ? " HIGHESTMODSEQ" : "",
                      s->want_guid ? " X-GUID" : "");
        s->pending++;
        tb_imap_submit(s->c, cmd, 0, status_done, status_untagged, o);
    }
}

static void listing_step(struct tb_imap *c, const struct tb_imap_result *r, void *ud)
{
    (void)c;
    struct listing *l = ud;
    if (r->status != TB_IMAP_OK && !l->failed) {
        l->failed = true;
        tb_store_fail(l->s, r->status == TB_IMAP_ABORTED ? TB_ERR_TEMP : TB_ERR_PROTOCOL,
                      "LIST/LSUB: %s", r->text ? r->text : "aborted");
    }
    if (--l->left > 0)
        return;
    if (!l->failed) {
        ensure_inbox(l->s);
        statuses(l);
    }
    for (size_t i = 0; i < l->n_lsub; i++)
        free(l->lsub[i]);
    free(l->lsub);
    l->s->pending--;
    free(l);
}

static bool lsub_collect(struct tb_imap *c, const struct tb_resp *r, void *ud)
{
    (void)c;
    struct listing *l = ud;
    if (!r->data) {
        char kw[16];
        tb_resp_untagged_keyword(r, kw, sizeof(kw));
        if (strcmp(kw, "LSUB") != 0)
            return false;
        /* Unknown subscription state of some mailbox: never worth failing a run for. */
        return true;
    }
    if (r->data->rsp_type != MAILIMAP_RESP_DATA_TYPE_MAILBOX_DATA ||
        r->data->rsp_data.rsp_mailbox_data->mbd_type != MAILIMAP_MAILBOX_DATA_LSUB)
        return false;
    const char *n = r->data->rsp_data.rsp_mailbox_data->mbd_data.mbd_lsub->mb_name;
    l->lsub = tb_xrealloc(l->lsub, (l->n_lsub + 1) * sizeof(*l->lsub));
    l->lsub[l->n_lsub++] = tb_xstrdup(n ? n : "");
    return true;
}

/* LIST's lines into s->boxes; the op is a plain one carrying the store. */
static bool listing_list(struct tb_imap *c, const struct tb_resp *r, void *ud)
{
    struct listing *l = ud;
    struct op tmp = {.s = l->s};
    return list_untagged(c, r, &tmp);
}

static void list_plain(struct tb_store *s)
{
    struct listing *l = tb_xcalloc(1, sizeof(*l));
    l->s = s;
    l->left = 2;
    s->pending++; /* released when the last of LIST and LSUB completes */
    struct tb_cmd *cmd = tb_cmd_new("LIST");
    tb_cmd_string(cmd, "");
    tb_cmd_string(cmd, "*");
    tb_imap_submit(s->c, cmd, 0, listing_step, listing_list, l);
    cmd = tb_cmd_new("LSUB");
    tb_cmd_string(cmd, "");
    tb_cmd_string(cmd, "*");
    tb_imap_submit(s->c, cmd, 0, listing_step, lsub_collect, l);
}

static void list_status_done(struct tb_imap *c, const struct tb_imap_result *r, void *ud)
{
    struct tb_store *s = ((struct op *)ud)->s;
    if (r->status == TB_IMAP_OK)
        ensure_inbox(s);
    tb_store_op_done(c, r, ud);
}

static void list_reset(struct tb_store *s)
{
    tb_mbox_infos_free(s->boxes, s->n_boxes);
    s->boxes = NULL;
    s->n_boxes = 0;
    s->list_incomplete = false;
    s->list_bad[0] = 0;
}

static struct tb_cmd *list_status_cmd(const struct tb_store *s, bool special, bool condstore)
{
    struct tb_cmd *cmd = tb_cmd_new("LIST");
    tb_cmd_string(cmd, "");
    tb_cmd_string(cmd, "*");
    tb_cmd_printf(cmd, "RETURN (SUBSCRIBED%s STATUS (MESSAGES UIDNEXT UIDVALIDITY%s%s))",
                  special ? " SPECIAL-USE" : "", condstore ? " HIGHESTMODSEQ" : "",
                  s->want_guid ? " X-GUID" : "");
    return cmd;
}

void tb_store_list_start(struct tb_store *s)
{
    if (s->list_early == TB_LIST_EARLY_DONE) {
        s->list_early = TB_LIST_EARLY_NO; /* taken; a later listing asks again */
        return;
    }
    s->list_early = TB_LIST_EARLY_NO;
    list_reset(s);
    if (!tb_imap_has_cap(s->c, "LIST-STATUS")) {
        list_plain(s);
        return;
    }
    struct tb_cmd *cmd = list_status_cmd(s, tb_imap_has_cap(s->c, "SPECIAL-USE"),
                                         tb_imap_has_cap(s->c, "CONDSTORE"));
    tb_imap_submit(s->c, cmd, 0, list_status_done, list_untagged, tb_store_op_new(s, "LIST"));
}

void tb_store_list_early(struct tb_store *s)
{
    if (s->list_early == TB_LIST_EARLY_NO && !s->ready)
        s->list_early = TB_LIST_EARLY_WANTED;
}

/* A refusal (a server without one of the capabilities assumed) is not a failure:
 * tb_store_list_start lists again with the session's capabilities. A listing with an
 * unreadable line is taken as it is, like any other (it proves no absence). */
static void list_early_done(struct tb_imap *c, const struct tb_imap_result *r, void *ud)
{
    struct op *o = ud;
    struct tb_store *s = o->s;
    s->pending--;
    free(o);
    if (r->status == TB_IMAP_ABORTED)
        return; /* the connection failed: the store reports why */
    if (r->status == TB_IMAP_OK && tb_imap_has_cap(c, "LIST-STATUS")) {
        ensure_inbox(s);
        s->list_early = TB_LIST_EARLY_DONE;
        return;
    }
    list_reset(s);
    s->list_early = TB_LIST_EARLY_NO;
}

void tb_store_list_early_send(struct tb_store *s)
{
    if (s->list_early != TB_LIST_EARLY_WANTED)
        return;
    s->list_early = TB_LIST_EARLY_SENT;
    list_reset(s);
    tb_imap_submit(s->c, list_status_cmd(s, true, true), 0, list_early_done, list_untagged,
                   tb_store_op_new(s, "LIST"));
}
