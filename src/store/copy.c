/* Message copies streamed from one store's FETCH into the other's APPEND.
 * Memory is bounded by a window: at most window() jobs in flight per copy and COPY_BYTES
 * of message data held by all the copies reading from one store (tb_store.copy_held),
 * whatever the mailbox size or the number of copies running. A fetch counts the size the
 * listing gave until its body arrives, then the body's length until its APPEND is handed
 * to the link (tb_imap_submit_sent), which frees the body as the socket takes it: the
 * window covers the source's round trip and what waits to be written, not the
 * destination's round trip as well (at 50 ms, holding bodies until the APPEND's answer
 * capped the flow near 12 MiB per ~110 ms). A body is held once: the framer reads it into
 * a blob (protocol/framer.h) that the job, the APPEND command and the write share. Each
 * copy reports its new UID from APPENDUID, which the engine records as a pair.
 *
 * One message never stops the others: a message the destination refuses (APPEND NO/BAD),
 * one the source cannot deliver (FETCH NO/BAD, OK without the body, BODY[] NIL) and one
 * larger than either side accepts are reported through `skipped` and the copy goes on.
 * Only a dead connection, a mailbox that is gone (TRYCREATE) or an APPEND whose new UID
 * cannot be known fails the store.
 *
 * MULTIAPPEND (RFC 3502): where the destination offers it, fetched messages that are ready
 * together go out as one APPEND command of up to BATCH_MAX messages and batch_bytes() bytes
 * (Dovecot commits, and syncs its index, once per command). A batch is sent when it is full
 * or when waiting would leave the pipe idle: no APPEND in flight, or no FETCH left that
 * could add to it. Its APPENDUID uid-set gives the messages' new UIDs in order. A batch
 * refused with NO or BAD stored nothing (RFC 3502), so its messages are sent again one
 * APPEND each, which isolates the one refused: fetched again once the rest of the copy is
 * done, as their bodies are gone and the source may have selected another mailbox since.
 * Replica mode: one batch at a time, its targets strictly ascending, pinned by one
 * XREPLICATE UIDS, its bodies kept until answered and sent again from there.
 * max-messages-per-second counts APPEND commands: with it, one message per APPEND as without
 * MULTIAPPEND. */
#include "protocol/cmd.h"
#include "protocol/parse.h"
#include "store/fetch.h"
#include "store/copy_internal.h"
#include "store/store_internal.h"
#include "store/store.h"
#include "twinbox/imap.h"
#include "twinbox/log.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define COPY_WINDOW 128
/* Jobs in flight with MULTIAPPEND: a job whose body is written costs its record alone, and
 * at 50 ms ~20 MB of 45 KB messages (440 jobs) are between FETCH and APPENDUID. */
#define BATCH_WINDOW 1024
#define COPY_BYTES   (12u << 20)
#define PROBE_WINDOW (4u << 20) /* while compress = auto measures a link (tb_imap_probing) */
#define BATCH_MAX    128
#define BATCH_BYTES  (4u << 20) /* on a compressed link; half that otherwise (batch_bytes) */

struct tb_copy_job {
    struct tb_copy *cp;
    struct tb_msg_info m;
    uint32_t target;      /* replica mode: its UID on dst; 0 otherwise */
    struct tb_blob *body; /* one reference; the APPEND command holds its own */
    size_t len;
    size_t held;    /* counted in src->copy_held: the size asked for, then the body's length */
    int body_state; /* tb_fetch_body_state of the FETCH that carried it */
    bool again;     /* of a refused batch, fetched again: an APPEND of its own */
    char bad[64];   /* the first bytes of an unreadable FETCH seen while it was in flight */
};

/* One MULTIAPPEND command in flight: its jobs in the command's order (owned). */
struct batch {
    struct tb_copy *cp;
    struct tb_copy_job **jobs;
    size_t n;
};

static void pump(struct tb_copy *cp);

/* Refused batches after which a copy sends one message per APPEND: their messages wait,
 * as records, for the retry at the end, and a server that refuses every batch (a limit
 * per command, say) must not collect a whole mailbox there. */
#define REFUSED_MAX 3

static bool batching(const struct tb_copy *cp)
{
    return tb_imap_has_cap(cp->dst->c, "MULTIAPPEND") && !tb_imap_paces_appends(cp->dst->c) &&
           cp->refused < REFUSED_MAX;
}

static int window(const struct tb_copy *cp)
{
    return batching(cp) ? BATCH_WINDOW : COPY_WINDOW;
}

struct tb_copy *tb_copy_new(struct tb_store *src, struct tb_store *dst, const char *dst_mailbox,
                            tb_copied_fn *done, tb_copy_skipped_fn *skipped, void *ud)
{
    tb_store_writable(dst, "APPEND"); /* a read-only destination fails: nothing is sent */
    struct tb_copy *cp = tb_xcalloc(1, sizeof(*cp));
    cp->src = src;
    cp->dst = dst;
    cp->mailbox = tb_xstrdup(dst_mailbox);
    cp->done = done;
    cp->skipped = skipped;
    cp->ud = ud;
    return cp;
}

static void skip(struct tb_copy *cp, const struct tb_msg_info *m, bool permanent, const char *fmt,
                 ...) __attribute__((format(printf, 4, 5)));

static void skip(struct tb_copy *cp, const struct tb_msg_info *m, bool permanent, const char *fmt,
                 ...)
{
    char reason[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);
    /* Server text goes into one log line and the state: printable ASCII only. */
    for (char *q = reason; *q; q++)
        if ((unsigned char)*q < 0x20 || (unsigned char)*q >= 0x7f)
            *q = '?';
    cp->skipped(cp->ud, m, reason, permanent);
}

/* The largest message the destination takes: its APPENDLIMIT (RFC 7889), else ours. */
static uint64_t size_limit(const struct tb_copy *cp)
{
    uint64_t lim = cp->src->max_message_size;
    if (cp->dst->max_message_size < lim)
        lim = cp->dst->max_message_size;
    uint64_t al = tb_imap_appendlimit(cp->dst->c);
    return al && al < lim ? al : lim;
}

static void add(struct tb_copy *cp, const struct tb_msg_info *m, uint32_t target)
{
    uint64_t lim = size_limit(cp);
    if (lim && m->size > lim) {
        skip(cp, m, true, "%" PRIu32 " bytes, larger than the %" PRIu64 " bytes allowed", m->size,
             lim);
        return;
    }
    if (cp->n == cp->cap) {
        cp->cap = cp->cap ? cp->cap * 2 : 64;
        cp->queue = tb_xrealloc(cp->queue, cp->cap * sizeof(*cp->queue));
        if (cp->target)
            cp->target = tb_xrealloc(cp->target, cp->cap * sizeof(*cp->target));
    }
    if (target && !cp->target)
        cp->target = tb_xcalloc(cp->cap, sizeof(*cp->target));
    if (cp->target)
        cp->target[cp->n] = target;
    cp->queue[cp->n++] = m; /* borrowed (store.h): its job copies it when it starts */
    pump(cp);
}

void tb_copy_add(struct tb_copy *cp, const struct tb_msg_info *m)
{
    add(cp, m, 0);
}

/* Records tb_copy_add_at keeps for its caller, whose own may be a temporary (a replica
 * pass renumbers a copy of the delta's record): in blocks that never move. */
struct tb_copy_held {
    struct tb_copy_held *next;
    size_t n;
    struct tb_msg_info r[128];
};

void tb_copy_add_at(struct tb_copy *cp, const struct tb_msg_info *m, uint32_t target)
{
    struct tb_copy_held *h = cp->held;
    if (!h || h->n == sizeof(h->r) / sizeof(*h->r)) {
        h = tb_xmalloc(sizeof(*h));
        h->next = cp->held;
        h->n = 0;
        cp->held = h;
    }
    h->r[h->n] = *m; /* its strings still borrowed */
    add(cp, &h->r[h->n++], target);
}

void tb_copy_set_displaced(struct tb_copy *cp, struct tb_uidset *displaced)
{
    cp->displaced = displaced;
}

void tb_copy_set_uid_floor(struct tb_copy *cp, uint32_t uid)
{
    cp->uid_floor = uid;
}

void tb_copy_set_source(struct tb_copy *cp, const char *mailbox, uint32_t uidvalidity)
{
    free(cp->src_mailbox);
    cp->src_mailbox = tb_xstrdup(mailbox);
    cp->src_uidvalidity = uidvalidity;
}

static void job_free(struct tb_copy_job *j)
{
    tb_msg_info_clear(&j->m);
    tb_blob_unref(j->body);
    free(j);
}

static void copy_free(struct tb_copy *cp)
{
    if (cp->src->copy_starved == cp)
        cp->src->copy_starved = NULL;
    tb_copy_unknown_free(&cp->unknown);
    free(cp->queue); /* its records are the caller's */
    free(cp->target);
    for (struct tb_copy_held *h = cp->held, *next; h; h = next) {
        next = h->next;
        free(h);
    }
    free(cp->ready);
    for (size_t i = cp->again_head; i < cp->n_again; i++)
        job_free(cp->again[i]); /* not stored: the pass failed, the next run copies them */
    free(cp->again);
    tb_uidset_free(&cp->misplaced);
    free(cp->src_mailbox);
    free(cp->mailbox);
    free(cp);
}

/* Room freed in src's window: cp (NULL once freed) goes on, and so does a copy from src
 * waiting for room. */
static void room_freed(struct tb_store *src, struct tb_copy *cp)
{
    if (cp && !cp->finished)
        pump(cp);
    struct tb_copy *w = src->copy_starved;
    if (w && w != cp && !w->finished)
        pump(w);
}

/* Its APPEND is the link's: the body no longer counts in the window. */
static void release(struct tb_copy_job *j)
{
    j->cp->src->copy_held -= j->held;
    j->held = 0;
}

/* Frees a finished job, then either starts more or, once abandoned and idle, frees cp. */
static void job_done(struct tb_copy_job *j)
{
    struct tb_copy *cp = j->cp;
    struct tb_store *src = cp->src;
    cp->inflight--;
    src->copy_held -= j->held;
    job_free(j);
    bool gone = false;
    if (cp->finished && cp->inflight == 0 && !cp->pumping) {
        copy_free(cp);
        gone = true;
    }
    room_freed(src, gone ? NULL : cp);
}

static struct mailimap_set *appenduid_set(const struct tb_imap_result *r)
{
    if (!r->code || r->code->rc_type != MAILIMAP_RESP_TEXT_CODE_EXTENSION ||
        r->code->rc_data.rc_ext_data->ext_extension->ext_id != MAILIMAP_EXTENSION_UIDPLUS ||
        r->code->rc_data.rc_ext_data->ext_type != MAILIMAP_UIDPLUS_RESP_CODE_APND)
        return NULL;
    struct mailimap_uidplus_resp_code_apnd *a = r->code->rc_data.rc_ext_data->ext_data;
    return a->uid_set;
}

/* A MULTIAPPEND's APPENDUID: the n new UIDs in the messages' order (RFC 4315: the uid-set
 * lists them in that order; a range covers its two ends whichever comes first, and counts
 * up). False (uids unusable) unless it names exactly n UIDs. */
static bool appenduids(const struct tb_imap_result *r, size_t n, uint32_t *uids)
{
    struct mailimap_set *set = appenduid_set(r);
    if (!set)
        return false;
    size_t k = 0;
    for (clistiter *it = clist_begin(set->set_list); it; it = clist_next(it)) {
        struct mailimap_set_item *si = clist_content(it);
        uint32_t lo = si->set_first < si->set_last ? si->set_first : si->set_last;
        uint32_t hi = si->set_first < si->set_last ? si->set_last : si->set_first;
        if (lo == 0 || (uint64_t)hi - lo + 1 > n - k)
            return false;
        for (uint64_t u = lo; u <= hi; u++)
            uids[k++] = (uint32_t)u;
    }
    return k == n;
}

static uint32_t appenduid(const struct tb_imap_result *r)
{
    uint32_t uid;
    return appenduids(r, 1, &uid) ? uid : 0;
}

static bool is_trycreate(const struct tb_imap_result *r)
{
    return r->code && r->code->rc_type == MAILIMAP_RESP_TEXT_CODE_TRY_CREATE;
}

/* An APPEND's message was stored: uid is its new UID from APPENDUID, 0 when not given. */
static void append_ok(struct tb_copy_job *j, const struct tb_imap_result *r, uint32_t uid)
{
    struct tb_copy *cp = j->cp;
    if (j->target) {
        /* Elsewhere than asked (a delivery took the UID meanwhile), or unknown: not a
         * replica pair. The next pass finds it by identity and moves it. */
        if (uid == j->target) {
            cp->bytes += j->len;
            cp->done(cp->ud, j->m.uid, uid, j->m.flags);
        } else {
            /* A copy under a UID the other side may give another message: expunged once the
             * pipe is done (tb_copy_finish). The source still has it. */
            if (uid)
                tb_uidset_add(&cp->misplaced, uid);
            if (cp->displaced)
                tb_uidset_add(cp->displaced, j->m.uid);
        }
    } else if (uid) {
        cp->bytes += j->len;
        cp->done(cp->ud, j->m.uid, uid, j->m.flags);
    } else if (!r->code_unreadable && !tb_imap_has_cap(cp->dst->c, "UIDPLUS")) {
        /* No UIDPLUS: the copy is found by identity once the batch is done. */
        cp->bytes += j->len;
        tb_copy_unknown_add(cp, &j->m);
    } else {
        /* The message is there under a UID we do not know: fail the pass, so its intent
         * stays and the next run pairs it by identity instead of copying it again. */
        tb_store_fail(cp->dst, TB_ERR_PROTOCOL, "mailbox %s: APPEND gave %s", cp->mailbox,
                      r->code_unreadable ? "an APPENDUID out of range"
                                         : "no usable APPENDUID (server lacks UIDPLUS)");
    }
}

/* Not a refusal of the message: the whole pass fails (or is already gone). */
static bool append_fatal(struct tb_copy *cp, const struct tb_imap_result *r)
{
    if (r->status == TB_IMAP_ABORTED)
        return true;
    if (tb_imap_result_throttled(r)) {
        /* Not a refusal of this message: the server wants us back later. The pass fails
         * (its intent stays) and a migration retries after a pause. */
        char code[64];
        tb_store_fail(cp->dst, TB_ERR_TEMP, "mailbox %s: APPEND: server asks to slow down: NO %s%s",
                      cp->mailbox, tb_imap_code_prefix(r, code, sizeof(code)), r->text);
        return true;
    }
    if (is_trycreate(r)) {
        tb_store_fail(cp->dst, TB_ERR_TEMP, "mailbox %s: APPEND: mailbox is gone: %s", cp->mailbox,
                      r->text);
        return true;
    }
    return false;
}

static void append_done(struct tb_imap *c, const struct tb_imap_result *r, void *ud)
{
    (void)c;
    struct tb_copy_job *j = ud;
    struct tb_copy *cp = j->cp;
    cp->dst->pending--;
    cp->appends--;
    if (r->status == TB_IMAP_OK) {
        append_ok(j, r, appenduid(r));
    } else if (!append_fatal(cp, r)) {
        /* NO or BAD for this message alone (too big, over quota, a flag it rejects): the
         * others go on. Nothing was stored (RFC 3501: a failed APPEND adds nothing). */
        char code[64];
        /* Replica mode: a UID the server cannot give (below its UIDNEXT: something took it
         * since the plan, such as a late APPEND of a killed run) is not this message's
         * fault and no skip: the next pass sees both and plans again. */
        if (j->target && r->text && strncmp(r->text, "XREPLICATE:", 11) == 0) {
            if (cp->displaced)
                tb_uidset_add(cp->displaced, j->m.uid);
        } else {
            skip(cp, &j->m, true, "APPEND refused by %s: %s %s%s", cp->dst->label,
                 r->status == TB_IMAP_NO ? "NO" : "BAD", tb_imap_code_prefix(r, code, sizeof(code)),
                 r->text);
        }
    }
    job_done(j);
}

static void format_date(const struct tb_msg_info *m, char *buf, size_t len)
{
    static const char *mon[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    time_t t = (time_t)(m->internaldate + (int64_t)m->tz_minutes * 60);
    struct tm tm;
    gmtime_r(&t, &tm);
    int tz = m->tz_minutes < 0 ? -m->tz_minutes : m->tz_minutes;
    snprintf(buf, len, "\"%02d-%s-%04d %02d:%02d:%02d %c%02d%02d\"", tm.tm_mday, mon[tm.tm_mon],
             tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec, m->tz_minutes < 0 ? '-' : '+',
             tz / 60, tz % 60);
}

/* " (flags) date literal": one message of an APPEND. */
static void append_message(struct tb_cmd *cmd, struct tb_copy_job *j)
{
    struct tb_copy *cp = j->cp;
    bool dropped = false;
    char *keep = tb_store_perm_filter(cp->dst, cp->mailbox, j->m.flags, &dropped);
    if (dropped)
        cp->dst->flags_dropped++;
    tb_cmd_printf(cmd, "(%s)", keep);
    free(keep);
    char date[64];
    format_date(&j->m, date, sizeof(date));
    tb_cmd_atom(cmd, date);
    tb_cmd_literal_blob(cmd, j->body);
}

/* XREPLICATE UIDS, pipelined right before its APPEND: nothing else appends on this
 * connection. */
static void submit_uids(struct tb_copy *cp, const char *uids)
{
    struct tb_cmd *cmd = tb_cmd_new("XREPLICATE UIDS");
    tb_cmd_astring(cmd, cp->mailbox);
    tb_cmd_atom(cmd, uids);
    char what[300];
    snprintf(what, sizeof(what), "mailbox %s: XREPLICATE UIDS", cp->mailbox);
    tb_imap_submit(cp->dst->c, cmd, 0, tb_store_op_done, NULL, tb_store_op_new(cp->dst, what));
}

static void single_sent(void *ud)
{
    struct tb_copy_job *j = ud;
    release(j);
    room_freed(j->cp->src, j->cp);
}

/* One message, one APPEND. */
static void send_single(struct tb_copy_job *j)
{
    struct tb_copy *cp = j->cp;
    if (j->target) {
        char uid[16];
        snprintf(uid, sizeof(uid), "%" PRIu32, j->target);
        submit_uids(cp, uid);
    }
    struct tb_cmd *cmd = tb_cmd_new("APPEND");
    tb_cmd_astring(cmd, cp->mailbox);
    append_message(cmd, j);
    tb_blob_unref(j->body); /* the command (then the write) holds it until written */
    j->body = NULL;
    cp->dst->pending++;
    cp->appends++;
    tb_imap_submit_sent(cp->dst->c, cmd, 0, append_done, single_sent, j);
}

/* A refused batch's job, its body gone: kept for finish() to fetch again (or, once the
 * copy is finished, a failed pass's: not stored, the next run copies it). */
static void keep_again(struct tb_copy_job *j)
{
    struct tb_copy *cp = j->cp;
    if (cp->finished) {
        job_done(j);
        return;
    }
    cp->inflight--;
    if (cp->n_again == cp->cap_again) {
        cp->cap_again = cp->cap_again ? 2 * cp->cap_again : BATCH_MAX;
        cp->again = tb_xrealloc(cp->again, cp->cap_again * sizeof(*cp->again));
    }
    cp->again[cp->n_again++] = j;
}

static void batch_done(struct tb_imap *c, const struct tb_imap_result *r, void *ud)
{
    (void)c;
    struct batch *b = ud;
    struct tb_copy *cp = b->cp;
    cp->dst->pending--;
    cp->appends--;
    if (r->status == TB_IMAP_OK) {
        uint32_t *uids = tb_xcalloc(b->n, sizeof(*uids));
        bool known = appenduids(r, b->n, uids);
        /* An APPENDUID that does not name one UID per message: unusable, as one out of
         * range (append_ok fails the pass). */
        struct tb_imap_result odd = {.status = r->status, .code_unreadable = true};
        if (!known && appenduid_set(r))
            r = &odd;
        /* The last job_done may free cp: nothing of cp after the loop. */
        for (size_t i = 0; i < b->n; i++) {
            append_ok(b->jobs[i], r, known ? uids[i] : 0);
            job_done(b->jobs[i]);
        }
        free(uids);
    } else if (append_fatal(cp, r)) {
        for (size_t i = 0; i < b->n; i++)
            job_done(b->jobs[i]);
    } else {
        /* Refused as a whole, nothing stored: again one APPEND each, so a message the
         * server refuses is told apart from the others (which then go in). */
        tb_log_debug(1, "%s: mailbox %s: MULTIAPPEND of %zu refused (%s), one APPEND each",
                     cp->dst->label, cp->mailbox, b->n, r->text ? r->text : "");
        cp->refused++;
        bool live = !cp->finished; /* else keep_again's job_done may free cp */
        for (size_t i = 0; i < b->n; i++)
            if (b->jobs[i]->body)
                send_single(b->jobs[i]); /* replica mode: sent again from the body kept */
            else
                keep_again(b->jobs[i]);
        /* Kept jobs left the window: fetch more. The window may have been full of refused
         * batches, this answer the last thing in flight; without this the copy waited for
         * nothing, forever (no command pending, so no timeout either). */
        if (live)
            room_freed(cp->src, cp);
    }
    free(b->jobs);
    free(b);
}

static bool fetch_untagged(struct tb_imap *c, const struct tb_resp *r, void *ud)
{
    (void)c;
    struct tb_copy_job *j = ud;
    if (!r->data && r->kind == TB_RESP_UNTAGGED && !j->bad[0]) {
        /* Unreadable: maybe this message's body. Not claimed (it may be another job's); the
         * job then reports it instead of "no body" if its own never came. */
        char kw[16];
        tb_resp_untagged_keyword(r, kw, sizeof(kw));
        if (strcmp(kw, "FETCH") == 0) {
            size_t n = r->raw_len < 60 ? r->raw_len : 60;
            for (size_t i = 0; i < n; i++)
                j->bad[i] = r->raw[i] >= 0x20 && r->raw[i] < 0x7f ? r->raw[i] : '?';
            j->bad[n] = 0;
        }
        return false;
    }
    if (!r->data || r->data->rsp_type != MAILIMAP_RESP_DATA_TYPE_MESSAGE_DATA ||
        r->data->rsp_data.rsp_message_data->mdt_type != MAILIMAP_MESSAGE_DATA_FETCH)
        return false;
    struct mailimap_msg_att *att = r->data->rsp_data.rsp_message_data->mdt_msg_att;
    struct tb_msg_info m;
    const char *body = NULL;
    size_t len = 0;
    bool has_uid = tb_fetch_to_info(att, &m, &body, &len);
    int state = tb_fetch_body_state(att);
    bool mine = has_uid && m.uid == j->m.uid && state != 0;
    tb_msg_info_clear(&m);
    if (!mine || j->body_state == 2)
        return false;
    j->body_state = state;
    if (state == 2) {
        /* The framer's detached body is taken as it is; one the framer left in the response
         * (a quoted string) is copied once. */
        if (r->body) {
            j->body = tb_blob_ref(r->body);
        } else {
            j->body = tb_blob_new(len);
            memcpy(j->body->data, body, len);
        }
        j->len = j->body->len;
        /* The window counts what is held now instead of the size asked for. */
        j->cp->src->copy_held += j->len;
        j->cp->src->copy_held -= j->held;
        j->held = j->len;
    }
    return true;
}

static void fetch_done(struct tb_imap *c, const struct tb_imap_result *r, void *ud)
{
    (void)c;
    struct tb_copy_job *j = ud;
    struct tb_copy *cp = j->cp;
    cp->src->pending--;
    cp->fetches--;
    if (r->status == TB_IMAP_ABORTED) {
        job_done(j);
        return;
    }
    if (tb_imap_result_throttled(r)) {
        char code[64];
        tb_store_fail(cp->src, TB_ERR_TEMP, "FETCH: server asks to slow down: NO %s%s",
                      tb_imap_code_prefix(r, code, sizeof(code)), r->text);
        job_done(j);
        return;
    }
    if (r->status != TB_IMAP_OK || j->body_state != 2) {
        /* Not delivered: maybe expunged meanwhile, maybe a server fault. Either way it is
         * recorded, not lost: the next run asks again and drops it if it is gone. */
        char code[64];
        if (r->status != TB_IMAP_OK)
            skip(cp, &j->m, false, "FETCH from %s failed: %s %s%s", cp->src->label,
                 r->status == TB_IMAP_NO ? "NO" : "BAD", tb_imap_code_prefix(r, code, sizeof(code)),
                 r->text);
        else if (j->body_state == 0 && j->bad[0])
            skip(cp, &j->m, false, "FETCH from %s: unreadable response: %s", cp->src->label,
                 j->bad);
        else
            skip(cp, &j->m, false, "FETCH from %s returned %s", cp->src->label,
                 j->body_state == 1 ? "BODY[] NIL" : "no body");
        job_done(j);
        return;
    }
    if (!batching(cp) || j->again) {
        send_single(j);
    } else if (cp->finished) {
        job_done(j); /* the pass is over (failed): not stored, the next run copies it */
    } else {
        cp->ready[cp->n_ready++] = j;
        pump(cp);
    }
}

/* A body is held from its FETCH until its batch is answered, so the window (COPY_BYTES)
 * turns over once per fill, send and commit of a batch. On an uncompressed link, where the
 * CPUs or the round trip set the pace, 2 MiB batches turn it over fast enough to keep the
 * source streaming at 50 ms (the bench's initial sync: 3.49 s instead of 4.27, its
 * source link idle 40-90 ms about 30 times with 4 MiB batches, 3 to 5 times with 2 MiB;
 * the same 2.4 s at 0 ms). A compressed link keeps 4 MiB: its deflate level follows the
 * queue a batch builds, and smaller ones kept it at level 1 more often (20 Mbit/s with
 * compress = yes: 12% more bytes, 22.4 s instead of 20.2). */
static size_t batch_bytes(const struct tb_copy *cp)
{
    return tb_imap_compress_active(cp->dst->c) ? BATCH_BYTES : BATCH_BYTES / 2;
}

/* The first n ready jobs fit one command: one kind (pinned or not), targets strictly
 * ascending, at most BATCH_MAX and batch_bytes (one message alone may be larger). *closed:
 * the batch cannot grow. */
static size_t batch_len(const struct tb_copy *cp, bool *closed)
{
    size_t n = 1, bytes = cp->ready[0]->len, most = batch_bytes(cp);
    while (n < cp->n_ready && n < BATCH_MAX) {
        const struct tb_copy_job *prev = cp->ready[n - 1], *j = cp->ready[n];
        if ((j->target != 0) != (prev->target != 0) || (j->target && j->target <= prev->target) ||
            bytes + j->len > most)
            break;
        bytes += j->len;
        n++;
    }
    *closed = n < cp->n_ready || n == BATCH_MAX || bytes >= most;
    return n;
}

static void batch_sent(void *ud)
{
    struct batch *b = ud;
    for (size_t i = 0; i < b->n; i++)
        release(b->jobs[i]);
    room_freed(b->cp->src, b->cp);
}

static void send_batch(struct tb_copy *cp, size_t n)
{
    struct batch *b = tb_xcalloc(1, sizeof(*b));
    b->cp = cp;
    b->n = n;
    b->jobs = tb_xmalloc(n * sizeof(*b->jobs));
    memcpy(b->jobs, cp->ready, n * sizeof(*b->jobs));
    cp->n_ready -= n;
    memmove(cp->ready, cp->ready + n, cp->n_ready * sizeof(*cp->ready));
    if (b->jobs[0]->target) {
        /* One list for the whole batch, taken in order by its messages. */
        struct tb_uidset set;
        tb_uidset_init(&set);
        for (size_t i = 0; i < n; i++)
            tb_uidset_add(&set, b->jobs[i]->target);
        tb_uidset_normalize(&set);
        struct tb_buf text;
        tb_buf_init(&text);
        size_t pos = 0; /* BATCH_MAX UIDs: one piece */
        tb_uidset_render(&set, &pos, &text, 16 * BATCH_MAX);
        tb_uidset_free(&set);
        submit_uids(cp, tb_buf_cstr(&text));
        tb_buf_free(&text);
    }
    struct tb_cmd *cmd = tb_cmd_new("APPEND");
    tb_cmd_astring(cmd, cp->mailbox);
    bool pinned = b->jobs[0]->target != 0;
    for (size_t i = 0; i < n; i++) {
        append_message(cmd, b->jobs[i]);
        if (!pinned) {
            tb_blob_unref(b->jobs[i]->body); /* the command, then the write, holds it */
            b->jobs[i]->body = NULL;
        }
    }
    cp->dst->pending++;
    cp->appends++;
    /* Replica mode keeps the bodies, counted, until answered: a refused batch is sent again
     * at once, before a later batch moves the server's UIDNEXT past its targets. */
    tb_imap_submit_sent(cp->dst->c, cmd, 0, batch_done, pinned ? NULL : batch_sent, b);
}

/* Sends the ready jobs that should not wait any longer. */
static void flush(struct tb_copy *cp)
{
    while (cp->n_ready > 0) {
        bool closed;
        size_t n = batch_len(cp, &closed);
        bool idle = cp->appends == 0 || cp->fetches == 0;
        /* Replica mode: one command at a time, so a batch sent again (one APPEND each) is
         * stored before any later, higher UID moves the server's UIDNEXT past it. */
        if (cp->ready[0]->target ? cp->appends > 0 : !(closed || idle))
            break;
        if (n == 1) {
            struct tb_copy_job *j = cp->ready[0];
            cp->n_ready--;
            memmove(cp->ready, cp->ready + 1, cp->n_ready * sizeof(*cp->ready));
            send_single(j);
        } else {
            send_batch(cp, n);
        }
    }
}

static struct tb_copy_job *new_job(struct tb_copy *cp)
{
    struct tb_copy_job *j = tb_xcalloc(1, sizeof(*j));
    j->cp = cp;
    /* The job's own strings: it may outlive tb_copy_finish (after a failure), the caller's
     * records may not. At most the window's worth of them at once. */
    const struct tb_msg_info *q = cp->queue[cp->next];
    j->m = *q;
    j->m.flags = tb_xstrdup(q->flags ? q->flags : "");
    j->m.ident = q->ident ? tb_xstrdup(q->ident) : NULL;
    j->m.pooled = false;
    j->target = cp->target ? cp->target[cp->next] : 0;
    cp->next++;
    return j;
}

static void pump(struct tb_copy *cp)
{
    if (cp->pumping)
        return; /* a command aborted synchronously inside the loop below: it goes on */
    cp->pumping = true;
    if (batching(cp) && !cp->ready)
        cp->ready = tb_xmalloc((size_t)window(cp) * sizeof(*cp->ready));
    flush(cp);
    struct tb_store *src = cp->src;
    if (src->copy_starved == cp)
        src->copy_starved = NULL;
    size_t limit =
        tb_imap_probing(src->c) || tb_imap_probing(cp->dst->c) ? PROBE_WINDOW : COPY_BYTES;
    while ((cp->next < cp->n || (cp->refetching && cp->again_head < cp->n_again)) &&
           cp->inflight < window(cp) && !src->failed && !cp->dst->failed) {
        /* A body handed to the destination's link is out of the window, but in memory
         * until the socket takes it (without this, 0 ms on disk peaked ~3 MB higher). */
        if (src->copy_held + tb_imap_unwritten(cp->dst->c) >= limit && cp->inflight > 0) {
            src->copy_starved = cp; /* its own jobs pump it too: this only speeds it up */
            break;
        }
        struct tb_copy_job *j = cp->next < cp->n ? new_job(cp) : cp->again[cp->again_head++];
        j->again = cp->refetching;
        j->body_state = 0;
        j->bad[0] = 0;
        cp->inflight++;
        j->held = j->m.size;
        src->copy_held += j->held;
        struct tb_cmd *cmd = tb_cmd_new("UID FETCH");
        tb_cmd_printf(cmd, "%u (UID BODY.PEEK[])", j->m.uid);
        cp->src->pending++;
        cp->fetches++;
        tb_imap_submit(cp->src->c, cmd, 0, fetch_done, fetch_untagged, j);
    }
    flush(cp);
    cp->pumping = false;
}

static bool fetches_sent(void *ud)
{
    const struct tb_copy *cp = ud;
    return cp->next == cp->n;
}

int tb_copy_fetch_all(struct tb_copy *cp)
{
    struct tb_store *both[2] = {cp->src, cp->dst};
    return tb_store_wait_for(both, 2, fetches_sent, cp);
}

static bool copies_done(void *ud)
{
    const struct tb_copy *cp = ud;
    return cp->next == cp->n && cp->inflight == 0 &&
           (!cp->refetching || cp->again_head == cp->n_again);
}

/* The messages of refused batches, once nothing else is in flight: their mailbox selected
 * again on the source, each fetched and sent in an APPEND of its own. */
static int refetch(struct tb_copy *cp)
{
    struct tb_store *both[2] = {cp->src, cp->dst};
    struct tb_delta sel = {0};
    if (cp->src_mailbox && cp->src_uidvalidity)
        tb_store_select_into(cp->src, cp->src_mailbox, &sel);
    int rc = tb_store_wait(both, 2);
    bool same = cp->src_uidvalidity && sel.uidvalidity == cp->src_uidvalidity;
    tb_delta_clear(&sel);
    if (rc != 0)
        return rc;
    if (!same) {
        /* Not the mailbox the listing came from (or not known to be): its UIDs may name
         * other messages now. Not stored; the next run lists it again. */
        for (size_t i = 0; i < cp->n_again; i++) {
            skip(cp, &cp->again[i]->m, false,
                 "MULTIAPPEND refused by %s; %s changed before a retry one by one", cp->dst->label,
                 cp->src_mailbox ? cp->src_mailbox : "the source mailbox");
            job_free(cp->again[i]);
        }
        cp->n_again = 0;
        return 0;
    }
    tb_log_debug(1, "%s: mailbox %s: %zu messages of refused MULTIAPPENDs, one APPEND each",
                 cp->dst->label, cp->mailbox, cp->n_again);
    cp->refetching = true;
    pump(cp);
    return tb_store_wait_for(both, 2, copies_done, cp);
}

static int finish(struct tb_copy *cp, uint64_t *bytes, bool own)
{
    pump(cp);
    struct tb_store *both[2] = {cp->src, cp->dst};
    int rc = own ? tb_store_wait_for(both, 2, copies_done, cp) : 0;
    /* Fetching again what a refused batch held selects the source's mailbox; finding the
     * copies without a known UID, and expunging misplaced ones, the destination's: only
     * once nothing else is in flight. */
    if (rc == 0 && (!own || cp->n_again || cp->unknown.n || !tb_uidset_empty(&cp->misplaced)))
        rc = tb_store_wait(both, 2);
    if (rc == 0 && cp->n_again)
        rc = refetch(cp);
    if (rc == 0 && cp->unknown.n)
        rc = tb_copy_identify(cp);
    if (rc == 0 && !tb_uidset_empty(&cp->misplaced)) {
        tb_store_select(cp->dst, cp->mailbox);
        tb_store_expunge(cp->dst, &cp->misplaced, NULL);
        rc = tb_store_wait(both, 2);
    }
    if (bytes)
        *bytes += cp->bytes;
    cp->finished = true;
    /* Fetched but not sent (a store failed): not stored, the next run copies them. */
    cp->pumping = true; /* job_done must not free cp in this loop */
    while (cp->n_ready > 0)
        job_done(cp->ready[--cp->n_ready]);
    cp->pumping = false;
    if (cp->inflight == 0)
        copy_free(cp);
    return rc;
}

int tb_copy_finish(struct tb_copy *cp, uint64_t *bytes)
{
    return finish(cp, bytes, false);
}

int tb_copy_finish_own(struct tb_copy *cp, uint64_t *bytes)
{
    return finish(cp, bytes, true);
}
