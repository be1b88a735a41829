#include "transport/link.h"
#include "transport/link_internal.h"

#include "twinbox/error.h"

#include "transport/deflate.h"
#include "transport/ratelimit.h"
#include "twinbox/log.h"
#include "util/buf.h"

#include <netinet/tcp.h>
#include <sys/ioctl.h>
#ifdef __linux__
#include <linux/sockios.h>
#endif
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One uv_write: its bytes are in a malloc'd buffer it owns (a filter's output, handed over)
 * or in a blob it holds a reference to (a message body, written from where it is). */
struct write_req {
    uv_write_t req;
    struct tb_link *link;
    char *p;
    size_t len;
    bool wipe; /* holds a secret in clear: wiped before it is freed */
    char *own; /* freed once written */
    struct tb_blob *blob;
};

static void report(struct tb_link *l, const struct tb_error *e)
{
    if (l->failed || l->closing)
        return;
    l->failed = true;
    if (l->close_when_written) {
        tb_link_close(l); /* nobody listens any more: the last bytes are lost, say so never */
        return;
    }
    l->cb->on_error(l, e, l->ud);
}

void tb_link_fail(struct tb_link *l, enum tb_err_kind kind, const char *fmt, ...)
{
    if (l->failed || l->closing)
        return;
    struct tb_error e = {.kind = kind};
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e.msg, sizeof(e.msg), fmt, ap);
    va_end(ap);
    report(l, &e);
}

void tb_link_maybe_free(struct tb_link *l)
{
    if (!l->closing || l->handles > 0 || l->proc_running || l->gai_pending)
        return;
    if (l->ai_list)
        uv_freeaddrinfo(l->ai_list);
    tb_tls_free(l->tls);
    tb_deflate_free(l->z);
    tb_pace_free(&l->pace);
    tb_buf_free(&l->err_line);
    free(l);
}

static void on_handle_closed(uv_handle_t *h)
{
    struct tb_link *l = h->data;
    l->handles--;
    tb_link_maybe_free(l);
}

void tb_link_close_handle(struct tb_link *l, uv_handle_t *h)
{
    if (h->data == l && !uv_is_closing(h))
        uv_close(h, on_handle_closed);
}

struct tb_link *tb_link_new(uv_loop_t *loop, const struct tb_link_cb *cb, void *ud)
{
    struct tb_link *l = tb_xcalloc(1, sizeof(*l));
    l->loop = loop;
    l->cb = cb;
    l->ud = ud;
    tb_buf_init(&l->err_line);
    uv_timer_init(loop, &l->timer);
    l->timer.data = l;
    uv_timer_init(loop, &l->rate_timer);
    l->rate_timer.data = l;
    l->handles = 2;
    return l;
}

/* ---- writing ---- */

static void on_written(uv_write_t *req, int status)
{
    struct write_req *w = (struct write_req *)req;
    struct tb_link *l = w->link;
    l->write_pending -= w->len;
    if (w->wipe)
        explicit_bzero(w->p, w->len);
    free(w->own);
    tb_blob_unref(w->blob);
    free(w);
    if (status < 0 && status != UV_ECANCELED)
        tb_link_fail(l, TB_ERR_TEMP, "write failed: %s", uv_strerror(status));
    else if (l->close_when_written && tb_link_write_pending(l) == 0)
        tb_link_close(l);
    else if (l->drained_below && tb_link_write_pending(l) < l->drained_below && !l->failed &&
             !l->closing) {
        l->drained_below = 0;
        if (l->cb->on_drained)
            l->cb->on_drained(l, l->ud);
    }
}

/* Hands w (its bytes set) to the stream. */
static void submit(struct tb_link *l, struct write_req *w)
{
    if (l->received_since_send) {
        l->stats.turns++;
        l->received_since_send = false;
    }
    w->link = l;
    w->wipe = l->writing_secret;
    uv_buf_t b = uv_buf_init(w->p, (unsigned)w->len);
    l->stats.raw_out += w->len;
    l->write_pending += w->len;
    int r = uv_write(&w->req, l->wr, &b, 1, on_written);
    if (r < 0) {
        l->write_pending -= w->len;
        if (w->wipe)
            explicit_bzero(w->p, w->len);
        free(w->own);
        tb_blob_unref(w->blob);
        free(w);
        tb_link_fail(l, TB_ERR_TEMP, "write failed: %s", uv_strerror(r));
    }
}

/* A filter's output buffer written as it is: the request takes it over (freed once written,
 * or now when nothing is written). Trimmed first when mostly empty: deflate reserves 16 KiB
 * steps and a message compresses to a few KiB, and hundreds of these can wait for their
 * write callbacks at once (12 MB for 1.6 MB of output, measured). Never a secret's buffer:
 * a realloc could leave a copy behind unwiped. */
static void raw_write_buf(struct tb_link *l, struct tb_buf *c)
{
    if (c->len == 0 || l->failed || l->closing) {
        if (l->writing_secret && c->data)
            explicit_bzero(c->data, c->cap);
        tb_buf_free(c);
        return;
    }
    if (!l->writing_secret && c->cap - c->len > c->len / 4 + 1024) {
        c->data = tb_xrealloc(c->data, c->len + 1);
        c->cap = c->len + 1;
    }
    struct write_req *w = tb_xcalloc(1, sizeof(*w));
    w->p = w->own = c->data;
    w->len = c->len;
    tb_buf_init(c);
    submit(l, w);
}

static void raw_write(struct tb_link *l, const char *p, size_t n)
{
    struct tb_buf c;
    tb_buf_init(&c);
    tb_buf_append(&c, p, n);
    raw_write_buf(l, &c);
}

static void write_tls(struct tb_link *l, const char *p, size_t n)
{
    if (!l->tls) {
        raw_write(l, p, n);
        return;
    }
    struct tb_buf c;
    struct tb_error err = {0};
    tb_buf_init(&c);
    if (tb_tls_send(l->tls, p, n, &c, &err) < 0)
        report(l, &err);
    raw_write_buf(l, &c);
}

void tb_link_write_secret(struct tb_link *l, const char *p, size_t n)
{
    l->writing_secret = true;
    tb_link_write(l, p, n);
    l->writing_secret = false;
}

/* Application bytes down through the filters in place now (deflate, then TLS). */
static void write_filtered(struct tb_link *l, const char *p, size_t n)
{
    if (n == 0 || l->failed || l->closing)
        return;
    if (!l->z) {
        write_tls(l, p, n);
        return;
    }
    struct tb_buf c;
    tb_buf_init(&c);
    tb_deflate_adapt(l->z, l->write_pending);
    if (tb_deflate_send(l->z, p, n, &c) < 0) {
        tb_link_fail(l, TB_ERR_TEMP, "COMPRESS: deflate failed");
    } else if (l->tls) {
        write_tls(l, c.data, c.len);
    } else {
        raw_write_buf(l, &c); /* the compressed bytes are not copied again */
        return;
    }
    tb_buf_free(&c);
}

/* ---- write limits ---- */

static void on_rate_timer(uv_timer_t *t);

/* Arms the rate timer for the earliest useful moment: enough tokens for the next part of
 * the held bytes, or for the message owed to the owner. Each wait is at least 1 ms, so a
 * timer that fires a little early (libuv's loop time lags the clock) never spins. */
static void rate_schedule(struct tb_link *l)
{
    if (l->closing)
        return;
    uint64_t now = uv_hrtime(), wait = UINT64_MAX;
    if (tb_pace_waiting(&l->pace)) {
        tb_bucket_refill(&l->pace.bucket, now);
        wait = tb_pace_wait_ns(&l->pace);
    }
    if (l->msg_owed) {
        tb_bucket_refill(&l->msgs, now);
        uint64_t w = tb_bucket_wait_ns(&l->msgs, 1);
        wait = w < wait ? w : wait;
    }
    if (wait == UINT64_MAX) {
        uv_timer_stop(&l->rate_timer);
        return;
    }
    uint64_t ms = (wait + 999999) / 1000000;
    uv_timer_start(&l->rate_timer, on_rate_timer, ms ? ms : 1, 0);
}

/* Writes the held bytes the bucket allows now, in order. */
static void release_held(struct tb_link *l)
{
    size_t off, n = tb_pace_pull(&l->pace, uv_hrtime(), &off);
    if (n == 0)
        return;
    bool was = l->writing_secret;
    l->writing_secret = was || l->pace.secret;
    write_filtered(l, l->pace.data + off, n);
    l->writing_secret = was;
    tb_pace_done(&l->pace, n);
}

static void on_rate_timer(uv_timer_t *t)
{
    struct tb_link *l = t->data;
    if (l->failed || l->closing)
        return;
    release_held(l);
    if (l->msg_owed && !l->failed && tb_bucket_wait_ns(&l->msgs, 1) == 0) {
        l->msg_owed = false;
        if (l->cb->on_message_ready)
            l->cb->on_message_ready(l, l->ud); /* asks again: tb_link_take_message */
    }
    if (!l->failed)
        rate_schedule(l);
}

/* With a byte rate: bytes go straight down while nothing is held and the bucket has
 * tokens (no copy); the rest is held, behind anything held before it. */
static void paced_write(struct tb_link *l, const char *p, size_t n)
{
    if (tb_pace_waiting(&l->pace) == 0) {
        size_t now = (size_t)tb_bucket_take(&l->pace.bucket, n, uv_hrtime());
        write_filtered(l, p, now);
        p += now;
        n -= now;
    }
    if (n == 0 || l->failed || l->closing)
        return;
    tb_pace_push(&l->pace, p, n, l->writing_secret);
    rate_schedule(l);
}

void tb_link_write(struct tb_link *l, const char *p, size_t n)
{
    if (l->failed || l->closing)
        return;
    l->stats.app_out += n;
    if (tb_bucket_limited(&l->pace.bucket))
        paced_write(l, p, n);
    else
        write_filtered(l, p, n);
}

void tb_link_write_blob(struct tb_link *l, struct tb_blob *b, const char *p, size_t n)
{
    if (tb_bucket_limited(&l->pace.bucket) || l->z || l->tls || l->writing_secret || l->failed ||
        l->closing || n == 0) {
        tb_link_write(l, p, n); /* paced (held bytes copied) or filtered (their output sent) */
        return;
    }
    l->stats.app_out += n;
    struct write_req *w = tb_xcalloc(1, sizeof(*w));
    w->blob = tb_blob_ref(b);
    w->p = (char *)p;
    w->len = n;
    submit(l, w);
}

void tb_link_set_rate(struct tb_link *l, uint64_t bytes_per_second, uint64_t burst_bytes)
{
    tb_bucket_init(&l->pace.bucket, bytes_per_second, burst_bytes, uv_hrtime());
    if (l->failed || l->closing)
        return;
    release_held(l); /* unlimited now: everything; else what the new bucket allows */
    rate_schedule(l);
}

size_t tb_link_rate_held(const struct tb_link *l)
{
    return tb_pace_waiting(&l->pace);
}

void tb_link_set_message_rate(struct tb_link *l, uint64_t per_second, uint64_t burst)
{
    if (!burst)
        burst = per_second / 4 ? per_second / 4 : 1;
    tb_bucket_init(&l->msgs, per_second, burst, uv_hrtime());
}

bool tb_link_take_message(struct tb_link *l)
{
    if (tb_bucket_take(&l->msgs, 1, uv_hrtime()) == 1) {
        l->msg_owed = false;
        return true;
    }
    l->msg_owed = true;
    rate_schedule(l);
    return false;
}

size_t tb_link_write_pending(const struct tb_link *l)
{
    return l->write_pending + tb_pace_waiting(&l->pace);
}

void tb_link_notify_drained(struct tb_link *l, size_t below)
{
    l->drained_below = below;
}

/* ---- reading: each stage hands its output to the next one up ---- */

static void deliver(struct tb_link *l, const char *p, size_t n)
{
    if (n == 0 || l->failed || l->closing)
        return;
    l->stats.app_in += n;
    l->cb->on_data(l, p, n, l->ud);
}

static void up_from_tls(struct tb_link *l, const char *p, size_t n)
{
    if (!l->z) {
        deliver(l, p, n);
        return;
    }
    struct tb_buf plain;
    char err[256];
    tb_buf_init(&plain);
    if (tb_deflate_recv(l->z, p, n, &plain, err, sizeof(err)) < 0)
        tb_link_fail(l, TB_ERR_PROTOCOL, "%s", err);
    else
        deliver(l, plain.data, plain.len);
    tb_buf_free(&plain);
}

static void up_from_socket(struct tb_link *l, const char *p, size_t n)
{
    if (!l->tls) {
        up_from_tls(l, p, n);
        return;
    }
    struct tb_buf plain, c;
    struct tb_error err = {0};
    tb_buf_init(&plain);
    tb_buf_init(&c);
    bool was_ready = tb_tls_ready(l->tls);
    int r = tb_tls_recv(l->tls, p, n, &plain, &c, &err);
    raw_write(l, c.data, c.len);
    if (r < 0) {
        report(l, &err);
    } else {
        if (!was_ready && tb_tls_ready(l->tls) && !l->failed && !l->closing)
            l->cb->on_tls_ready(l, l->ud);
        up_from_tls(l, plain.data, plain.len);
    }
    tb_buf_free(&plain);
    tb_buf_free(&c);
}

void tb_link_inject(struct tb_link *l, const char *p, size_t n)
{
    if (n == 0)
        return;
    if (l->newest == F_TLS)
        up_from_socket(l, p, n);
    else
        up_from_tls(l, p, n);
}

void tb_link_on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    (void)suggested;
    buf->base = tb_xmalloc(65536);
    buf->len = 65536;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct tb_link *l = s->data;
    if (n > 0 && !l->closing) {
        l->stats.raw_in += (uint64_t)n;
        l->received_since_send = true;
        up_from_socket(l, buf->base, (size_t)n);
    } else if (n < 0 && !l->closing) {
        if (n == UV_EOF && l->tunnel)
            tb_link_fail(l, TB_ERR_TEMP, "tunnel closed the connection%s%s",
                         l->err_tail[0] ? ": " : "", l->err_tail);
        else if (n == UV_EOF)
            tb_link_fail(l, TB_ERR_TEMP, "connection closed by server");
        else
            tb_link_fail(l, TB_ERR_TEMP, "read failed: %s", uv_strerror((int)n));
        uv_read_stop(s);
    }
    free(buf->base);
}

void tb_link_start_reading(struct tb_link *l)
{
    int r = uv_read_start(l->rd, tb_link_on_alloc, on_read);
    if (r < 0)
        tb_link_fail(l, TB_ERR_TEMP, "read failed: %s", uv_strerror(r));
}

/* ---- timer: connect timeout, close-time escalation ---- */

void tb_link_on_timeout(uv_timer_t *t)
{
    struct tb_link *l = t->data;
    if (l->close_when_written && !l->closing) {
        tb_link_close(l); /* the peer did not take the last bytes in time */
        return;
    }
    if (l->closing) {
        /* Close-time escalation for a tunnel child that ignores EOF on stdin. */
        if (l->proc_running) {
            uv_process_kill(&l->proc, l->kill_stage++ ? SIGKILL : SIGTERM);
            uv_timer_start(&l->timer, tb_link_on_timeout, 2000, 0);
        }
        return;
    }
    tb_link_fail(l, TB_ERR_TEMP, "connect to %s port %d timed out", l->host, l->port);
}

/* ---- filters ---- */

int tb_link_start_tls(struct tb_link *l, const struct tb_tls_opts *o)
{
    struct tb_error err = {0};
    l->tls = tb_tls_new(o, &err);
    if (!l->tls) {
        report(l, &err);
        return -1;
    }
    l->newest = F_TLS;
    struct tb_buf c;
    tb_buf_init(&c);
    int r = tb_tls_start(l->tls, &c, &err);
    raw_write(l, c.data, c.len);
    tb_buf_free(&c);
    if (r < 0) {
        report(l, &err);
        return -1;
    }
    return 0;
}

int tb_link_start_compress(struct tb_link *l)
{
    l->z = tb_deflate_new();
    if (!l->z) {
        tb_link_fail(l, TB_ERR_INTERNAL, "COMPRESS: cannot initialise zlib");
        return -1;
    }
    l->newest = F_DEFLATE;
    return 0;
}

void tb_link_close(struct tb_link *l)
{
    if (!l || l->closing)
        return;
    l->closing = true;
    if (l->gai_pending)
        uv_cancel((uv_req_t *)&l->gai);
    uv_timer_stop(&l->timer);
    tb_link_close_handle(l, (uv_handle_t *)&l->rate_timer); /* held bytes are dropped */
    if (l->tunnel) {
        tb_link_close_handle(l, (uv_handle_t *)&l->in); /* EOF on stdin: the imap process exits */
        tb_link_close_handle(l, (uv_handle_t *)&l->out);
        tb_link_close_handle(l, (uv_handle_t *)&l->err);
        if (l->proc_running)
            uv_timer_start(&l->timer, tb_link_on_timeout, 2000, 0);
    }
    if (l->tcp.data == l)
        tb_link_close_handle(l, (uv_handle_t *)&l->tcp);
    if (!l->proc_running)
        tb_link_close_handle(l, (uv_handle_t *)&l->timer);
    tb_link_maybe_free(l);
}

static void mute_link(struct tb_link *l, void *ud)
{
    (void)l;
    (void)ud;
}

static void mute_data(struct tb_link *l, const char *p, size_t n, void *ud)
{
    (void)l;
    (void)p;
    (void)n;
    (void)ud;
}

static void mute_error(struct tb_link *l, const struct tb_error *e, void *ud)
{
    (void)l;
    (void)e;
    (void)ud;
}

void tb_link_close_when_written(struct tb_link *l)
{
    /* The owner may be gone before the bytes leave: from here on nothing calls it. */
    static const struct tb_link_cb mute = {mute_link,  mute_link, mute_data,
                                           mute_error, mute_link, mute_link};
    if (!l || l->closing)
        return;
    l->cb = &mute;
    l->ud = NULL;
    if (l->failed || tb_link_write_pending(l) == 0) {
        tb_link_close(l);
        return;
    }
    l->close_when_written = true;
    uv_timer_stop(&l->timer);
    uv_timer_start(&l->timer, tb_link_on_timeout, 5000, 0);
}

bool tb_link_is_loopback(const struct tb_link *l)
{
    return l->loopback;
}

int64_t tb_link_network_rtt_us(const struct tb_link *l)
{
    if (l->tunnel || l->loopback || l->tcp.data != l)
        return -1;
    uv_os_fd_t fd;
    struct tcp_info ti;
    socklen_t len = sizeof(ti);
    if (uv_fileno((const uv_handle_t *)&l->tcp, &fd) != 0 ||
        getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0 || len < sizeof(ti))
        return -1;
    return ti.tcpi_rtt;
}

uint64_t tb_link_moved(const struct tb_link *l)
{
    uint64_t out = l->stats.raw_out - l->write_pending;
#ifdef SIOCOUTQ
    int unsent = 0;
    uv_os_fd_t fd;
    if (!l->tunnel && l->tcp.data == l && uv_fileno((const uv_handle_t *)&l->tcp, &fd) == 0 &&
        ioctl(fd, SIOCOUTQ, &unsent) == 0 && unsent > 0 && (uint64_t)unsent <= out)
        out -= (uint64_t)unsent;
#endif
    return l->stats.raw_in + out;
}

bool tb_link_is_tunnel(const struct tb_link *l)
{
    return l->tunnel;
}

bool tb_link_tls_active(const struct tb_link *l)
{
    return l->tls && tb_tls_ready(l->tls);
}

bool tb_link_compress_active(const struct tb_link *l)
{
    return l->z != NULL;
}

const char *tb_link_tls_description(const struct tb_link *l)
{
    return l->tls ? tb_tls_description(l->tls) : "";
}

const struct tb_link_stats *tb_link_stats(const struct tb_link *l)
{
    return &l->stats;
}
