/* COMPRESS=DEFLATE's level follows the link (transport/deflate.c): switching levels inside
 * one stream must keep it one valid raw-deflate stream, and the thorough level must matter. */
#include "tap.h"
#include "transport/deflate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

static size_t inflate_all(const struct tb_buf *in, char *out, size_t cap)
{
    z_stream s = {0};
    inflateInit2(&s, -15);
    s.next_in = (Bytef *)in->data;
    s.avail_in = (uInt)in->len;
    s.next_out = (Bytef *)out;
    s.avail_out = (uInt)cap;
    inflate(&s, Z_SYNC_FLUSH);
    size_t n = cap - s.avail_out;
    inflateEnd(&s);
    return n;
}

int main(void)
{
    /* mail-like text: repetitive enough that the level shows */
    size_t n = 1 << 20;
    char *text = malloc(n), *back = malloc(4 * n);
    static const char *words[] = {"alpha ", "bravo ", "charlie ", "delta ", "echo\r\n", "fox "};
    unsigned seed = 7;
    for (size_t i = 0; i < n;) {
        seed = seed * 1103515245u + 12345u;
        const char *w = words[(seed >> 16) % 6];
        for (size_t j = 0; w[j] && i < n; j++)
            text[i++] = w[j];
    }
    struct tb_deflate *z = tb_deflate_new();
    struct tb_buf all, stored, fast, slow;
    tb_buf_init(&all);
    tb_buf_init(&stored);
    tb_buf_init(&fast);
    tb_buf_init(&slow);
    size_t q = n / 4;
    tb_deflate_adapt(z, 0); /* the link keeps up: still the fast level, never stored */
    CHECK(tb_deflate_send(z, text, q, &stored) == 0, "first quarter, queue empty");
    tb_deflate_adapt(z, (size_t)200 << 10); /* falling behind a little: no change */
    CHECK(tb_deflate_send(z, text + q, q, &fast) == 0, "second quarter at the fast level");
    tb_deflate_adapt(z, (size_t)1 << 20); /* the link is the bottleneck */
    CHECK(tb_deflate_send(z, text + 2 * q, q, &slow) == 0, "third quarter, thorough level");
    tb_buf_append(&all, stored.data, stored.len);
    tb_buf_append(&all, fast.data, fast.len);
    tb_buf_append(&all, slow.data, slow.len);
    tb_deflate_adapt(z, 0); /* drained: the fast level again */
    CHECK(tb_deflate_send(z, text + 3 * q, n - 3 * q, &all) == 0, "last quarter");
    tb_deflate_adapt(z, 0);
    CHECK(tb_deflate_send(z, "tail\r\n", 6, &all) == 0, "a send after switching back");
    size_t got = inflate_all(&all, back, 4 * n);
    CHECK(got == n + 6 && memcmp(back, text, n) == 0 && memcmp(back + n, "tail\r\n", 6) == 0,
          "one valid stream across every switch (%zu bytes out of %zu)", got, n + 6);
    CHECK(stored.len < q / 2, "an empty queue still compresses (%zu < %zu / 2)", stored.len, q);
    CHECK(fast.len < q / 2, "the fast level compresses (%zu < %zu / 2)", fast.len, q);
    CHECK(slow.len < fast.len, "the thorough level compresses the same amount smaller (%zu < %zu)",
          slow.len, fast.len);
    tb_deflate_free(z);
    tb_buf_free(&all);
    tb_buf_free(&stored);
    tb_buf_free(&fast);
    tb_buf_free(&slow);
    free(text);
    free(back);
    return tap_done();
}
