/* fuzz_uidset: UID-set text as twinbox parses it, and the sets it writes back.
 *
 * Target: src/util/uidset.h (tb_uidset_parse and friends). The input (all its bytes, NULs
 * included) is parsed into a set; when it holds a ';', the part before it is parsed first
 * and the rest added to the same set, as a store adds one server line after another. The set is
 * then queried (count, max, has) and rendered (tb_uidset_render) with a line budget drawn from the
 * input, and the rendering parsed back.
 *
 * Invariants checked (besides ASan, UBSan and leak reports):
 * - a failed parse says why and leaves the set exactly as it was (uidset.h: "s unchanged";
 *   corpus/fuzz_uidset/failed-parse-after-extend is the input that once broke it);
 * - after a parse, the normalized ranges are sorted, disjoint, not adjacent, within
 *   1..2^32-1; count and max agree with them; has() is true at both ends of every range and
 *   false just outside; every number of the text is in the set;
 * - a set bounded by max_uid = its max parses, bounded by max - 1 fails;
 * - the rendering covers the set in pieces within the budget (a piece exceeds it only when
 *   it is a single range), its UID counts add up to count, and it parses back to the same
 *   ranges. */
#include "fuzz.h"

#include "util/buf.h"
#include "util/uidset.h"

static void check_normal(struct tb_uidset *s)
{
    uint64_t count = tb_uidset_count(s); /* normalizes */
    FUZZ_ASSERT(!s->dirty, "normalized after a query");
    uint64_t c = 0;
    for (size_t i = 0; i < s->n; i++) {
        const struct tb_uidrange *r = &s->r[i];
        FUZZ_ASSERT(r->lo >= 1 && r->lo <= r->hi, "ranges within 1..2^32-1, lo <= hi");
        FUZZ_ASSERT(i == 0 || (uint64_t)s->r[i - 1].hi + 1 < r->lo,
                    "sorted, disjoint, not adjacent");
        c += (uint64_t)r->hi - r->lo + 1;
        FUZZ_ASSERT(tb_uidset_has(s, r->lo) && tb_uidset_has(s, r->hi), "has() at both ends");
        FUZZ_ASSERT(!tb_uidset_has(s, r->lo - 1), "has() false before a range");
        if (r->hi < UINT32_MAX)
            FUZZ_ASSERT(!tb_uidset_has(s, r->hi + 1), "has() false after a range");
    }
    FUZZ_ASSERT(c == count, "count adds up the ranges");
    FUZZ_ASSERT(tb_uidset_max(s) == (s->n ? s->r[s->n - 1].hi : 0), "max is the last end");
    FUZZ_ASSERT(tb_uidset_empty(s) == (s->n == 0), "empty when no range");
}

/* Every number of a text that parsed is in the set. */
static void check_members(struct tb_uidset *s, const char *text, size_t len)
{
    for (size_t i = 0; i < len;) {
        uint64_t v = 0;
        size_t start = i;
        while (i < len && text[i] >= '0' && text[i] <= '9')
            v = v * 10 + (uint64_t)(text[i++] - '0');
        if (i > start)
            FUZZ_ASSERT(tb_uidset_has(s, (uint32_t)v), "every UID of the text is in the set");
        else
            i++;
    }
}

static void check_render(struct tb_uidset *s, size_t budget)
{
    struct tb_uidset back;
    tb_uidset_init(&back);
    struct tb_buf piece;
    tb_buf_init(&piece);
    uint64_t uids = 0;
    for (size_t pos = 0; pos < s->n;) {
        size_t before = pos;
        piece.len = 0;
        uids += tb_uidset_render(s, &pos, &piece, budget);
        FUZZ_ASSERT(pos > before, "each piece holds at least one range");
        FUZZ_ASSERT(piece.len <= budget || pos == before + 1, "a piece within the budget");
        char err[80];
        FUZZ_ASSERT(tb_uidset_parse(&back, piece.data, piece.len, 0, err, sizeof(err)) == 0,
                    "a rendered piece parses");
    }
    FUZZ_ASSERT(uids == tb_uidset_count(s), "the pieces name every UID");
    tb_uidset_normalize(&back);
    FUZZ_ASSERT(back.n == s->n && (s->n == 0 || memcmp(back.r, s->r, s->n * sizeof(*s->r)) == 0),
                "the rendering parses back to the same set");
    tb_buf_free(&piece);
    tb_uidset_free(&back);
}

/* Parses text[0..len) into s; on failure checks that s did not change. */
static int parse_into(struct tb_uidset *s, const char *text, size_t len)
{
    struct tb_uidset saved = *s;
    saved.r = s->n ? malloc(s->n * sizeof(*s->r)) : NULL;
    if (s->n && !saved.r)
        abort();
    if (s->n)
        memcpy(saved.r, s->r, s->n * sizeof(*s->r));
    char err[80];
    memset(err, 'x', sizeof(err));
    int rc = tb_uidset_parse(s, text, len, 0, err, sizeof(err));
    if (rc < 0) {
        FUZZ_ASSERT(memchr(err, 0, sizeof(err)) && err[0], "a failure says why");
        FUZZ_ASSERT(s->n == saved.n && s->dirty == saved.dirty, "a failed parse adds nothing");
        FUZZ_ASSERT(s->n == 0 || memcmp(s->r, saved.r, s->n * sizeof(*s->r)) == 0,
                    "a failed parse leaves the set's ranges as they were");
    } else {
        FUZZ_ASSERT(rc == 0, "0 or -1");
    }
    free(saved.r);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size ? size : 1);
    if (!text)
        abort();
    memcpy(text, data, size);
    struct tb_uidset s;
    tb_uidset_init(&s);
    const char *semi = memchr(text, ';', size);
    size_t first = semi ? (size_t)(semi - text) : size;
    bool ok = parse_into(&s, text, first) == 0;
    if (ok)
        check_members(&s, text, first);
    if (ok && semi) {
        if (parse_into(&s, semi + 1, size - first - 1) == 0)
            check_members(&s, semi + 1, size - first - 1);
    }
    check_normal(&s);
    /* (A rendering of more than 100,000 ranges is more than one parse accepts.) */
    if (!tb_uidset_empty(&s) && s.n <= 100000) {
        uint32_t max = tb_uidset_max(&s);
        struct tb_buf b;
        tb_buf_init(&b);
        size_t pos = 0;
        tb_uidset_render(&s, &pos, &b, SIZE_MAX);
        struct tb_uidset t;
        tb_uidset_init(&t);
        FUZZ_ASSERT(tb_uidset_parse(&t, b.data, b.len, max, NULL, 0) == 0,
                    "a set within its max parses");
        if (max > 1) {
            tb_uidset_clear(&t);
            FUZZ_ASSERT(tb_uidset_parse(&t, b.data, b.len, max - 1, NULL, 0) < 0,
                        "a set beyond max_uid is refused");
        }
        tb_uidset_free(&t);
        tb_buf_free(&b);
        /* Budgets from 1 byte (one range per piece) to the RFC 7162 line size. */
        size_t budget = size ? (size_t)data[size - 1] * 31 % 8001 : 7000;
        check_render(&s, budget);
        check_render(&s, 1);
    }
    tb_uidset_free(&s);
    free(text);
    return 0;
}
