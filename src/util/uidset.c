#include "util/uidset.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_PARSED_RANGES 100000

void tb_uidset_init(struct tb_uidset *s)
{
    memset(s, 0, sizeof(*s));
}

void tb_uidset_free(struct tb_uidset *s)
{
    free(s->r);
    memset(s, 0, sizeof(*s));
}

void tb_uidset_clear(struct tb_uidset *s)
{
    s->n = 0;
    s->dirty = false;
}

void tb_uidset_add_range(struct tb_uidset *s, uint32_t lo, uint32_t hi)
{
    if (lo > hi) {
        uint32_t t = lo;
        lo = hi;
        hi = t;
    }
    /* Appending in order (the common case) extends the last range without sorting. */
    if (s->n && !s->dirty) {
        struct tb_uidrange *last = &s->r[s->n - 1];
        if (lo >= last->lo && (uint64_t)lo <= (uint64_t)last->hi + 1) {
            if (hi > last->hi)
                last->hi = hi;
            return;
        }
        if (lo <= last->hi)
            s->dirty = true;
    }
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 16;
        s->r = tb_xrealloc(s->r, s->cap * sizeof(*s->r));
    }
    s->r[s->n].lo = lo;
    s->r[s->n].hi = hi;
    s->n++;
}

void tb_uidset_add(struct tb_uidset *s, uint32_t uid)
{
    tb_uidset_add_range(s, uid, uid);
}

void tb_uidset_add_set(struct tb_uidset *s, const struct tb_uidset *other)
{
    for (size_t i = 0; i < other->n; i++)
        tb_uidset_add_range(s, other->r[i].lo, other->r[i].hi);
}

static int cmp_range(const void *a, const void *b)
{
    const struct tb_uidrange *x = a, *y = b;
    return x->lo < y->lo ? -1 : x->lo > y->lo;
}

void tb_uidset_normalize(struct tb_uidset *s)
{
    if (!s->dirty)
        return;
    qsort(s->r, s->n, sizeof(*s->r), cmp_range);
    size_t o = 0;
    for (size_t i = 0; i < s->n; i++) {
        if (o && (uint64_t)s->r[i].lo <= (uint64_t)s->r[o - 1].hi + 1) {
            if (s->r[i].hi > s->r[o - 1].hi)
                s->r[o - 1].hi = s->r[i].hi;
        } else {
            s->r[o++] = s->r[i];
        }
    }
    s->n = o;
    s->dirty = false;
}

/* nz-number: digit-nz *DIGIT, at most 2^32-1. */
static int nz_number(const char *p, size_t len, size_t *i, uint32_t *out)
{
    size_t start = *i;
    uint64_t v = 0;
    while (*i < len && p[*i] >= '0' && p[*i] <= '9') {
        v = v * 10 + (uint64_t)(p[*i] - '0');
        if (v > UINT32_MAX)
            return -1;
        (*i)++;
    }
    if (*i == start || p[start] == '0')
        return -1;
    *out = (uint32_t)v;
    return 0;
}

int tb_uidset_parse(struct tb_uidset *s, const char *text, size_t len, uint32_t max_uid, char *err,
                    size_t errlen)
{
    /* Into a set of its own first: adding to s could extend one of its ranges, which a
     * failure later in the text could not take back. */
    struct tb_uidset t;
    tb_uidset_init(&t);
    size_t i = 0, ranges = 0;
    const char *why = NULL;
    do {
        uint32_t lo, hi;
        if (nz_number(text, len, &i, &lo) < 0) {
            why = "bad number";
            break;
        }
        hi = lo;
        if (i < len && text[i] == ':') {
            i++;
            if (nz_number(text, len, &i, &hi) < 0) {
                why = "bad number";
                break;
            }
        }
        if (max_uid && (lo > max_uid || hi > max_uid)) {
            why = "UID beyond the mailbox's UIDNEXT";
            break;
        }
        if (++ranges > MAX_PARSED_RANGES) {
            why = "too many ranges";
            break;
        }
        tb_uidset_add_range(&t, lo, hi);
    } while (i < len && text[i] == ',' && ++i);
    if (!why && i != len)
        why = "unexpected character";
    if (why) {
        tb_uidset_free(&t);
        if (err && errlen)
            snprintf(err, errlen, "UID set: %s", why);
        return -1;
    }
    tb_uidset_add_set(s, &t);
    tb_uidset_free(&t);
    return 0;
}

bool tb_uidset_has(struct tb_uidset *s, uint32_t uid)
{
    tb_uidset_normalize(s);
    size_t lo = 0, hi = s->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (s->r[mid].hi < uid)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < s->n && s->r[lo].lo <= uid;
}

uint64_t tb_uidset_count(struct tb_uidset *s)
{
    tb_uidset_normalize(s);
    uint64_t c = 0;
    for (size_t i = 0; i < s->n; i++)
        c += (uint64_t)s->r[i].hi - s->r[i].lo + 1;
    return c;
}

bool tb_uidset_empty(const struct tb_uidset *s)
{
    return s->n == 0;
}

uint32_t tb_uidset_max(struct tb_uidset *s)
{
    tb_uidset_normalize(s);
    return s->n ? s->r[s->n - 1].hi : 0;
}

uint64_t tb_uidset_render(struct tb_uidset *s, size_t *pos, struct tb_buf *out, size_t max_len)
{
    tb_uidset_normalize(s);
    uint64_t uids = 0;
    size_t start_len = out->len;
    while (*pos < s->n) {
        const struct tb_uidrange *r = &s->r[*pos];
        char piece[32];
        int n = r->lo == r->hi ? snprintf(piece, sizeof(piece), "%u", r->lo)
                               : snprintf(piece, sizeof(piece), "%u:%u", r->lo, r->hi);
        bool first = out->len == start_len;
        size_t need = (size_t)n + (first ? 0 : 1);
        if (!first && out->len + need > max_len)
            break;
        if (!first)
            tb_buf_puts(out, ",");
        tb_buf_append(out, piece, (size_t)n);
        uids += (uint64_t)r->hi - r->lo + 1;
        (*pos)++;
    }
    tb_buf_cstr(out);
    return uids;
}
