/* UID sets (util/uidset.h): strict parsing, bounds, ranges kept as ranges, and commands split
 * to fit a line budget. */
#include "util/uidset.h"

#include "tap.h"

#include <stdlib.h>
#include <string.h>

static int parse(struct tb_uidset *s, const char *text, uint32_t max)
{
    char err[80];
    return tb_uidset_parse(s, text, strlen(text), max, err, sizeof(err));
}

int main(void)
{
    struct tb_uidset s;
    tb_uidset_init(&s);
    CHECK(parse(&s, "1:5,9,7:6", 0) == 0, "a set with a reversed range parses");
    CHECK(tb_uidset_count(&s) == 8 && s.n == 2, "ranges merge: 1:7,9 (8 UIDs, 2 ranges)");
    CHECK(tb_uidset_has(&s, 7) && !tb_uidset_has(&s, 8) && tb_uidset_has(&s, 9), "membership");
    tb_uidset_clear(&s);

    CHECK(parse(&s, "1:4294967295", 0) == 0 && s.n == 1 && tb_uidset_count(&s) == 4294967295ull,
          "the largest set is one range, not four billion UIDs");
    tb_uidset_clear(&s);

    const char *bad[] = {
        "",   "0",          "1,",           ",1",  "1::2", "*",    "1:*",
        "01", "4294967296", "1:4294967297", "1 2", "-1",   "1,,2", "99999999999999999999"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++)
        CHECK(parse(&s, bad[i], 0) < 0 && s.n == 0, "refused: '%s'", bad[i]);

    CHECK(parse(&s, "3", 0) == 0 && parse(&s, "5:6,x", 0) < 0 && s.n == 1,
          "a failed parse leaves what was there");
    CHECK(parse(&s, "4,x", 0) < 0 && tb_uidset_count(&s) == 1 && !tb_uidset_has(&s, 4),
          "a failed parse does not extend a range either");
    CHECK(parse(&s, "5:4000000", 100) < 0, "a UID beyond the bound is refused");
    CHECK(parse(&s, "5:100", 100) == 0, "up to the bound is fine");
    tb_uidset_free(&s);

    /* 3,000 scattered 10-digit UIDs: every other one. */
    tb_uidset_init(&s);
    for (uint32_t i = 0; i < 3000; i++)
        tb_uidset_add(&s, 4000000000u + 2 * i);
    size_t pieces = 0, longest = 0;
    uint64_t total = 0;
    struct tb_buf b;
    tb_buf_init(&b);
    for (size_t pos = 0; pos < s.n && pieces < 1000;) {
        b.len = 0;
        total += tb_uidset_render(&s, &pos, &b, 7900);
        if (b.len > longest)
            longest = b.len;
        pieces++;
    }
    CHECK(total == 3000, "every UID rendered once (%llu)", (unsigned long long)total);
    CHECK(longest <= 7900 && pieces == 5, "split into %zu pieces of at most 7900 bytes (%zu)",
          pieces, longest);
    struct tb_uidset back;
    tb_uidset_init(&back);
    b.len = 0;
    size_t pos = 0;
    tb_uidset_render(&s, &pos, &b, 1 << 20);
    CHECK(parse(&back, b.data, 0) == 0 && tb_uidset_count(&back) == 3000,
          "rendered text parses back to the same set");
    tb_uidset_free(&back);
    tb_buf_free(&b);
    tb_uidset_free(&s);

    tb_uidset_init(&s);
    tb_uidset_add(&s, 10);
    tb_uidset_add(&s, 3);
    tb_uidset_add(&s, 4);
    tb_uidset_add(&s, 11);
    CHECK(tb_uidset_max(&s) == 11 && s.n == 2 && s.r[0].lo == 3 && s.r[1].hi == 11,
          "out-of-order additions normalize to 3:4,10:11");
    tb_uidset_free(&s);
    return tap_done();
}
