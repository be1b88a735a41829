/* Opening a link: TCP to each resolved address in turn, or a tunnel child whose stdin and
 * stdout carry the session (stderr kept for the error message). link.c does the rest. */
#include "transport/link.h"
#include "transport/link_internal.h"

#include "twinbox/log.h"
#include "util/buf.h"
#include "util/env.h"

#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

/* ---- TCP ---- */

static void try_next_address(struct tb_link *l);

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
        tb_link_close_handle(l, (uv_handle_t *)&l->tcp);
        tb_link_fail(l, TB_ERR_TEMP, "connect to %s port %d failed: %s", l->host, l->port,
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
    tb_link_start_reading(l);
    if (!l->failed && !l->closing)
        l->cb->on_connected(l, l->ud);
}

static void on_tcp_closed_retry(uv_handle_t *h)
{
    struct tb_link *l = h->data;
    l->handles--;
    if (l->closing) {
        tb_link_maybe_free(l);
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
        tb_link_maybe_free(l);
        return;
    }
    if (status < 0 || !res) {
        tb_link_fail(l, TB_ERR_TEMP, "cannot resolve %s: %s", l->host, uv_strerror(status));
        return;
    }
    l->ai_list = l->ai_cur = res;
    try_next_address(l);
}

/* The timer's first expiry for an address given as digits: connects on the next turn of
 * the loop, so that no callback runs inside tb_link_connect_tcp, then times the connect. */
static void on_numeric(uv_timer_t *t)
{
    struct tb_link *l = t->data;
    if (l->closing)
        return;
    uv_timer_start(&l->timer, tb_link_on_timeout, l->connect_timeout_ms, 0);
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
    /* An IP address needs no resolver: parsed here, it saves a thread pool start and the
     * resolver's own work, which made a second connection start ~5 ms after the first. */
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
    if (getaddrinfo(host, portstr, &hints, &l->ai_list) == 0 && l->ai_list) {
        l->ai_cur = l->ai_list;
        l->connect_timeout_ms = (uint64_t)timeout_s * 1000;
        uv_timer_start(&l->timer, on_numeric, 0, 0);
        return 0;
    }
    l->ai_list = NULL;
    hints.ai_flags = AI_ADDRCONFIG;
    l->gai.data = l;
    int r = uv_getaddrinfo(l->loop, &l->gai, on_resolved, host, portstr, &hints);
    if (r < 0) {
        tb_link_fail(l, TB_ERR_TEMP, "cannot resolve %s: %s", host, uv_strerror(r));
        return -1;
    }
    l->gai_pending = true;
    uv_timer_start(&l->timer, tb_link_on_timeout, (uint64_t)timeout_s * 1000, 0);
    return 0;
}

/* ---- tunnel ---- */

static void on_child_exit(uv_process_t *p, int64_t status, int sig)
{
    struct tb_link *l = p->data;
    l->proc_running = false;
    tb_link_close_handle(l, (uv_handle_t *)p);
    if (l->closing) {
        uv_timer_stop(&l->timer);
        tb_link_close_handle(l, (uv_handle_t *)&l->timer);
    }
    if (!l->closing) {
        if (sig)
            tb_link_fail(l, TB_ERR_TEMP, "tunnel killed by signal %d%s%s", sig,
                         l->err_tail[0] ? ": " : "", l->err_tail);
        else
            tb_link_fail(l, TB_ERR_TEMP, "tunnel exited with status %lld%s%s", (long long)status,
                         l->err_tail[0] ? ": " : "", l->err_tail);
    }
    tb_link_maybe_free(l);
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
        tb_link_fail(l, TB_ERR_CONFIG, "cannot start tunnel: %s", uv_strerror(r));
        return -1;
    }
    l->proc_running = true;
    l->rd = (uv_stream_t *)&l->out;
    l->wr = (uv_stream_t *)&l->in;
    l->loopback = true;
    uv_read_start((uv_stream_t *)&l->err, tb_link_on_alloc, on_err_read);
    tb_link_start_reading(l);
    if (!l->failed)
        l->cb->on_connected(l, l->ud);
    return 0;
}
