/* What link.c and link_connect.c share: the link's fields and the helpers both call.
 * Nothing outside src/transport includes this. */
#ifndef TWINBOX_TRANSPORT_LINK_INTERNAL_H
#define TWINBOX_TRANSPORT_LINK_INTERNAL_H

#include "transport/link.h"
#include "transport/ratelimit.h"
#include "twinbox/error.h"
#include "util/buf.h"

#include <stdbool.h>
#include <uv.h>

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
    struct addrinfo *ai_list, *ai_cur; /* ai_list: getaddrinfo's or uv_getaddrinfo's */
    bool gai_pending;
    uint64_t connect_timeout_ms;
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

/* Reports a failure once through on_error (none after close was requested). */
void tb_link_fail(struct tb_link *l, enum tb_err_kind kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Frees the link once it is closing and nothing of it is open or pending. */
void tb_link_maybe_free(struct tb_link *l);
void tb_link_close_handle(struct tb_link *l, uv_handle_t *h);
void tb_link_start_reading(struct tb_link *l);
void tb_link_on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
/* l->timer's callback: the connect timeout, then close-time escalation. */
void tb_link_on_timeout(uv_timer_t *t);

#endif
