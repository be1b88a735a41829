/* A link is one connection's byte pipe: a TCP socket or a tunnel child's stdin/stdout,
 * with an optional stack of filters on top (TLS, then COMPRESS above it).
 *
 *   send:  app -> deflate? -> TLS? -> socket        recv: socket -> TLS? -> inflate? -> app
 *
 * Ownership: the link owns its libuv handles, filters and the tunnel child. tb_link_close()
 * is asynchronous; the link frees itself once every handle is closed and the child reaped,
 * and calls no callback after close was requested. Every failure is reported once through
 * on_error with a one-line cause; the owner then closes the link. */
#ifndef TWINBOX_TRANSPORT_LINK_H
#define TWINBOX_TRANSPORT_LINK_H

#include "transport/tls.h"

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

struct tb_link;
struct tb_error;

struct tb_link_cb {
    void (*on_connected)(struct tb_link *l, void *ud);
    void (*on_tls_ready)(struct tb_link *l, void *ud);
    void (*on_data)(struct tb_link *l, const char *p, size_t n, void *ud);
    /* e->kind says what failed: TB_ERR_TLS, TB_ERR_CONFIG (tunnel cannot start), TB_ERR_TEMP
     * (network), TB_ERR_PROTOCOL (undecodable TLS or compressed data). */
    void (*on_error)(struct tb_link *l, const struct tb_error *e, void *ud);
    /* Optional (may be NULL): a message token that tb_link_take_message refused is there. */
    void (*on_message_ready)(struct tb_link *l, void *ud);
    /* Optional: what tb_link_notify_drained asked for, once. */
    void (*on_drained)(struct tb_link *l, void *ud);
};

struct tb_link_stats {
    uint64_t raw_in, raw_out; /* bytes on the wire (after TLS and compression) */
    uint64_t app_in, app_out; /* IMAP bytes */
    uint64_t turns;           /* sends that follow received data: round trips */
};

struct tb_link *tb_link_new(uv_loop_t *loop, const struct tb_link_cb *cb, void *ud);
/* Resolves host with uv_getaddrinfo and tries each address; the timeout covers it all. */
int tb_link_connect_tcp(struct tb_link *l, const char *host, int port, int timeout_s);
/* Runs `/bin/sh -c command` and speaks over its stdin/stdout; stderr is kept for errors. */
int tb_link_spawn(struct tb_link *l, const char *command);
/* Starts TLS on the link (implicit TLS or after STARTTLS); on_tls_ready when verified. */
int tb_link_start_tls(struct tb_link *l, const struct tb_tls_opts *o);
int tb_link_start_compress(struct tb_link *l);
/* Pushes bytes that were read above the current filters before they were installed
 * (e.g. data after a COMPRESS OK in the same read) back through the filter stack. */
void tb_link_inject(struct tb_link *l, const char *p, size_t n);
void tb_link_write(struct tb_link *l, const char *p, size_t n);
struct tb_blob;
/* Writes the n bytes at p, inside blob b, as tb_link_write does; without a filter or a rate
 * they are written from where they are (the write holds a reference to b until done). */
void tb_link_write_blob(struct tb_link *l, struct tb_blob *b, const char *p, size_t n);
/* The same for bytes holding a secret: the copies this link makes are wiped once written. */
void tb_link_write_secret(struct tb_link *l, const char *p, size_t n);
/* Bytes accepted but not yet written (held by the rate limit or handed to libuv): the
 * writer's back-pressure signal. */
size_t tb_link_write_pending(const struct tb_link *l);
/* Calls cb->on_drained once, when tb_link_write_pending falls below `below` after a write
 * completes: the writer holds its next commands back meanwhile (what waits unwritten here
 * is a copy when a filter or a rate is in place). */
void tb_link_notify_drained(struct tb_link *l, size_t below);

/* Write limits; what is counted and why is in transport/ratelimit.h: the IMAP bytes the
 * owner writes, before COMPRESS and TLS. bytes_per_second 0 = unlimited (the default);
 * burst_bytes 0 = max(bytes_per_second / 4, 16 KiB). Bytes beyond the bucket are copied
 * into the link and released in order from a libuv timer: a write never blocks the loop,
 * never reorders, and the link wipes held copies of secrets. Held bytes pass through the
 * filters in place when they leave. Callable at any time; 0 releases what is held. */
void tb_link_set_rate(struct tb_link *l, uint64_t bytes_per_second, uint64_t burst_bytes);
/* Bytes held back by the byte rate, not yet handed to the socket. */
size_t tb_link_rate_held(const struct tb_link *l);
/* A second bucket for messages (what a message is, the owner decides: imap.c counts APPEND
 * commands). per_second 0 = unlimited (the default); burst 0 = max(per_second / 4, 1). */
void tb_link_set_message_rate(struct tb_link *l, uint64_t per_second, uint64_t burst);
/* Takes one message token: true = the message may be sent now. false = none is left, and
 * cb->on_message_ready will be called once when one is (the owner then asks again).
 * Always true without a message rate. */
bool tb_link_take_message(struct tb_link *l);
void tb_link_close(struct tb_link *l);
/* Closes once every byte written so far has been handed to the socket or pipe (at most 5 s
 * later), instead of dropping what is still queued: for a last command whose answer does
 * not matter (LOGOUT). No callback is called after this. */
void tb_link_close_when_written(struct tb_link *l);

bool tb_link_is_loopback(const struct tb_link *l);
bool tb_link_is_tunnel(const struct tb_link *l);
/* The kernel's smoothed round-trip time of a TCP connection to a peer that is not on this
 * host, in microseconds; -1 for a tunnel, a loopback peer (a port forward or relay, whose
 * far end the kernel cannot see) or when unknown. Unlike timing commands, it does not grow
 * with the server's load. */
int64_t tb_link_network_rtt_us(const struct tb_link *l);
/* Bytes this link moved so far: those received, and those written that left this host
 * (not counting what waits in our queue or, for TCP, in the kernel's send queue). */
uint64_t tb_link_moved(const struct tb_link *l);
bool tb_link_tls_active(const struct tb_link *l);
bool tb_link_compress_active(const struct tb_link *l);
const char *tb_link_tls_description(const struct tb_link *l);
const struct tb_link_stats *tb_link_stats(const struct tb_link *l);

#endif
