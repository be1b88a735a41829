#include "protocol/framer.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

void tb_framer_init(struct tb_framer *f, size_t max_line, uint64_t max_literal)
{
    memset(f, 0, sizeof(*f));
    tb_buf_init(&f->buf);
    f->max_line = max_line;
    f->max_literal = max_literal;
}

void tb_framer_free(struct tb_framer *f)
{
    tb_buf_free(&f->buf);
    tb_blob_unref(f->body);
    tb_blob_unref(f->taken);
    f->body = f->taken = NULL;
}

void tb_framer_detach_bodies(struct tb_framer *f)
{
    f->detach = true;
}

struct tb_blob *tb_framer_take_body(struct tb_framer *f)
{
    struct tb_blob *b = f->taken;
    f->taken = NULL;
    return b;
}

/* Whether the literal being read is the body being detached (a later literal of the same
 * response stays inline). */
static bool detaching(const struct tb_framer *f)
{
    return f->body && f->body_fill < f->body->len;
}

/* Up to n literal bytes from p into the body being detached; how many were taken. */
static size_t fill_body(struct tb_framer *f, const char *p, size_t n)
{
    size_t k = n < f->literal_left ? n : (size_t)f->literal_left;
    memcpy(f->body->data + f->body_fill, p, k);
    f->body_fill += k;
    f->literal_left -= k;
    if (f->literal_left == 0)
        f->line_start = f->scan; /* the next line starts where the literal was */
    return k;
}

/* Drops the consumed prefix when it is at least as large as the rest (amortised linear). */
static void compact(struct tb_framer *f)
{
    if (f->start == 0)
        return;
    size_t rest = f->buf.len - f->start;
    if (f->start < rest && f->start < 65536)
        return;
    tb_buf_consume(&f->buf, f->start);
    f->line_start -= f->start;
    f->scan -= f->start;
    f->start = 0;
}

void tb_framer_feed(struct tb_framer *f, const char *p, size_t n)
{
    if (detaching(f) && f->scan == f->buf.len && !f->error[0]) {
        /* Everything before is scanned: the body's bytes go straight into it. */
        size_t k = fill_body(f, p, n);
        p += k;
        n -= k;
    }
    compact(f);
    tb_buf_append(&f->buf, p, n);
}

size_t tb_framer_pending(const struct tb_framer *f)
{
    return f->buf.len - f->start;
}

/* If the line [ls, le) (CR excluded) ends in {digits} or {digits+}, stores the size. */
static int literal_suffix(struct tb_framer *f, const char *ls, const char *le, uint64_t *size,
                          const char **digits)
{
    if (le == ls || le[-1] != '}')
        return 0;
    const char *q = le - 1;
    if (q > ls && q[-1] == '+')
        q--;
    const char *digits_end = q;
    while (q > ls && q[-1] >= '0' && q[-1] <= '9')
        q--;
    if (q == digits_end || q == ls || q[-1] != '{')
        return 0;
    if (digits_end - q > 19) {
        snprintf(f->error, sizeof(f->error), "literal size too large");
        return -1;
    }
    uint64_t v = 0;
    for (const char *d = q; d < digits_end; d++)
        v = v * 10 + (uint64_t)(*d - '0');
    if (v > f->max_literal) {
        snprintf(f->error, sizeof(f->error), "literal of %llu bytes exceeds the limit",
                 (unsigned long long)v);
        return -1;
    }
    *size = v;
    *digits = q;
    return 1;
}

/* Whether the literal whose "{" is at brace is a whole message's: "BODY[] {n}". */
static bool body_literal(const char *ls, const char *brace)
{
    return brace - ls >= 7 && strncasecmp(brace - 7, "BODY[] ", 7) == 0;
}

/* Literal bytes in the buffer at scan, of a body being detached: into the body, out of the
 * buffer. At the buffer's end they are cut off; before the rest of the response, the
 * response's head (short: one line, and literals that were not detached) moves forward over
 * them instead, so the bytes after are never moved. */
static void detach_from_buffer(struct tb_framer *f, size_t avail)
{
    size_t k = fill_body(f, f->buf.data + f->scan, avail);
    if (f->scan + k == f->buf.len) {
        f->buf.len = f->scan;
        return;
    }
    memmove(f->buf.data + f->start + k, f->buf.data + f->start, f->scan - f->start);
    f->start += k;
    f->scan += k;
    f->line_start = f->scan;
}

/* Parenthesis depth over one line (literal bytes are never scanned: they sit between
 * lines); quoted strings cannot span lines, so their state starts fresh on each. */
static int track_depth(struct tb_framer *f, const char *ls, const char *le)
{
    bool quoted = false;
    for (const char *q = ls; q < le; q++) {
        if (quoted) {
            if (*q == '\\' && q + 1 < le)
                q++;
            else if (*q == '"')
                quoted = false;
        } else if (*q == '"') {
            quoted = true;
        } else if (*q == '(') {
            if (++f->depth > TB_FRAMER_MAX_DEPTH) {
                snprintf(f->error, sizeof(f->error), "response nested deeper than %d levels",
                         TB_FRAMER_MAX_DEPTH);
                return -1;
            }
        } else if (*q == ')' && f->depth > 0) {
            f->depth--;
        }
    }
    return 0;
}

int tb_framer_next(struct tb_framer *f, const char **resp, size_t *len)
{
    tb_blob_unref(f->taken); /* the last response's body, not taken */
    f->taken = NULL;
    if (f->error[0])
        return -1;
    for (;;) {
        size_t avail = f->buf.len - f->scan;
        if (f->literal_left && detaching(f)) {
            detach_from_buffer(f, avail);
            if (f->literal_left)
                return 0;
            continue;
        }
        if (f->literal_left) {
            if (avail < f->literal_left) {
                f->scan += avail;
                f->literal_left -= avail;
                return 0;
            }
            f->scan += (size_t)f->literal_left;
            f->literal_left = 0;
            f->line_start = f->scan;
            continue;
        }
        const char *base = f->buf.data;
        const char *nl = avail ? memchr(base + f->scan, '\n', avail) : NULL;
        if (!nl) {
            f->scan = f->buf.len;
            if (f->buf.len - f->line_start > f->max_line) {
                snprintf(f->error, sizeof(f->error), "response line longer than %zu bytes",
                         f->max_line);
                return -1;
            }
            return 0;
        }
        const char *ls = base + f->line_start;
        const char *le = nl;
        if (le > ls && le[-1] == '\r')
            le--;
        if ((size_t)(le - ls) > f->max_line) {
            snprintf(f->error, sizeof(f->error), "response line longer than %zu bytes",
                     f->max_line);
            return -1;
        }
        if (track_depth(f, ls, le) < 0)
            return -1;
        uint64_t lit = 0;
        const char *digits = NULL;
        int r = literal_suffix(f, ls, le, &lit, &digits);
        if (r < 0)
            return -1;
        f->scan = (size_t)(nl - base) + 1;
        f->line_start = f->scan;
        if (r > 0) {
            f->literal_left = lit;
            if (f->detach && lit > 0 && !f->body && body_literal(ls, digits - 1)) {
                /* lit <= max_literal (literal_suffix): allocated at once, filled as read. */
                f->body = tb_blob_new((size_t)lit);
                f->body_fill = 0;
                for (char *d = (char *)digits; *d >= '0' && *d <= '9'; d++)
                    *d = '0';
            }
            continue;
        }
        *resp = base + f->start;
        *len = f->scan - f->start;
        f->start = f->scan;
        f->depth = 0;
        f->taken = f->body; /* complete: body_fill == its length */
        f->body = NULL;
        return 1;
    }
}

void tb_framer_take_rest(struct tb_framer *f, struct tb_buf *out)
{
    tb_buf_append(out, f->buf.data + f->start, f->buf.len - f->start);
    f->buf.len = 0;
    f->start = f->line_start = f->scan = 0;
    f->literal_left = 0;
    f->depth = 0;
    tb_blob_unref(f->body); /* none: take_rest follows a returned response */
    f->body = NULL;
}
