/* Throughput limits of one connection: token buckets and the byte queue in front of one.
 *
 * What is counted: the IMAP bytes the client writes, BEFORE COMPRESS and TLS. That is what
 * an administrator means by "N bytes per second of mail", it does not depend on how well
 * the mail compresses, and it keeps the filter stack untouched: bytes held back here pass
 * through whatever filters are in place when they are released, so a STARTTLS or COMPRESS
 * started meanwhile applies to them as it must. TLS and deflate framing (a few percent;
 * less than the mail itself with COMPRESS) and TLS handshake records are not counted.
 *
 * A bucket holds at most `burst` tokens and gains `rate` per second; it starts full, so in
 * any interval of t seconds at most burst + rate * t tokens are taken. Arithmetic is exact
 * integer arithmetic in nano-tokens (tokens * 1e9), so a long run does not drift.
 *
 * Everything here is pure: the caller passes the time (nanoseconds from any monotonic
 * clock) and arms its own timer for the waits it is told. link.c does that on libuv. */
#ifndef TWINBOX_TRANSPORT_RATELIMIT_H
#define TWINBOX_TRANSPORT_RATELIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Largest rate and burst: keeps every nano-token quantity below 2^63. */
#define TB_RATE_MAX ((uint64_t)1 << 32)
/* The smallest default burst of a byte bucket: a command line and a small message. */
#define TB_RATE_MIN_BURST ((uint64_t)16 << 10)

struct tb_bucket {
    uint64_t rate;    /* tokens per second; 0 = unlimited (every take succeeds) */
    uint64_t burst;   /* capacity in tokens, >= 1 */
    uint64_t level;   /* nano-tokens held, <= burst * 1e9 */
    uint64_t last_ns; /* time of the last refill */
};

/* max(rate / 4, TB_RATE_MIN_BURST): a quarter of a second of traffic, at least 16 KiB. */
uint64_t tb_rate_default_burst(uint64_t rate);
/* A full bucket. rate 0 = unlimited; burst 0 = tb_rate_default_burst(rate). Both are
 * clamped to [1, TB_RATE_MAX]. */
void tb_bucket_init(struct tb_bucket *b, uint64_t rate, uint64_t burst, uint64_t now_ns);
static inline bool tb_bucket_limited(const struct tb_bucket *b)
{
    return b->rate != 0;
}
/* Adds what the time since the last refill earned, up to burst. A clock that went back
 * earns nothing. */
void tb_bucket_refill(struct tb_bucket *b, uint64_t now_ns);
/* Whole tokens held (after the caller's refill). */
uint64_t tb_bucket_tokens(const struct tb_bucket *b);
/* Refills, then takes up to `want` tokens; returns how many it took (want if unlimited). */
uint64_t tb_bucket_take(struct tb_bucket *b, uint64_t want, uint64_t now_ns);
/* Nanoseconds from the last refill until min(want, burst) whole tokens are held; 0 when
 * they already are (or unlimited). */
uint64_t tb_bucket_wait_ns(const struct tb_bucket *b, uint64_t want);

/* A FIFO of bytes waiting for tokens. It owns its copy of them; when it held a secret
 * (tb_pace_push with secret), every byte it drops or moves is wiped, and so is its
 * memory when it grows or is freed. */
struct tb_pace {
    struct tb_bucket bucket;
    char *data;
    size_t off, len, cap; /* waiting bytes are data[off .. len) */
    bool secret;          /* some waiting (or consumed, not yet wiped) byte is a secret */
};

void tb_pace_init(struct tb_pace *p, uint64_t rate, uint64_t burst, uint64_t now_ns);
void tb_pace_free(struct tb_pace *p);
static inline size_t tb_pace_waiting(const struct tb_pace *p)
{
    return p->len - p->off;
}
void tb_pace_push(struct tb_pace *p, const char *data, size_t n, bool secret);
/* The bytes that may leave now: at most what the bucket holds (taking it), in one span
 * data[*off .. *off + return) of p->data, valid until the next call. 0 when nothing may. */
size_t tb_pace_pull(struct tb_pace *p, uint64_t now_ns, size_t *off);
/* Marks the span of the last pull as written: it is wiped if secret, and dropped. */
void tb_pace_done(struct tb_pace *p, size_t n);
/* Nanoseconds from the bucket's last refill (or pull) until a pull can release a useful
 * amount: min(waiting, burst, 64 KiB) bytes, so a long queue leaves in chunks of up to
 * 64 KiB (a few timer wake-ups per second) instead of a byte at a time. 0 when empty. */
uint64_t tb_pace_wait_ns(const struct tb_pace *p);

#endif
