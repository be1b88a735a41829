#include "transport/link.h"

#include "twinbox/error.h"

#include "transport/deflate.h"
#include "transport/ratelimit.h"
#include "twinbox/log.h"
#include "util/buf.h"
#include "util/env.h"

#include <netinet/in.h>
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

enum filter { F_NONE, F_TLS, F_DEFLATE };

struct tb_link {
    uv_loop_t *loop;
    const struct tb_link_cb *cb;
    void *ud;
    bool tunnel;
    uv_stream_t *rd, *wr; /* the socket twice, or the child's stdout / stdin */
    uv_timer_t timer;
    uv_tcp_t tcp;
    uv_getaddrinfo_t gai;
    uv_connect_t connect_req;
    struct addrinfo *ai_list, *ai_cur;
    bool gai_pending;
    uv_process_t proc;
    uv_pipe_t in, out, err;
    bool proc_running;
    int kill_stage;
    int handles; /* initialised handles not yet closed */
    bool closing, failed;
    bool close_when_written; /* tb_link_close_when_written: closes once write_pending is 0 */
    char host[256];
    int port;
    int last_errno;
    bool loopback;
    struct tb_tls *tls;
    struct tb_deflate *z;
    enum filter newest;
    bool received_since_send;
    bool writing_secret; /* set by tb_link_write_secret for the raw writes it makes */
    size_t write_pending;
    size_t drained_below; /* tb_link_notify_drained's mark; 0 = nobody waits */
    /* Write limits (tb_link_set_rate): application bytes wait in `pace` for tokens, and
     * rate_timer releases them; `msgs` is the message bucket, msg_owed a refusal whose
     * on_message_ready is still due. Zeroed = unlimited. */
    struct tb_pace pace;
    struct tb_bucket msgs;
    uv_timer_t rate_timer;
    bool msg_owed;
    struct tb_link_stats stats;
    char err_tail[256];
    struct tb_buf err_line;
};

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

static void fail(struct tb_link *l, enum tb_err_kind kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void fail(struct tb_link *l, enum tb_err_kind kind, const char *fmt, ...)
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

static void maybe_free(struct tb_link *l)
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
    maybe_free(l);
}

static void close_handle(struct tb_link *l, uv_handle_t *h)
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
        fail(l, TB_ERR_TEMP, "write failed: %s", uv_strerror(status));
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
        fail(l, TB_ERR_TEMP, "write failed: %s", uv_strerror(r));
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
        fail(l, TB_ERR_TEMP, "COMPRESS: deflate failed");
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
        fail(l, TB_ERR_PROTOCOL, "%s", err);
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

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
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
            fail(l, TB_ERR_TEMP, "tunnel closed the connection%s%s", l->err_tail[0] ? ": " : "",
                 l->err_tail);
        else if (n == UV_EOF)
            fail(l, TB_ERR_TEMP, "connection closed by server");
        else
            fail(l, TB_ERR_TEMP, "read failed: %s", uv_strerror((int)n));
        uv_read_stop(s);
    }
    free(buf->base);
}

static void start_reading(struct tb_link *l)
{
    int r = uv_read_start(l->rd, on_alloc, on_read);
    if (r < 0)
        fail(l, TB_ERR_TEMP, "read failed: %s", uv_strerror(r));
}

/* ---- TCP ---- */

static void try_next_address(struct tb_link *l);

static void on_timeout(uv_timer_t *t)
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
            uv_timer_start(&l->timer, on_timeout, 2000, 0);
        }
        return;
    }
    fail(l, TB_ERR_TEMP, "connect to %s port %d timed out", l->host, l->port);
}

static bool addr_is_loopback(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        return IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr);
    }
    return false;
}

static void on_tcp_closed_retry(uv_handle_t *h);

/* Moves on to the next resolved address after a failed attempt; the old handle must be
 * closed before its memory is initialised again. */
static void attempt_failed(struct tb_link *l, int status)
{
    l->last_errno = status;
    l->ai_cur = l->ai_cur->ai_next;
    if (!l->ai_cur) {
        close_handle(l, (uv_handle_t *)&l->tcp);
        fail(l, TB_ERR_TEMP, "connect to %s port %d failed: %s", l->host, l->port,
             uv_strerror(status));
        return;
    }
    uv_close((uv_handle_t *)&l->tcp, on_tcp_closed_retry);
}

static void on_connect(uv_connect_t *req, int status)
{
    struct tb_link *l = req->data;
    if (l->closing)
        return;
    if (status < 0) {
        attempt_failed(l, status);
        return;
    }
    uv_timer_stop(&l->timer);
    l->loopback = addr_is_loopback(l->ai_cur->ai_addr);
    l->rd = l->wr = (uv_stream_t *)&l->tcp;
    uv_tcp_nodelay(&l->tcp, 1);
    start_reading(l);
    if (!l->failed && !l->closing)
        l->cb->on_connected(l, l->ud);
}

static void on_tcp_closed_retry(uv_handle_t *h)
{
    struct tb_link *l = h->data;
    l->handles--;
    if (l->closing) {
        maybe_free(l);
        return;
    }
    try_next_address(l);
}

static void try_next_address(struct tb_link *l)
{
    uv_tcp_init(l->loop, &l->tcp);
    l->tcp.data = l;
    l->handles++;
    l->connect_req.data = l;
    int r = uv_tcp_connect(&l->connect_req, &l->tcp, l->ai_cur->ai_addr, on_connect);
    if (r < 0)
        attempt_failed(l, r);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct tb_link *l = req->data;
    l->gai_pending = false;
    if (l->closing) {
        if (res)
            uv_freeaddrinfo(res);
        maybe_free(l);
        return;
    }
    if (status < 0 || !res) {
        fail(l, TB_ERR_TEMP, "cannot resolve %s: %s", l->host, uv_strerror(status));
        return;
    }
    l->ai_list = l->ai_cur = res;
    try_next_address(l);
}

int tb_link_connect_tcp(struct tb_link *l, const char *host, int port, int timeout_s)
{
    snprintf(l->host, sizeof(l->host), "%s", host);
    l->port = port;
    char portstr[16];
    snprintf(portstr, sizeof(portstr), "%d", port);
    struct addrinfo hints = {0};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_ADDRCONFIG;
    l->gai.data = l;
    int r = uv_getaddrinfo(l->loop, &l->gai, on_resolved, host, portstr, &hints);
    if (r < 0) {
        fail(l, TB_ERR_TEMP, "cannot resolve %s: %s", host, uv_strerror(r));
        return -1;
    }
    l->gai_pending = true;
    uv_timer_start(&l->timer, on_timeout, (uint64_t)timeout_s * 1000, 0);
    return 0;
}

/* ---- tunnel ---- */

static void on_child_exit(uv_process_t *p, int64_t status, int sig)
{
    struct tb_link *l = p->data;
    l->proc_running = false;
    close_handle(l, (uv_handle_t *)p);
    if (l->closing) {
        uv_timer_stop(&l->timer);
        close_handle(l, (uv_handle_t *)&l->timer);
    }
    if (!l->closing) {
        if (sig)
            fail(l, TB_ERR_TEMP, "tunnel killed by signal %d%s%s", sig, l->err_tail[0] ? ": " : "",
                 l->err_tail);
        else
            fail(l, TB_ERR_TEMP, "tunnel exited with status %lld%s%s", (long long)status,
                 l->err_tail[0] ? ": " : "", l->err_tail);
    }
    maybe_free(l);
}

static void on_err_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct tb_link *l = s->data;
    for (ssize_t i = 0; i < n; i++) {
        char c = buf->base[i];
        if (c == '\n') {
            const char *line = tb_buf_cstr(&l->err_line);
            if (line[0]) {
                snprintf(l->err_tail, sizeof(l->err_tail), "%s", line);
                tb_log_debug(1, "tunnel stderr: %s", line);
            }
            l->err_line.len = 0;
        } else if (l->err_line.len < 1024) {
            tb_buf_append(&l->err_line, &c, 1);
        }
    }
    if (n < 0)
        uv_read_stop(s);
    free(buf->base);
}

int tb_link_spawn(struct tb_link *l, const char *command)
{
    l->tunnel = true;
    snprintf(l->host, sizeof(l->host), "tunnel");
    uv_pipe_init(l->loop, &l->in, 0);
    uv_pipe_init(l->loop, &l->out, 0);
    uv_pipe_init(l->loop, &l->err, 0);
    l->in.data = l->out.data = l->err.data = l;
    l->handles += 3;
    uv_stdio_container_t stdio[3];
    stdio[0].flags = UV_CREATE_PIPE | UV_READABLE_PIPE;
    stdio[0].data.stream = (uv_stream_t *)&l->in;
    stdio[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
    stdio[1].data.stream = (uv_stream_t *)&l->out;
    stdio[2].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
    stdio[2].data.stream = (uv_stream_t *)&l->err;
    char *args[] = {"/bin/sh", "-c", (char *)command, NULL};
    uv_process_options_t o = {0};
    o.file = "/bin/sh";
    o.args = args;
    o.exit_cb = on_child_exit;
    o.env = tb_env_child(); /* without the passwords read from the environment */
    o.stdio = stdio;
    o.stdio_count = 3;
    l->proc.data = l;
    int r = uv_spawn(l->loop, &l->proc, &o);
    free(o.env);
    l->handles++; /* uv_spawn initialises the handle even when it fails */
    if (r < 0) {
        fail(l, TB_ERR_CONFIG, "cannot start tunnel: %s", uv_strerror(r));
        return -1;
    }
    l->proc_running = true;
    l->rd = (uv_stream_t *)&l->out;
    l->wr = (uv_stream_t *)&l->in;
    l->loopback = true;
    uv_read_start((uv_stream_t *)&l->err, on_alloc, on_err_read);
    start_reading(l);
    if (!l->failed)
        l->cb->on_connected(l, l->ud);
    return 0;
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
        fail(l, TB_ERR_INTERNAL, "COMPRESS: cannot initialise zlib");
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
    close_handle(l, (uv_handle_t *)&l->rate_timer); /* held bytes are dropped */
    if (l->tunnel) {
        close_handle(l, (uv_handle_t *)&l->in); /* EOF on stdin: the imap process exits */
        close_handle(l, (uv_handle_t *)&l->out);
        close_handle(l, (uv_handle_t *)&l->err);
        if (l->proc_running)
            uv_timer_start(&l->timer, on_timeout, 2000, 0);
    }
    if (l->tcp.data == l)
        close_handle(l, (uv_handle_t *)&l->tcp);
    if (!l->proc_running)
        close_handle(l, (uv_handle_t *)&l->timer);
    maybe_free(l);
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
    uv_timer_start(&l->timer, on_timeout, 5000, 0);
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
