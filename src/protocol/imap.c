/* The pipeline: tagged commands in flight, routed completions, untagged data by content. */
#include "protocol/imap_internal.h"

#include "twinbox/config.h"
#include "twinbox/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void pump(struct tb_imap *c);
static void reconnect(struct tb_imap *c);

const char *tb_imap_phase_name(enum phase p)
{
    static const char *names[] = {"connect", "connect", "TLS",     "greeting", "STARTTLS",
                                  "login",   "session", "command", "command"};
    return names[p];
}

/* ---- failure: one line, every pending command aborted exactly once ---- */

static void abort_all(struct tb_imap *c, const char *msg)
{
    struct tb_imap_result r = {.status = TB_IMAP_ABORTED, .text = msg};
    /* Detach the queues first: callbacks may submit (and are aborted at once). */
    for (;;) {
        struct pending *p = NULL;
        if (c->n_inflight) {
            p = c->inflight[0];
            memmove(c->inflight, c->inflight + 1, (c->n_inflight - 1) * sizeof(*c->inflight));
            c->n_inflight--;
        } else if (c->waiting_head < c->n_waiting) {
            p = c->waiting[c->waiting_head++];
        } else {
            break;
        }
        if (p->done)
            p->done(c, &r, p->ud);
        tb_cmd_free(p->cmd);
        free(p);
    }
    c->blocked = c->barrier = c->held = NULL;
}

static void detach_link(struct tb_imap *c)
{
    if (!c->link)
        return;
    snprintf(c->tls_desc, sizeof(c->tls_desc), "%s", tb_link_tls_description(c->link));
    c->tls_was_active = tb_link_tls_active(c->link);
    c->compress_was_active = tb_link_compress_active(c->link);
    c->last_stats = *tb_link_stats(c->link);
    if (c->logout_written)
        tb_link_close_when_written(c->link); /* the LOGOUT must still leave */
    else
        tb_link_close(c->link);
    c->link = NULL;
}

void tb_imap_fail(struct tb_imap *c, enum tb_err_kind kind, const char *fmt, ...)
{
    if (c->phase == PH_FAILED)
        return;
    enum phase was = c->phase;
    c->phase = PH_FAILED;
    c->err_kind = kind == TB_ERR_NONE ? TB_ERR_INTERNAL : kind;
    char cause[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cause, sizeof(cause), fmt, ap);
    va_end(ap);
    struct tb_error e;
    tb_error_set(&e, c->err_kind, "%s: %s: %s", tb_imap_account_name(c), tb_imap_phase_name(was),
                 cause);
    const char *msg = e.msg;
    if (c->idle_init)
        uv_timer_stop(&c->idle);
    tb_secret_free(&c->password);
    abort_all(c, msg);
    /* Close the link now: its handles (socket, timers, tunnel child) would otherwise keep
     * the owner's event loop alive after the failure. */
    detach_link(c);
    if (c->ev->error)
        c->ev->error(c, &e, c->ud);
}

/* ---- link callbacks ---- */

static void on_idle_timeout(uv_timer_t *t)
{
    struct tb_imap *c = t->data;
    /* Bytes our own rate limit still holds (max-bytes-per-second) have not reached the
     * server: it cannot have answered them yet. The wait is ours, and it ends. */
    if (c->link && tb_link_rate_held(c->link) > 0) {
        uv_timer_start(&c->idle, on_idle_timeout, (uint64_t)c->acct->timeout_s * 1000, 0);
        return;
    }
    tb_imap_fail(c, TB_ERR_TEMP, "no response from server for %d s", c->acct->timeout_s);
}

static void arm_idle(struct tb_imap *c)
{
    if (c->phase == PH_FAILED)
        return;
    /* A held command (WATCH, IDLE) waits for changes, not for an answer: its caller
     * bounds the wait and releases it. */
    bool waiting_for_server = (c->n_inflight > 0 && !c->held) || c->phase < PH_READY;
    if (waiting_for_server)
        uv_timer_start(&c->idle, on_idle_timeout, (uint64_t)c->acct->timeout_s * 1000, 0);
    else
        uv_timer_stop(&c->idle);
}

static void link_connected(struct tb_link *l, void *ud)
{
    (void)l;
    tb_session_on_connected(ud);
}

static void link_tls_ready(struct tb_link *l, void *ud)
{
    (void)l;
    tb_session_on_tls_ready(ud);
}

static void link_error(struct tb_link *l, const struct tb_error *e, void *ud)
{
    (void)l;
    struct tb_imap *c = ud;
    if (tb_session_reconnect_on_close(c)) {
        tb_log_debug(1, "%s: %s; connecting again for the new token", tb_imap_account_name(c),
                     e->msg);
        reconnect(c);
        return;
    }
    /* A BYE before the connection ended says why better than "closed". */
    if (c->bye[0] && e->kind == TB_ERR_TEMP)
        tb_imap_fail(c, TB_ERR_TEMP, "server closed the connection: %s", c->bye);
    else
        tb_imap_fail(c, e->kind, "%s", e->msg);
}

static void trace_response(const char *p, size_t n)
{
    if (tb_verbosity < 1)
        return;
    /* The first line only, literal bodies never: they may be mail or credentials. */
    const char *nl = memchr(p, '\n', n);
    size_t len = nl ? (size_t)(nl - p) : n;
    if (len && p[len - 1] == '\r')
        len--;
    bool untagged = n > 0 && (p[0] == '*' || p[0] == '+');
    if (untagged && tb_verbosity < 2)
        return;
    tb_log_debug(1, "S: %.*s%s", (int)(len > 300 ? 300 : len), p,
                 len < n - (nl ? 1 : 0) - (len < n && p[len] == '\r') ? " ..." : "");
}

static struct pending *find_inflight(struct tb_imap *c, const char *tag, size_t *pos)
{
    if (tag[0] != 'T')
        return NULL;
    char *end;
    unsigned long seq = strtoul(tag + 1, &end, 10);
    if (*end || end == tag + 1)
        return NULL;
    size_t lo = 0, hi = c->n_inflight;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (c->inflight[mid]->seq < seq)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < c->n_inflight && c->inflight[lo]->seq == seq) {
        *pos = lo;
        return c->inflight[lo];
    }
    return NULL;
}

static void complete(struct tb_imap *c, const struct tb_resp *r)
{
    size_t pos;
    struct pending *p = find_inflight(c, r->tag, &pos);
    if (!p) {
        tb_imap_fail(c, TB_ERR_PROTOCOL, "protocol error: response for unknown tag %.20s", r->tag);
        return;
    }
    memmove(c->inflight + pos, c->inflight + pos + 1,
            (c->n_inflight - pos - 1) * sizeof(*c->inflight));
    c->n_inflight--;
    uint64_t took = uv_hrtime() - p->sent_ns;
    if (!c->min_rtt_ns || took < c->min_rtt_ns)
        c->min_rtt_ns = took ? took : 1;
    if (c->blocked == p)
        c->blocked = NULL;
    if (c->barrier == p)
        c->barrier = NULL;
    if (c->held == p) {
        c->held = NULL;
        c->release_early = false;
    }
    struct tb_imap_result res = {TB_IMAP_OK, "", NULL, r, r->code_unreadable};
    switch (tb_resp_tagged_status(r)) {
    case MAILIMAP_RESP_COND_STATE_OK:
        res.status = TB_IMAP_OK;
        break;
    case MAILIMAP_RESP_COND_STATE_NO:
        res.status = TB_IMAP_NO;
        break;
    default:
        res.status = TB_IMAP_BAD;
        break;
    }
    struct mailimap_resp_text *t = tb_resp_tagged_text(r);
    if (t) {
        res.text = t->rsp_text ? t->rsp_text : "";
        res.code = t->rsp_code;
    }
    if (p->done)
        p->done(c, &res, p->ud);
    tb_cmd_free(p->cmd);
    free(p);
}

/* Writes what c->out gathered (wiped after, when it held a secret). */
static void flush_out(struct tb_imap *c)
{
    if (!c->out.len)
        return;
    if (c->out_secret) {
        tb_link_write_secret(c->link, c->out.data, c->out.len);
        explicit_bzero(c->out.data, c->out.len);
        c->out_secret = false;
    } else {
        tb_link_write(c->link, c->out.data, c->out.len);
    }
    c->out.len = 0;
}

/* Chunk k of p's command: its text gathered into c->out, its blob literals (message
 * bodies) written from where they are, after what c->out holds so far. */
static void gather_chunk(struct tb_imap *c, struct pending *p, size_t k)
{
    struct tb_cmd_piece pc;
    if (tb_cmd_has_secret(p->cmd)) {
        /* Reserved first: growing c->out would leave the secret in a freed block. */
        size_t total = 0;
        for (size_t i = 0; tb_cmd_piece(p->cmd, k, i, &pc); i++)
            total += pc.len;
        tb_buf_reserve(&c->out, total);
        c->out_secret = true;
    }
    for (size_t i = 0; tb_cmd_piece(p->cmd, k, i, &pc); i++) {
        if (pc.blob) {
            flush_out(c);
            tb_link_write_blob(c->link, pc.blob, pc.data, pc.len);
        } else {
            tb_buf_append(&c->out, pc.data, pc.len);
        }
    }
}

/* p's last chunk is gathered: what it wrote is the link's now (blobs referenced, text
 * copied), so the command lets its bodies go instead of holding them until answered. */
static void sent_whole(struct pending *p)
{
    tb_cmd_written(p->cmd);
    if (p->sent)
        p->sent(p->ud);
}

static void send_next_chunk(struct tb_imap *c, struct pending *p)
{
    flush_out(c);
    gather_chunk(c, p, p->next_chunk++);
    flush_out(c);
    if (p->next_chunk >= p->n_chunks) {
        c->blocked = NULL;
        sent_whole(p);
    }
}

static void on_continuation(struct tb_imap *c, const struct tb_resp *r)
{
    struct pending *p = c->blocked;
    if (c->phase == PH_LOGIN) {
        /* A SASL challenge: after a refused token it is the server's base64 JSON error
         * (RFC 7628 3.2.2), which says whether the token expired. Bounded: it is only
         * read for its status. */
        size_t skip = r->raw_len > 1 && r->raw[1] == ' ' ? 2 : 1, len = r->raw_len - skip;
        while (len && (r->raw[skip + len - 1] == '\r' || r->raw[skip + len - 1] == '\n'))
            len--;
        free(c->sasl_challenge);
        c->sasl_challenge = tb_xstrndup(r->raw + skip, len > 4096 ? 4096 : len);
    }
    if (!p) {
        tb_log_debug(2, "%s: ignoring unexpected continuation request", tb_imap_account_name(c));
        return;
    }
    if ((p->flags & TB_CMD_HOLD) && p->next_chunk + 1 == p->n_chunks && !c->release_early) {
        c->held = p; /* the server now streams until the last chunk (DONE) is released */
        return;
    }
    c->release_early = false;
    send_next_chunk(c, p);
}

void tb_imap_release(struct tb_imap *c)
{
    if (c->phase == PH_FAILED)
        return;
    struct pending *p = c->held;
    if (!p) {
        c->release_early = c->blocked && (c->blocked->flags & TB_CMD_HOLD);
        return;
    }
    c->held = NULL;
    send_next_chunk(c, p);
    arm_idle(c);
}

static void dispatch_untagged(struct tb_imap *c, const struct tb_resp *r)
{
    tb_imap_observe(c, r);
    for (size_t i = 0; i < c->n_inflight && c->phase != PH_FAILED; i++) {
        struct pending *p = c->inflight[i];
        if (p->untagged && p->untagged(c, r, p->ud))
            return;
    }
    for (size_t i = 0; i < c->n_handlers && c->phase != PH_FAILED; i++)
        if (c->handlers[i].fn(c, r, c->handlers[i].ud))
            return;
}

static void link_data(struct tb_link *l, const char *data, size_t n, void *ud)
{
    (void)l;
    struct tb_imap *c = ud;
    tb_framer_feed(&c->framer, data, n);
    for (;;) {
        if (c->phase == PH_FAILED)
            return;
        const char *p;
        size_t len;
        int r = tb_framer_next(&c->framer, &p, &len);
        if (r < 0) {
            tb_imap_fail(c, TB_ERR_PROTOCOL, "protocol error: %s", c->framer.error);
            return;
        }
        if (r == 0)
            break;
        trace_response(p, len);
        struct tb_resp resp;
        char err[160];
        if (tb_parse_response(p, len, !c->got_greeting, &resp, err, sizeof(err)) < 0) {
            tb_imap_fail(c, TB_ERR_PROTOCOL, "protocol error: %s: %.60s", err, p);
            return;
        }
        resp.body = tb_framer_take_body(&c->framer);
        switch (resp.kind) {
        case TB_RESP_GREETING:
            c->got_greeting = true;
            tb_session_on_greeting(c, &resp);
            break;
        case TB_RESP_CONT:
            on_continuation(c, &resp);
            break;
        case TB_RESP_UNTAGGED:
            dispatch_untagged(c, &resp);
            break;
        case TB_RESP_TAGGED:
            complete(c, &resp);
            break;
        }
        tb_resp_clear(&resp);
        /* A filter started by that response (STARTTLS, COMPRESS) applies to every byte
         * after it: hand the rest back to the link to pass through the new filter. */
        if (c->restack && c->phase != PH_FAILED) {
            c->restack = false;
            struct tb_buf rest;
            tb_buf_init(&rest);
            tb_framer_take_rest(&c->framer, &rest);
            tb_link_inject(c->link, rest.data, rest.len);
            tb_buf_free(&rest);
            break;
        }
    }
    arm_idle(c);
    pump(c);
}

/* A message token that an APPEND waited for is there (max-messages-per-second). */
static void link_message_ready(struct tb_link *l, void *ud)
{
    (void)l;
    pump(ud);
}

/* What the link had not written fell below WRITE_AHEAD / 2: pump holds no more back. */
static void link_drained(struct tb_link *l, void *ud)
{
    (void)l;
    pump(ud);
}

static const struct tb_link_cb link_cb = {link_connected, link_tls_ready,     link_data,
                                          link_error,     link_message_ready, link_drained};

/* ---- submission ---- */

static void init_framer(struct tb_imap *c)
{
    const struct tb_account *acct = c->acct;
    /* A literal may be a whole message (BODY[]); anything larger than the account accepts
     * as a message is refused before it is buffered. */
    tb_framer_init(&c->framer, acct->max_response_line ? acct->max_response_line : 16u << 20,
                   acct->max_message_size ? acct->max_message_size + 4096 : (uint64_t)128 << 20);
    tb_framer_detach_bodies(&c->framer); /* bodies reach copy.c without another copy */
}

static void reset_word_list(struct tb_buf *b)
{
    b->len = 0;
    tb_buf_puts(b, " ");
    tb_buf_cstr(b); /* accessors hand these out as C strings */
}

struct tb_imap *tb_imap_new(uv_loop_t *loop, const struct tb_account *acct,
                            const struct tb_imap_events *ev, void *ud)
{
    struct tb_imap *c = tb_xcalloc(1, sizeof(*c));
    c->loop = loop;
    c->acct = acct;
    c->ev = ev;
    c->ud = ud;
    c->max_inflight = acct->max_inflight > 0 ? acct->max_inflight : 512;
    init_framer(c);
    tb_buf_init(&c->caps);
    tb_buf_init(&c->enabled);
    tb_buf_init(&c->out);
    reset_word_list(&c->caps);
    reset_word_list(&c->enabled);
    c->next_seq = 1;
    uv_timer_init(loop, &c->idle);
    c->idle.data = c;
    c->idle_init = true;
    uv_prepare_init(loop, &c->flush);
    c->flush.data = c;
    c->open_handles = 2;
    return c;
}

int tb_imap_start(struct tb_imap *c)
{
    c->link = tb_link_new(c->loop, &link_cb, c);
    /* The account's throughput limits, per connection (transport/ratelimit.h). */
    tb_link_set_rate(c->link, c->acct->max_bytes_per_second, 0);
    tb_link_set_message_rate(c->link, c->acct->max_messages_per_second, 0);
    c->phase = PH_CONNECT;
    arm_idle(c);
    if (c->acct->type == TB_ACCOUNT_TUNNEL)
        return tb_link_spawn(c->link, c->acct->command);
    return tb_link_connect_tcp(c->link, c->acct->host, c->acct->port, c->acct->timeout_s);
}

/* Starts over on a new connection to the same account, from the greeting: the server closed
 * the one on which the retry with a fresh OAuth token was to run. The old session's
 * commands end here; the AUTHENTICATE among them keeps its token (login_done ignores an
 * abort) for the new session. */
static void reconnect(struct tb_imap *c)
{
    abort_all(c, "connection closed; reconnecting");
    detach_link(c);
    tb_framer_free(&c->framer);
    init_framer(c);
    c->got_greeting = c->preauth = false;
    reset_word_list(&c->caps);
    reset_word_list(&c->enabled);
    if (c->out_secret && c->out.data)
        explicit_bzero(c->out.data, c->out.len);
    c->out.len = 0;
    c->out_secret = c->restack = c->release_early = false;
    c->bye[0] = 0;
    tb_imap_start(c);
}

void tb_imap_set_password(struct tb_imap *c, const char *password)
{
    tb_secret_free(&c->password);
    c->password = password ? tb_xstrdup(password) : NULL;
}

void tb_imap_submit_internal(struct tb_imap *c, struct tb_cmd *cmd, unsigned flags,
                             tb_imap_done_fn *done, void *ud)
{
    tb_imap_submit(c, cmd, flags, done, NULL, ud);
}

static void on_flush(uv_prepare_t *h)
{
    struct tb_imap *c = h->data;
    uv_prepare_stop(h);
    pump(c);
}

static void submit(struct tb_imap *c, struct tb_cmd *cmd, unsigned flags, tb_imap_done_fn *done,
                   tb_imap_untagged_fn *untagged, tb_imap_sent_fn *sent, void *ud)
{
    if (c->phase == PH_FAILED) {
        struct tb_imap_result r = {.status = TB_IMAP_ABORTED, .text = "connection failed"};
        if (done)
            done(c, &r, ud);
        tb_cmd_free(cmd);
        return;
    }
    if (c->compress_deferred && c->phase == PH_READY)
        tb_session_before_submit(c, cmd);
    struct pending *p = tb_xcalloc(1, sizeof(*p));
    p->cmd = cmd;
    p->flags = flags;
    p->done = done;
    p->untagged = untagged;
    p->sent = sent;
    p->ud = ud;
    p->order = ++c->submitted;
    if (c->n_waiting == c->cap_waiting) {
        /* Reclaim the consumed front before growing. */
        if (c->waiting_head > 0) {
            memmove(c->waiting, c->waiting + c->waiting_head,
                    (c->n_waiting - c->waiting_head) * sizeof(*c->waiting));
            c->n_waiting -= c->waiting_head;
            c->waiting_head = 0;
        }
        if (c->n_waiting == c->cap_waiting) {
            c->cap_waiting = c->cap_waiting ? c->cap_waiting * 2 : 64;
            c->waiting = tb_xrealloc(c->waiting, c->cap_waiting * sizeof(*c->waiting));
        }
    }
    c->waiting[c->n_waiting++] = p;
    uv_prepare_start(&c->flush, on_flush);
}

void tb_imap_submit(struct tb_imap *c, struct tb_cmd *cmd, unsigned flags, tb_imap_done_fn *done,
                    tb_imap_untagged_fn *untagged, void *ud)
{
    submit(c, cmd, flags, done, untagged, NULL, ud);
}

void tb_imap_submit_sent(struct tb_imap *c, struct tb_cmd *cmd, unsigned flags,
                         tb_imap_done_fn *done, tb_imap_sent_fn *sent, void *ud)
{
    submit(c, cmd, flags, done, NULL, sent, ud);
}

static void send_one(struct tb_imap *c, struct pending *p)
{
    p->seq = c->next_seq++;
    p->sent_ns = uv_hrtime();
    snprintf(p->tag, sizeof(p->tag), "T%u", p->seq);
    p->n_chunks = tb_cmd_render(p->cmd, p->tag, tb_imap_has_cap(c, "LITERAL+"),
                                tb_imap_has_cap(c, "LITERAL-"));
    gather_chunk(c, p, 0);
    p->next_chunk = 1;
    if (tb_verbosity >= 1) {
        struct tb_buf t;
        tb_buf_init(&t);
        tb_cmd_trace(p->cmd, p->tag, &t);
        tb_log_debug(1, "C: %s", tb_buf_cstr(&t));
        tb_buf_free(&t);
    }
    if (c->n_inflight == c->cap_inflight) {
        c->cap_inflight = c->cap_inflight ? c->cap_inflight * 2 : 64;
        c->inflight = tb_xrealloc(c->inflight, c->cap_inflight * sizeof(*c->inflight));
    }
    c->inflight[c->n_inflight++] = p;
    if (p->n_chunks > 1)
        c->blocked = p;
    if (p->flags & TB_CMD_BARRIER)
        c->barrier = p;
    if (p->n_chunks == 1)
        sent_whole(p);
}

/* max-messages-per-second: an APPEND waits for a token of the link's message bucket; the
 * link then calls link_message_ready, which pumps again. Commands queued behind it wait
 * with it: the pipeline sends in submission order. */
static bool message_allowed(struct tb_imap *c, const struct pending *p)
{
    return !c->acct->max_messages_per_second || strcmp(tb_cmd_verb(p->cmd), "APPEND") != 0 ||
           tb_link_take_message(c->link);
}

static void logout_written(struct tb_imap *c);
static void logout_done(struct tb_imap *c, const struct tb_imap_result *r, void *ud);

/* Bytes the link may hold unwritten before pump sends no further command. Where the socket
 * takes bytes from where they are, holding back changes nothing; under COMPRESS, TLS or a
 * byte rate every command written is also a copy (deflate output, TLS records, paced
 * bytes), which without this bound grows with the copy window whenever the link is slower
 * than the source (heaptrack, compress = yes first sync at 50 ms, one run each: heap peak
 * 17.9 MB without it, 15.7 MB with it). 1 MiB on top of what the kernel buffers keeps any
 * link busy. */
#define WRITE_AHEAD ((size_t)1 << 20)

/* Sends everything the protocol allows now, gathered into one write. */
static void pump(struct tb_imap *c)
{
    if (c->pumping || !c->link || c->phase == PH_FAILED)
        return;
    c->pumping = true;
    while (c->waiting_head < c->n_waiting && !c->blocked && !c->barrier &&
           c->n_inflight < (size_t)c->max_inflight) {
        struct pending *p = c->waiting[c->waiting_head];
        if ((p->flags & (TB_CMD_BARRIER | TB_CMD_FENCE)) && c->n_inflight > 0)
            break;
        if (tb_link_write_pending(c->link) >= WRITE_AHEAD) {
            tb_link_notify_drained(c->link, WRITE_AHEAD / 2);
            break;
        }
        if (!message_allowed(c, p)) /* last: it takes the token */
            break;
        c->waiting_head++;
        send_one(c, p);
    }
    if (c->waiting_head == c->n_waiting)
        c->waiting_head = c->n_waiting = 0;
    flush_out(c);
    c->pumping = false;
    logout_written(c);
    arm_idle(c);
}

void tb_imap_add_handler(struct tb_imap *c, tb_imap_untagged_fn *fn, void *ud)
{
    c->handlers = tb_xrealloc(c->handlers, (c->n_handlers + 1) * sizeof(*c->handlers));
    c->handlers[c->n_handlers].fn = fn;
    c->handlers[c->n_handlers].ud = ud;
    c->n_handlers++;
}

struct logout_ctx {
    tb_imap_done_fn *done;
    void *ud;
};

static void logout_done(struct tb_imap *c, const struct tb_imap_result *r, void *ud)
{
    struct logout_ctx *lc = ud;
    /* The server closes after its tagged OK: that EOF is expected, not an error. */
    if (c->phase != PH_FAILED)
        c->phase = PH_FAILED;
    if (c->idle_init)
        uv_timer_stop(&c->idle);
    detach_link(c);
    if (lc->done)
        lc->done(c, r, lc->ud);
    free(lc);
}

void tb_imap_logout(struct tb_imap *c, tb_imap_done_fn *done, void *ud)
{
    struct logout_ctx *lc = tb_xcalloc(1, sizeof(*lc));
    lc->done = done;
    lc->ud = ud;
    tb_imap_submit(c, tb_cmd_new("LOGOUT"), TB_CMD_BARRIER, logout_done, NULL, lc);
}

/* LOGOUT is a barrier sent when nothing else is in flight: every earlier command has its
 * answer, and the server ends the session on LOGOUT or on the close alike. So it completes
 * once written, and the link closes when its bytes have left: a run does not wait a round
 * trip for a "BYE" nobody reads. */
static void logout_written(struct tb_imap *c)
{
    struct pending *p = c->barrier;
    if (!p || p->done != logout_done || c->n_inflight != 1 || c->inflight[0] != p)
        return;
    c->n_inflight = 0;
    c->barrier = NULL;
    c->logout_written = true;
    struct tb_imap_result ok = {.status = TB_IMAP_OK, .text = "LOGOUT written"};
    p->done(c, &ok, p->ud);
    tb_cmd_free(p->cmd);
    free(p);
}

static void on_handle_closed(uv_handle_t *h)
{
    struct tb_imap *c = h->data;
    if (--c->open_handles == 0)
        free(c);
}

void tb_imap_free(struct tb_imap *c)
{
    if (!c)
        return;
    if (c->phase != PH_FAILED) {
        c->phase = PH_FAILED;
        abort_all(c, "connection closed");
    }
    detach_link(c);
    tb_framer_free(&c->framer);
    tb_buf_free(&c->caps);
    tb_buf_free(&c->enabled);
    tb_buf_free(&c->out);
    free(c->waiting);
    free(c->inflight);
    free(c->handlers);
    free(c->greeting);
    free(c->ns_prefix);
    free(c->ns_others);
    free(c->sasl_challenge);
    tb_secret_free(&c->password);
    /* Both handles live inside c: it is freed when libuv has closed the last one. */
    uv_timer_stop(&c->idle);
    uv_prepare_stop(&c->flush);
    uv_close((uv_handle_t *)&c->idle, on_handle_closed);
    uv_close((uv_handle_t *)&c->flush, on_handle_closed);
}
