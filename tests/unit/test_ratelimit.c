/* Token bucket and byte queue arithmetic (transport/ratelimit.h), on a made-up clock. */
#include "tap.h"
#include "transport/ratelimit.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define S  1000000000ull
#define MS 1000000ull

static void test_defaults(void)
{
    CHECK(tb_rate_default_burst(200000) == 50000, "burst: a quarter of the rate");
    CHECK(tb_rate_default_burst(40000) == 16384, "burst: at least 16 KiB");
    CHECK(tb_rate_default_burst(0) == 16384, "burst of no rate: 16 KiB");
    struct tb_bucket b;
    tb_bucket_init(&b, 200000, 0, 5 * S);
    CHECK(b.burst == 50000 && tb_bucket_tokens(&b) == 50000, "starts full at the default burst");
    tb_bucket_init(&b, 0, 0, 0);
    CHECK(!tb_bucket_limited(&b) && tb_bucket_take(&b, 1u << 30, 0) == 1u << 30 &&
              tb_bucket_wait_ns(&b, 1u << 30) == 0,
          "rate 0: unlimited");
    tb_bucket_init(&b, UINT64_MAX, UINT64_MAX, 0);
    CHECK(b.rate == TB_RATE_MAX && b.burst == TB_RATE_MAX, "rate and burst clamped");
}

static void test_take_and_refill(void)
{
    struct tb_bucket b;
    tb_bucket_init(&b, 1000, 100, 0);
    CHECK(tb_bucket_take(&b, 150, 0) == 100, "takes at most the burst");
    CHECK(tb_bucket_take(&b, 1, 0) == 0, "then nothing at the same instant");
    CHECK(tb_bucket_wait_ns(&b, 10) == 10 * MS, "10 tokens at 1000/s: 10 ms");
    CHECK(tb_bucket_wait_ns(&b, 500) == 100 * MS, "a wait is for at most a full bucket");
    CHECK(tb_bucket_take(&b, 50, 10 * MS) == 10, "10 ms earn 10 tokens");
    CHECK(tb_bucket_take(&b, 500, 10 * S) == 100, "a long pause fills it, no more");
    tb_bucket_take(&b, 100, 20 * S);
    tb_bucket_refill(&b, 19 * S);
    CHECK(tb_bucket_tokens(&b) == 0, "a clock going back earns nothing");

    /* 3 tokens/s: a third of a second is 333,333,333.3 ns. */
    tb_bucket_init(&b, 3, 1, 0);
    tb_bucket_take(&b, 1, 0);
    tb_bucket_refill(&b, 333333333);
    CHECK(tb_bucket_tokens(&b) == 0, "333,333,333 ns at 3/s: not yet a token");
    CHECK(tb_bucket_wait_ns(&b, 1) == 1, "and the wait says 1 ns more");
    tb_bucket_refill(&b, 333333334);
    CHECK(tb_bucket_tokens(&b) == 1, "333,333,334 ns: one token");

    tb_bucket_init(&b, TB_RATE_MAX, TB_RATE_MAX, 0);
    tb_bucket_take(&b, TB_RATE_MAX, 0);
    tb_bucket_refill(&b, UINT64_MAX / 2);
    CHECK(tb_bucket_tokens(&b) == TB_RATE_MAX, "years at the largest rate: full, no overflow");
}

/* Taking everything every 333,333 ns (66.67 tokens each time) for 10 s at 200,000/s:
 * exactly burst + what the time earned, the fractions carried from one refill to the next
 * (no drift). */
static void test_no_drift(void)
{
    struct tb_bucket b;
    tb_bucket_init(&b, 200000, 0, 0);
    uint64_t total = 0, last = 0;
    for (uint64_t t = 0; t <= 10 * S; t += 333333)
        total += tb_bucket_take(&b, UINT64_MAX, last = t);
    CHECK(total == 50000 + last * 200000 / S, "10 s at 200,000/s: %llu", (unsigned long long)total);
}

static void test_pace_order_and_chunks(void)
{
    struct tb_pace p = {0};
    tb_pace_init(&p, 10000, 16384, 0);
    static char in[100000], out[100000];
    for (size_t i = 0; i < sizeof(in); i++)
        in[i] = (char)(i * 7 + i / 251);
    tb_pace_push(&p, in, 60000, false);
    tb_pace_push(&p, in + 60000, 40000, false);
    size_t got = 0, off, n;
    n = tb_pace_pull(&p, 0, &off);
    CHECK(n == 16384, "a full bucket leaves at once: %zu", n);
    memcpy(out + got, p.data + off, n);
    got += n;
    tb_pace_done(&p, n);
    CHECK(tb_pace_wait_ns(&p) == 16384ull * S / 10000, "then a wait for a bucket's worth");
    CHECK(tb_pace_pull(&p, 0, &off) == 0, "nothing more at the same instant");
    uint64_t t = 0;
    while (tb_pace_waiting(&p)) {
        t += tb_pace_wait_ns(&p);
        n = tb_pace_pull(&p, t, &off);
        memcpy(out + got, p.data + off, n);
        got += n;
        tb_pace_done(&p, n);
    }
    CHECK(got == sizeof(in) && memcmp(in, out, sizeof(in)) == 0, "every byte, in order");
    CHECK(t >= (100000 - 16384) * S / 10000 && t <= (100000 - 16384) * S / 10000 + 10,
          "at the rate: %llu ns", (unsigned long long)t);
    tb_pace_free(&p);
}

static void test_pace_secret(void)
{
    struct tb_pace p = {0};
    tb_pace_init(&p, 100, 100, 0);
    tb_pace_push(&p, "public ", 7, false);
    tb_pace_push(&p, "A001 LOGIN alice s3cret\r\n", 25, true);
    size_t off, n = tb_pace_pull(&p, 0, &off);
    CHECK(n == 32 && p.secret, "held and marked secret");
    char *at = p.data + off;
    tb_pace_done(&p, n);
    bool zero = true;
    for (size_t i = 0; i < 32; i++)
        zero &= at[i] == 0;
    CHECK(zero && !p.secret, "written bytes wiped, the queue no longer secret");
    tb_pace_free(&p);
}

/* Random writes at random times, held bytes leaving whenever the bucket allows: whatever
 * the pattern, no interval of W seconds sees more than burst + rate * W bytes. */
static void test_window_property(void)
{
    enum { N = 4000 };
    static uint64_t when[N];
    static size_t len[N];
    size_t k = 0;
    struct tb_pace p = {0};
    const uint64_t rate = 200000, burst = 50000;
    tb_pace_init(&p, rate, burst, 0);
    static char junk[70000];
    uint64_t t = 0, seed = 12345;
    for (int i = 0; i < 2000 && k < N; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        t += (seed >> 33) % (40 * MS);
        if ((seed >> 20) % 3 == 0)
            tb_pace_push(&p, junk, (seed >> 40) % sizeof(junk), false);
        size_t off, n = tb_pace_pull(&p, t, &off);
        tb_pace_done(&p, n);
        if (n) {
            when[k] = t;
            len[k++] = n;
        }
    }
    bool ok = true;
    for (size_t i = 0; i < k; i++) {
        for (uint64_t w = 1; w <= 4; w++) {
            uint64_t sum = 0;
            for (size_t j = i; j < k && when[j] - when[i] <= w * S / 4; j++)
                sum += len[j];
            ok &= sum <= burst + rate * w / 4;
        }
    }
    CHECK(ok && k > 100, "no window of 0.25..1 s beyond burst + rate * W (%zu releases)", k);
    tb_pace_free(&p);
}

int main(void)
{
    test_defaults();
    test_take_and_refill();
    test_no_drift();
    test_pace_order_and_chunks();
    test_pace_secret();
    test_window_property();
    return tap_done();
}
