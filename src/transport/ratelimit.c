#include "transport/ratelimit.h"

#include "util/buf.h"

#include <stdlib.h>
#include <string.h>

#define NS_PER_S  1000000000ull
#define PACE_STEP ((size_t)64 << 10)

/* ---- token bucket ---- */

uint64_t tb_rate_default_burst(uint64_t rate)
{
    uint64_t quarter = rate / 4;
    return quarter > TB_RATE_MIN_BURST ? quarter : TB_RATE_MIN_BURST;
}

static uint64_t clamp(uint64_t v)
{
    return v < 1 ? 1 : v > TB_RATE_MAX ? TB_RATE_MAX : v;
}

void tb_bucket_init(struct tb_bucket *b, uint64_t rate, uint64_t burst, uint64_t now_ns)
{
    b->rate = rate ? clamp(rate) : 0;
    b->burst = clamp(burst ? burst : tb_rate_default_burst(b->rate));
    b->level = b->burst * NS_PER_S;
    b->last_ns = now_ns;
}

void tb_bucket_refill(struct tb_bucket *b, uint64_t now_ns)
{
    if (now_ns <= b->last_ns)
        return;
    uint64_t elapsed = now_ns - b->last_ns, full = b->burst * NS_PER_S;
    b->last_ns = now_ns;
    if (!b->rate || b->level >= full)
        return;
    /* Compared before multiplying: elapsed * rate overflows after a long idle time, and
     * then the bucket is full anyway. */
    uint64_t missing = full - b->level;
    if (elapsed > missing / b->rate)
        b->level = full;
    else
        b->level += elapsed * b->rate; /* <= missing: elapsed <= missing / rate */
}

uint64_t tb_bucket_tokens(const struct tb_bucket *b)
{
    return b->level / NS_PER_S;
}

uint64_t tb_bucket_take(struct tb_bucket *b, uint64_t want, uint64_t now_ns)
{
    if (!b->rate)
        return want;
    tb_bucket_refill(b, now_ns);
    uint64_t have = tb_bucket_tokens(b), n = want < have ? want : have;
    b->level -= n * NS_PER_S;
    return n;
}

uint64_t tb_bucket_wait_ns(const struct tb_bucket *b, uint64_t want)
{
    if (!b->rate)
        return 0;
    if (want > b->burst)
        want = b->burst; /* more never fits: the caller takes it in parts */
    uint64_t need = want * NS_PER_S;
    if (b->level >= need)
        return 0;
    return (need - b->level + b->rate - 1) / b->rate;
}

/* ---- byte queue ---- */

void tb_pace_init(struct tb_pace *p, uint64_t rate, uint64_t burst, uint64_t now_ns)
{
    tb_bucket_init(&p->bucket, rate, burst, now_ns);
}

static void wipe(struct tb_pace *p, char *at, size_t n)
{
    if (p->secret && n)
        explicit_bzero(at, n);
}

void tb_pace_free(struct tb_pace *p)
{
    wipe(p, p->data, p->cap);
    free(p->data);
    memset(p, 0, sizeof(*p));
}

/* Room for n more bytes: the waiting bytes move to the front (or to a larger block, the
 * old one wiped first when it held a secret, which realloc would not do). */
static void make_room(struct tb_pace *p, size_t n)
{
    size_t live = p->len - p->off;
    if (p->cap - p->len >= n)
        return;
    if (p->cap - live >= n && p->off >= live) {
        /* Moved to the front only when that frees at least as much as it copies (so each
         * byte is moved O(1) times); the stale bytes behind the new end are wiped. */
        memcpy(p->data, p->data + p->off, live);
        wipe(p, p->data + live, p->len - live);
    } else {
        size_t cap = p->cap ? p->cap : 4096;
        while (cap - live < n)
            cap *= 2;
        char *d = tb_xmalloc(cap);
        if (live)
            memcpy(d, p->data + p->off, live);
        wipe(p, p->data, p->cap);
        free(p->data);
        p->data = d;
        p->cap = cap;
    }
    p->off = 0;
    p->len = live;
}

void tb_pace_push(struct tb_pace *p, const char *data, size_t n, bool secret)
{
    if (n == 0)
        return;
    /* Marked before growing: the copy is made into memory that will be wiped. */
    p->secret |= secret;
    make_room(p, n);
    memcpy(p->data + p->len, data, n);
    p->len += n;
}

size_t tb_pace_pull(struct tb_pace *p, uint64_t now_ns, size_t *off)
{
    *off = p->off;
    return (size_t)tb_bucket_take(&p->bucket, tb_pace_waiting(p), now_ns);
}

void tb_pace_done(struct tb_pace *p, size_t n)
{
    wipe(p, p->data + p->off, n);
    p->off += n;
    if (p->off == p->len) {
        p->off = p->len = 0;
        p->secret = false; /* every byte it held has been wiped */
    }
}

uint64_t tb_pace_wait_ns(const struct tb_pace *p)
{
    size_t want = tb_pace_waiting(p);
    if (want == 0)
        return 0;
    if (want > PACE_STEP)
        want = PACE_STEP;
    return tb_bucket_wait_ns(&p->bucket, want);
}
