#include "store/store_internal.h"

#include "protocol/cmd.h"
#include "protocol/parse.h"
#include "store/fetch.h"
#include "twinbox/config.h"
#include "twinbox/imap.h"
#include "twinbox/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- connection and waiting ---- */

static void on_ready(struct tb_imap *c, void *ud)
{
    struct tb_store *s = ud;
    s->ready = true;
    s->sep = tb_imap_separator(c);
    s->pending--;
}

static void on_early(struct tb_imap *c, void *ud)
{
    (void)c;
    tb_store_list_early_send(ud);
}

static void on_error(struct tb_imap *c, const struct tb_error *e, void *ud)
{
    (void)c;
    struct tb_store *s = ud;
    if (s->failed)
        return;
    s->failed = true;
    s->err = *e;
}

void tb_store_init(struct tb_store *s, uv_loop_t *loop, const struct tb_account *acct,
                   const char *password)
{
    static const struct tb_imap_events ev = {on_ready, on_error, on_early};
    memset(s, 0, sizeof(*s));
    s->label = acct->name;
    s->loop = loop;
    s->max_line = acct->max_line ? acct->max_line : TB_DEFAULT_MAX_LINE;
    s->max_message_size =
        acct->max_message_size ? acct->max_message_size : TB_DEFAULT_MAX_MESSAGE_SIZE;
    s->c = tb_imap_new(loop, acct, &ev, s);
    tb_imap_set_password(s->c, password);
    s->pending = 1;
    tb_imap_start(s->c);
}

static void logout_done(struct tb_imap *c, const struct tb_imap_result *r, void *ud)
{
    (void)c;
    (void)r;
    ((struct tb_store *)ud)->pending--;
}

void tb_store_logout(struct tb_store **stores, int n)
{
    for (int i = 0; i < n; i++) {
        struct tb_store *s = stores[i];
        if (!s->c || s->failed || !s->ready || s->pending)
            continue;
        s->pending++;
        tb_imap_logout(s->c, logout_done, s);
    }
    /* A failure here (the server closing first) changes nothing: the work is done. */
    tb_store_wait(stores, n);
}

void tb_store_free(struct tb_store *s)
{
    tb_imap_free(s->c);
    s->c = NULL;
    free(s->selected);
    tb_store_perm_free(s);
    tb_mbox_infos_free(s->boxes, s->n_boxes);
    s->boxes = NULL;
    s->n_boxes = 0;
}

bool tb_store_writable(struct tb_store *s, const char *what)
{
    if (!s->read_only)
        return true;
    tb_store_fail(s, TB_ERR_INTERNAL, "%s: refused, this account is only read (migration source)",
                  what);
    return false;
}

const struct tb_ns *tb_store_ns(struct tb_store *s)
{
    s->ns.sep = s->sep;
    s->ns.prefix = s->c ? tb_imap_namespace_prefix(s->c) : "";
    s->ns.others = s->c ? tb_imap_namespace_others(s->c) : "";
    /* A prefix without its separator would glue names to it ("INBOX" + "Work"). */
    size_t pl = strlen(s->ns.prefix);
    if (pl && s->sep && s->ns.prefix[pl - 1] != s->sep)
        s->ns.prefix = "";
    return &s->ns;
}

static bool any_busy(struct tb_store **stores, int n)
{
    for (int i = 0; i < n; i++)
        if (stores[i]->pending > 0 || (stores[i]->c && tb_imap_busy(stores[i]->c)))
            return true;
    return false;
}

int tb_store_wait_for(struct tb_store **stores, int n, bool (*done)(void *ud), void *ud)
{
    for (;;) {
        for (int i = 0; i < n; i++)
            if (stores[i]->failed)
                return -1;
        if (done(ud))
            return 0;
        if (!any_busy(stores, n)) {
            /* No command in flight: no answer can come to meet `done`, and with nothing
             * pending no timeout runs either. A logic error, reported, not waited on. */
            stores[0]->failed = true;
            tb_error_set(&stores[0]->err, TB_ERR_INTERNAL,
                         "%s: internal error: waiting with no command in flight", stores[0]->label);
            return -1;
        }
        if (uv_run(stores[0]->loop, UV_RUN_ONCE) == 0) {
            /* Nothing left that could make progress: report it rather than spin. */
            for (int i = 0; i < n; i++)
                if (stores[i]->pending > 0 && !stores[i]->failed) {
                    stores[i]->failed = true;
                    tb_error_set(&stores[i]->err, TB_ERR_INTERNAL, "%s: connection stalled",
                                 stores[i]->label);
                }
            return -1;
        }
    }
}

struct idle {
    struct tb_store **stores;
    int n;
};

static bool all_idle(void *ud)
{
    const struct idle *w = ud;
    for (int i = 0; i < w->n; i++)
        if (w->stores[i]->pending > 0)
            return false;
    return true;
}

int tb_store_wait(struct tb_store **stores, int n)
{
    struct idle w = {stores, n};
    return tb_store_wait_for(stores, n, all_idle, &w);
}

uint64_t tb_store_mark(const struct tb_store *s)
{
    return s->c ? tb_imap_mark(s->c) : 0;
}

struct marks {
    struct tb_store **stores;
    int n;
    const uint64_t *marks;
};

static bool marks_passed(void *ud)
{
    const struct marks *w = ud;
    for (int i = 0; i < w->n; i++)
        if (w->stores[i]->c && !tb_imap_done_through(w->stores[i]->c, w->marks[i]))
            return false;
    return true;
}

int tb_store_wait_marks(struct tb_store **stores, int n, const uint64_t *marks)
{
    struct marks w = {stores, n, marks};
    return tb_store_wait_for(stores, n, marks_passed, &w);
}

/* A command whose NO/BAD fails the store (the engine then stops with that message). */
void tb_store_fail(struct tb_store *s, enum tb_err_kind kind, const char *fmt, ...)
{
    if (s->failed)
        return;
    s->failed = true;
    char tmp[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    tb_error_set(&s->err, kind, "%s: %s", s->label, tmp);
}

void tb_store_op_done(struct tb_imap *c, const struct tb_imap_result *r, void *ud)
{
    (void)c;
    struct op *o = ud;
    o->s->pending--;
    if (r->status == TB_IMAP_OK && o->modified && r->code &&
        r->code->rc_type == MAILIMAP_RESP_TEXT_CODE_EXTENSION) {
        struct mailimap_extension_data *e = r->code->rc_data.rc_ext_data;
        if (e->ext_extension->ext_id == MAILIMAP_EXTENSION_CONDSTORE) {
            struct mailimap_condstore_resptextcode *cs = e->ext_data;
            if (cs->cs_type == MAILIMAP_CONDSTORE_RESPTEXTCODE_MODIFIED) {
                for (clistiter *it = clist_begin(cs->cs_data.cs_modified_set->set_list); it;
                     it = clist_next(it)) {
                    struct mailimap_set_item *si = clist_content(it);
                    tb_uidset_add_range(o->modified, si->set_first, si->set_last);
                }
            }
        }
    }
    if ((r->status == TB_IMAP_NO || r->status == TB_IMAP_BAD) && o->delta) {
        /* A mailbox that cannot be read now is left alone this run, not a failed run. */
        char why[400];
        snprintf(why, sizeof(why), "%s: %s %s", o->what, r->status == TB_IMAP_NO ? "NO" : "BAD",
                 r->text);
        tb_delta_unreadable(o->delta, why, "", 0);
        if (o->s->selected && strstr(o->what, ": SELECT")) {
            free(o->s->selected); /* a failed SELECT leaves nothing selected */
            o->s->selected = NULL;
        }
    } else if (r->status == TB_IMAP_NO || r->status == TB_IMAP_BAD) {
        tb_store_fail(o->s, TB_ERR_TEMP, "%s: %s", o->what, r->text);
    }
    /* Which UIDs a STORE refused is unknown: recording any new base would be a guess. */
    if (r->status == TB_IMAP_OK && r->code_unreadable && o->modified)
        tb_store_fail(o->s, TB_ERR_PROTOCOL, "%s: response code out of range", o->what);
    if (r->status == TB_IMAP_OK && o->fetch)
        tb_store_delta_check(o->delta);
    free(o->box);
    free(o);
}

struct op *tb_store_op_new(struct tb_store *s, const char *what)
{
    struct op *o = tb_xcalloc(1, sizeof(*o));
    o->s = s;
    snprintf(o->what, sizeof(o->what), "%s", what);
    s->pending++;
    return o;
}

/* ---- writes ---- */

/* A response code libetpan does not know (RFC 5530's, THROTTLED...), by name. */
static bool is_code(const struct tb_imap_result *r, const char *name)
{
    return r->code && r->code->rc_type == MAILIMAP_RESP_TEXT_CODE_OTHER &&
           r->code->rc_data.rc_atom.atom_name &&
           strcasecmp(r->code->rc_data.rc_atom.atom_name, name) == 0;
}

/* NO [ALREADYEXISTS] (RFC 5530): the mailbox exists, which is what the CREATE was for:
 * someone else made it since our listing (a client, another run), or the server answered
 * so for a mailbox nobody else made (Dovecot 2.3 did, once in about ten runs, while another
 * session polled LIST). The listing or SELECT sent behind the CREATE reads it as it is;
 * its messages are matched by identity like any fresh mailbox's. */
static void create_done(struct tb_imap *c, const struct tb_imap_result *r, void *ud)
{
    if (r->status == TB_IMAP_NO && is_code(r, "ALREADYEXISTS")) {
        struct tb_imap_result ok = *r;
        ok.status = TB_IMAP_OK;
        tb_store_op_done(c, &ok, ud);
        return;
    }
    tb_store_op_done(c, r, ud);
}

void tb_store_create(struct tb_store *s, const char *mailbox, const char *special_use)
{
    if (!tb_store_writable(s, "CREATE"))
        return;
    s->list_early = TB_LIST_EARLY_NO; /* a listing taken before is stale */
    char what[300];
    snprintf(what, sizeof(what), "mailbox %s: CREATE", mailbox);
    struct tb_cmd *cmd = tb_cmd_new("CREATE");
    tb_cmd_astring(cmd, mailbox);
    if (special_use && tb_imap_has_cap(s->c, "CREATE-SPECIAL-USE"))
        tb_cmd_printf(cmd, "(USE (%s))", special_use);
    tb_imap_submit(s->c, cmd, 0, create_done, NULL, tb_store_op_new(s, what));
}

/* Dovecot disconnects a client whose selected mailbox is deleted ("BYE Selected mailbox
 * was deleted"): leave it first. UNSELECT, not CLOSE: CLOSE would expunge the user's
 * \Deleted messages. */
void tb_store_leave(struct tb_store *s, const char *mailbox)
{
    if (!s->selected || strcmp(s->selected, mailbox) != 0)
        return;
    struct tb_cmd *cmd;
    if (tb_imap_has_cap(s->c, "UNSELECT")) {
        cmd = tb_cmd_new("UNSELECT");
    } else {
        cmd = tb_cmd_new("EXAMINE");
        tb_cmd_atom(cmd, "INBOX");
    }
    tb_imap_submit(s->c, cmd, TB_CMD_BARRIER, tb_store_op_done, NULL,
                   tb_store_op_new(s, "UNSELECT"));
    free(s->selected);
    s->selected = NULL;
}

void tb_store_delete(struct tb_store *s, const char *mailbox)
{
    if (!tb_store_writable(s, "DELETE"))
        return;
    s->list_early = TB_LIST_EARLY_NO; /* a listing taken before is stale */
    tb_store_leave(s, mailbox);
    char what[300];
    snprintf(what, sizeof(what), "mailbox %s: DELETE", mailbox);
    struct tb_cmd *cmd = tb_cmd_new("DELETE");
    tb_cmd_astring(cmd, mailbox);
    /* DELETE of the selected mailbox must not overtake commands still using it. */
    tb_imap_submit(s->c, cmd, TB_CMD_BARRIER, tb_store_op_done, NULL, tb_store_op_new(s, what));
}

void tb_store_rename(struct tb_store *s, const char *from, const char *to)
{
    if (!tb_store_writable(s, "RENAME"))
        return;
    s->list_early = TB_LIST_EARLY_NO; /* a listing taken before is stale */
    tb_store_leave(s, from);
    char what[300];
    snprintf(what, sizeof(what), "mailbox %s: RENAME", from);
    struct tb_cmd *cmd = tb_cmd_new("RENAME");
    tb_cmd_astring(cmd, from);
    tb_cmd_astring(cmd, to);
    tb_imap_submit(s->c, cmd, TB_CMD_BARRIER, tb_store_op_done, NULL, tb_store_op_new(s, what));
}

/* Existence of one name: STATUS and an exact LIST, pipelined. */
struct exists_op {
    struct tb_store *s;
    struct tb_exists *out;
    char *name;                 /* as sent */
    int left;                   /* commands still to complete */
    enum tb_imap_status status; /* STATUS's answer */
    bool status_nonexistent;    /* ... NO [NONEXISTENT] */
    bool status_other_code;     /* ... NO with any other code: a reason, not absence */
    char status_text[120];
    enum tb_imap_status list; /* LIST's answer */
    bool listed, list_unreadable;
};

/* Absence needs the server to say so: NO [NONEXISTENT] (RFC 5530) to STATUS, or (Dovecot 2.3
 * and others send no code there) a plain NO to STATUS together with an exact LIST that
 * completed, fully readable, without the name. Anything else is unknown. */
static void exists_verdict(struct exists_op *o)
{
    struct tb_exists *out = o->out;
    if (o->status == TB_IMAP_OK) {
        out->state = TB_EXISTS_YES;
    } else if (o->status == TB_IMAP_NO && o->status_nonexistent) {
        out->state = TB_EXISTS_NO;
    } else if (o->status == TB_IMAP_NO && !o->status_other_code && o->list == TB_IMAP_OK &&
               !o->listed && !o->list_unreadable) {
        out->state = TB_EXISTS_NO;
    } else {
        out->state = TB_EXISTS_UNKNOWN;
        snprintf(out->why, sizeof(out->why), "STATUS: %s %s%s",
                 o->status == TB_IMAP_NO    ? "NO"
                 : o->status == TB_IMAP_BAD ? "BAD"
                                            : "no answer",
                 o->status_text,
                 o->listed               ? " (but LIST shows it)"
                 : o->list_unreadable    ? " (and LIST was unreadable)"
                 : o->list != TB_IMAP_OK ? " (and LIST failed)"
                                         : "");
    }
}

static void exists_step(struct exists_op *o)
{
    o->s->pending--;
    if (--o->left > 0)
        return;
    exists_verdict(o);
    free(o->name);
    free(o);
}

static void exists_status_done(struct tb_imap *c, const struct tb_imap_result *r, void *ud)
{
    (void)c;
    struct exists_op *o = ud;
    o->status = r->status;
    o->status_nonexistent = r->status == TB_IMAP_NO && is_code(r, "NONEXISTENT");
    o->status_other_code = r->code && !o->status_nonexistent;
    char code[64];
    snprintf(o->status_text, sizeof(o->status_text), "%s%s",
             tb_imap_code_prefix(r, code, sizeof(code)), r->text ? r->text : "");
    exists_step(o);
}

static bool exists_list_untagged(struct tb_imap *c, const struct tb_resp *r, void *ud)
{
    (void)c;
    struct exists_op *o = ud;
    if (!r->data) {
        char kw[16];
        tb_resp_untagged_keyword(r, kw, sizeof(kw));
        if (strcmp(kw, "LIST") != 0)
            return false;
        o->list_unreadable = true; /* it could have been this name */
        return true;
    }
    if (r->data->rsp_type != MAILIMAP_RESP_DATA_TYPE_MAILBOX_DATA ||
        r->data->rsp_data.rsp_mailbox_data->mbd_type != MAILIMAP_MAILBOX_DATA_LIST)
        return false;
    const char *n = r->data->rsp_data.rsp_mailbox_data->mbd_data.mbd_list->mb_name;
    if (!n || (strcmp(n, o->name) != 0 &&
               !(strcasecmp(n, "INBOX") == 0 && strcasecmp(o->name, "INBOX") == 0)))
        return false;
    o->listed = true;
    return true;
}

static void exists_list_done(struct tb_imap *c, const struct tb_imap_result *r, void *ud)
{
    (void)c;
    struct exists_op *o = ud;
    o->list = r->status;
    exists_step(o);
}

void tb_store_exists(struct tb_store *s, const char *mailbox, struct tb_exists *out)
{
    struct exists_op *o = tb_xcalloc(1, sizeof(*o));
    o->s = s;
    o->out = out;
    o->name = tb_xstrdup(mailbox);
    o->status = o->list = TB_IMAP_ABORTED;
    o->left = 2;
    out->state = TB_EXISTS_UNKNOWN;
    snprintf(out->why, sizeof(out->why), "no answer");
    struct tb_cmd *cmd = tb_cmd_new("STATUS");
    tb_cmd_astring(cmd, mailbox);
    tb_cmd_atom(cmd, "(UIDVALIDITY)");
    s->pending += 2;
    tb_imap_submit(s->c, cmd, 0, exists_status_done, NULL, o);
    cmd = tb_cmd_new("LIST");
    tb_cmd_string(cmd, "");
    tb_cmd_string(cmd, mailbox);
    tb_imap_submit(s->c, cmd, 0, exists_list_done, exists_list_untagged, o);
}

void tb_store_subscribe(struct tb_store *s, const char *mailbox, bool on)
{
    if (!tb_store_writable(s, "SUBSCRIBE"))
        return;
    char what[300];
    snprintf(what, sizeof(what), "mailbox %s: %s", mailbox, on ? "SUBSCRIBE" : "UNSUBSCRIBE");
    struct tb_cmd *cmd = tb_cmd_new(on ? "SUBSCRIBE" : "UNSUBSCRIBE");
    tb_cmd_astring(cmd, mailbox);
    tb_imap_submit(s->c, cmd, 0, tb_store_op_done, NULL, tb_store_op_new(s, what));
}

/* Room for the UID set of a command whose other parts take `fixed` bytes: the whole line
 * (tag and CRLF included) stays within the account's max-line. */
size_t tb_store_set_budget(const struct tb_store *s, size_t fixed)
{
    size_t overhead = fixed + 32; /* tag, spaces, CRLF */
    return s->max_line > overhead + 16 ? s->max_line - overhead : 16;
}

/* Whether a space-separated flag list holds \Deleted (any case). */
static bool names_deleted(const char *flags)
{
    for (const char *p = flags; (p = strcasestr(p, "\\Deleted")) != NULL; p++)
        if ((p == flags || p[-1] == ' ') && (p[8] == 0 || p[8] == ' '))
            return true;
    return false;
}

void tb_store_flags(struct tb_store *s, struct tb_uidset *uids, char op, const char *flags,
                    uint64_t unchangedsince, struct tb_uidset *modified)
{
    if (!tb_store_writable(s, "STORE"))
        return;
    /* Flags the mailbox cannot keep are not sent (the server would refuse the command); the
     * engine keeps them recorded for the side that has them. */
    bool dropped = false;
    char *keep = tb_store_perm_filter(s, s->selected, flags, &dropped);
    if (dropped)
        s->flags_dropped += tb_uidset_count(uids);
    if (!keep[0] && op != '=') {
        free(keep);
        return;
    }
    flags = keep;
    if (op == '+' && names_deleted(flags))
        s->deleted_unfenced = true;
    char what[300];
    snprintf(what, sizeof(what), "mailbox %s: STORE", s->selected ? s->selected : "?");
    char fixed[64] = "";
    if (unchangedsince)
        snprintf(fixed, sizeof(fixed), "(UNCHANGEDSINCE %llu) ",
                 (unsigned long long)unchangedsince);
    size_t budget =
        tb_store_set_budget(s, strlen("UID STORE ") + strlen(fixed) + strlen(flags) + 20);
    struct tb_buf set;
    tb_buf_init(&set);
    /* Split so every line fits the server's limit: a line it refuses fails every run. */
    for (size_t pos = 0; pos < uids->n;) {
        set.len = 0;
        tb_uidset_render(uids, &pos, &set, budget);
        struct tb_cmd *cmd = tb_cmd_new("UID STORE");
        tb_cmd_atom(cmd, set.data);
        if (unchangedsince)
            tb_cmd_printf(cmd, "(UNCHANGEDSINCE %llu)", (unsigned long long)unchangedsince);
        tb_cmd_printf(cmd, "%sFLAGS.SILENT (%s)", op == '+' ? "+" : op == '-' ? "-" : "", flags);
        struct op *o = tb_store_op_new(s, what);
        o->modified = modified;
        tb_imap_submit(s->c, cmd, 0, tb_store_op_done, NULL, o);
    }
    tb_buf_free(&set);
    free(keep);
}

/* The UID EXPUNGE commands of one tb_store_expunge, and what the server reported gone. */
struct expunge_op {
    struct tb_store *s;
    char what[300];
    struct tb_uidset want, gone;
    struct tb_uidset *kept;
    int left; /* commands not completed yet */
    bool ok;  /* all completed OK */
};

/* UID EXPUNGE's own expunges come as VANISHED (QRESYNC) before its completion. */
static bool expunge_untagged(struct tb_imap *c, const struct tb_resp *r, void *ud)
{
    (void)c;
    struct expunge_op *o = ud;
    struct mailimap_response_data *rd = r->data;
    if (!rd || rd->rsp_type != MAILIMAP_RESP_DATA_TYPE_EXTENSION_DATA)
        return false;
    struct mailimap_extension_data *e = rd->rsp_data.rsp_extension_data;
    if (e->ext_extension->ext_id != MAILIMAP_EXTENSION_QRESYNC ||
        e->ext_type != MAILIMAP_QRESYNC_TYPE_VANISHED)
        return false;
    struct mailimap_qresync_vanished *v = e->ext_data;
    for (clistiter *it = clist_begin(v->qr_known_uids->set_list); it; it = clist_next(it)) {
        struct mailimap_set_item *si = clist_content(it);
        tb_uidset_add_range(&o->gone, si->set_first, si->set_last);
    }
    return true;
}

/* Once the last command completed: a UID asked for and not reported gone is still there
 * (a concurrent STORE, a FLAGS replace or -FLAGS \Deleted, cleared the flag between our
 * STORE and our EXPUNGE). */
static void expunge_release(struct expunge_op *o)
{
    if (--o->left > 0)
        return;
    if (o->ok && o->kept)
        for (size_t i = 0; i < o->want.n; i++)
            for (uint64_t u = o->want.r[i].lo; u <= o->want.r[i].hi; u++)
                if (!tb_uidset_has(&o->gone, (uint32_t)u))
                    tb_uidset_add(o->kept, (uint32_t)u);
    tb_uidset_free(&o->want);
    tb_uidset_free(&o->gone);
    free(o);
}

static void expunge_done(struct tb_imap *c, const struct tb_imap_result *r, void *ud)
{
    (void)c;
    struct expunge_op *o = ud;
    o->s->pending--;
    if (r->status == TB_IMAP_NO || r->status == TB_IMAP_BAD)
        tb_store_fail(o->s, TB_ERR_TEMP, "%s: %s", o->what, r->text);
    if (r->status != TB_IMAP_OK)
        o->ok = false;
    expunge_release(o);
}

/* ---- EXPUNGE without UIDPLUS ----
 * Plain EXPUNGE removes every message flagged \Deleted, also those the user flagged and did
 * not expunge (a flag twinbox replicates, never a removal). So the others' \Deleted is taken
 * off for the EXPUNGE and put back after it, as mbsync does. A client setting \Deleted on
 * another message in between would see it expunged: without UIDPLUS there is no exact way. */
struct plain_expunge {
    struct tb_store *s;
    struct tb_uidset want, found;
};

static bool plain_search_untagged(struct tb_imap *c, const struct tb_resp *r, void *ud)
{
    (void)c;
    struct plain_expunge *o = ud;
    if (!r->data || r->data->rsp_type != MAILIMAP_RESP_DATA_TYPE_MAILBOX_DATA ||
        r->data->rsp_data.rsp_mailbox_data->mbd_type != MAILIMAP_MAILBOX_DATA_SEARCH)
        return false;
    clist *l = r->data->rsp_data.rsp_mailbox_data->mbd_data.mbd_search;
    for (clistiter *it = l ? clist_begin(l) : NULL; it; it = clist_next(it))
        tb_uidset_add(&o->found, *(uint32_t *)clist_content(it));
    return true;
}

static void plain_search_done(struct tb_imap *c, const struct tb_imap_result *r, void *ud)
{
    (void)c;
    struct plain_expunge *o = ud;
    struct tb_store *s = o->s;
    s->pending--;
    if (r->status != TB_IMAP_OK) {
        if (r->status != TB_IMAP_ABORTED)
            tb_store_fail(s, TB_ERR_TEMP, "mailbox %s: UID SEARCH DELETED: %s",
                          s->selected ? s->selected : "?", r->text);
    } else {
        struct tb_uidset others;
        tb_uidset_init(&others);
        tb_uidset_normalize(&o->found);
        for (size_t i = 0; i < o->found.n; i++)
            for (uint64_t u = o->found.r[i].lo; u <= o->found.r[i].hi; u++)
                if (!tb_uidset_has(&o->want, (uint32_t)u))
                    tb_uidset_add(&others, (uint32_t)u);
        if (!tb_uidset_empty(&others))
            tb_store_flags(s, &others, '-', "\\Deleted", 0, NULL);
        char what[300];
        snprintf(what, sizeof(what), "mailbox %s: EXPUNGE", s->selected ? s->selected : "?");
        tb_imap_submit(s->c, tb_cmd_new("EXPUNGE"), TB_CMD_BARRIER, tb_store_op_done, NULL,
                       tb_store_op_new(s, what));
        if (!tb_uidset_empty(&others))
            tb_store_flags(s, &others, '+', "\\Deleted", 0, NULL);
        tb_uidset_free(&others);
    }
    tb_uidset_free(&o->want);
    tb_uidset_free(&o->found);
    free(o);
}

static void expunge_plain(struct tb_store *s, struct tb_uidset *uids)
{
    struct plain_expunge *o = tb_xcalloc(1, sizeof(*o));
    o->s = s;
    tb_uidset_init(&o->want);
    tb_uidset_init(&o->found);
    tb_uidset_add_set(&o->want, uids);
    tb_uidset_normalize(&o->want);
    struct tb_cmd *cmd = tb_cmd_new("UID SEARCH");
    tb_cmd_atom(cmd, "DELETED");
    s->pending++;
    tb_imap_submit(s->c, cmd, TB_CMD_FENCE, plain_search_done, plain_search_untagged, o);
}

/* The UID EXPUNGE commands for uids. fence: the first waits for every command before it;
 * hold: the last holds what follows until all of them are done. */
static void uid_expunge(struct tb_store *s, struct tb_uidset *uids, struct tb_uidset *kept,
                        bool fence, bool hold)
{
    struct expunge_op *o = tb_xcalloc(1, sizeof(*o));
    o->s = s;
    o->ok = true;
    o->left = 1; /* held until every command is submitted */
    snprintf(o->what, sizeof(o->what), "mailbox %s: UID EXPUNGE", s->selected ? s->selected : "?");
    tb_uidset_init(&o->want);
    tb_uidset_init(&o->gone);
    tb_uidset_add_set(&o->want, uids);
    tb_uidset_normalize(&o->want);
    /* Without QRESYNC the server reports expunges by sequence number: not checked. */
    o->kept = tb_imap_has_cap(s->c, "QRESYNC") ? kept : NULL;
    if (fence)
        s->deleted_unfenced = false;
    size_t budget = tb_store_set_budget(s, strlen("UID EXPUNGE "));
    struct tb_buf set;
    tb_buf_init(&set);
    for (size_t pos = 0; pos < uids->n;) {
        bool first = pos == 0;
        set.len = 0;
        tb_uidset_render(uids, &pos, &set, budget);
        struct tb_cmd *cmd = tb_cmd_new("UID EXPUNGE");
        tb_cmd_atom(cmd, set.data);
        unsigned flags =
            (hold && pos >= uids->n ? TB_CMD_BARRIER : 0) | (fence && first ? TB_CMD_FENCE : 0);
        o->left++;
        s->pending++;
        tb_imap_submit(s->c, cmd, flags, expunge_done, expunge_untagged, o);
    }
    tb_buf_free(&set);
    expunge_release(o);
}

void tb_store_expunge(struct tb_store *s, struct tb_uidset *uids, struct tb_uidset *kept)
{
    if (!tb_store_writable(s, "EXPUNGE"))
        return;
    tb_store_flags(s, uids, '+', "\\Deleted", 0, NULL);
    if (tb_uidset_empty(uids))
        return;
    if (!tb_imap_has_cap(s->c, "UIDPLUS")) {
        expunge_plain(s, uids);
        return;
    }
    /* Dovecot may run a pipelined EXPUNGE before an earlier STORE took effect: the first
     * waits for the \Deleted flags it depends on, the last holds what follows until all of
     * them are done. */
    uid_expunge(s, uids, kept, true, true);
}

void tb_store_expunge_marked(struct tb_store *s, struct tb_uidset *uids, struct tb_uidset *kept)
{
    if (!tb_store_writable(s, "EXPUNGE") || tb_uidset_empty(uids))
        return;
    if (!tb_imap_has_cap(s->c, "UIDPLUS"))
        expunge_plain(s, uids);
    else
        uid_expunge(s, uids, kept, s->deleted_unfenced, false);
}
