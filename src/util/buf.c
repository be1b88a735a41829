#include "util/buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void oom(void)
{
    fputs("twinbox: out of memory\n", stderr);
    abort();
}

void *tb_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        oom();
    return p;
}

void *tb_xcalloc(size_t n, size_t m)
{
    void *p = calloc(n ? n : 1, m ? m : 1);
    if (!p)
        oom();
    return p;
}

void *tb_xrealloc(void *p, size_t n)
{
    p = realloc(p, n ? n : 1);
    if (!p)
        oom();
    return p;
}

char *tb_xstrdup(const char *s)
{
    return tb_xstrndup(s, strlen(s));
}

char *tb_xstrndup(const char *s, size_t n)
{
    char *p = tb_xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = 0;
    return p;
}

struct tb_blob *tb_blob_new(size_t len)
{
    if (len > ((size_t)-1) - sizeof(struct tb_blob) - 1)
        oom();
    struct tb_blob *b = tb_xmalloc(sizeof(*b) + len + 1);
    b->refs = 1;
    b->len = len;
    b->data[len] = 0;
    return b;
}

struct tb_blob *tb_blob_ref(struct tb_blob *b)
{
    b->refs++;
    return b;
}

void tb_blob_unref(struct tb_blob *b)
{
    if (b && --b->refs == 0)
        free(b);
}

void tb_buf_init(struct tb_buf *b)
{
    b->data = NULL;
    b->len = b->cap = 0;
}

void tb_buf_free(struct tb_buf *b)
{
    free(b->data);
    tb_buf_init(b);
}

void tb_buf_reserve(struct tb_buf *b, size_t extra)
{
    if (b->len + extra + 1 <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra + 1) {
        if (cap > ((size_t)-1) / 2)
            oom();
        cap *= 2;
    }
    b->data = tb_xrealloc(b->data, cap);
    b->cap = cap;
}

void tb_buf_append(struct tb_buf *b, const void *p, size_t n)
{
    if (n == 0)
        return;
    tb_buf_reserve(b, n);
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

void tb_buf_puts(struct tb_buf *b, const char *s)
{
    tb_buf_append(b, s, strlen(s));
}

void tb_buf_vprintf(struct tb_buf *b, const char *fmt, va_list ap)
{
    /* Try the free space first; grow and retry only when it was too small. */
    tb_buf_reserve(b, 64);
    va_list cp;
    va_copy(cp, ap);
    size_t room = b->cap - b->len;
    int n = vsnprintf(b->data + b->len, room, fmt, cp);
    va_end(cp);
    if (n < 0)
        return;
    if ((size_t)n >= room) {
        tb_buf_reserve(b, (size_t)n);
        vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    }
    b->len += (size_t)n;
}

void tb_buf_printf(struct tb_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    tb_buf_vprintf(b, fmt, ap);
    va_end(ap);
}

void tb_buf_consume(struct tb_buf *b, size_t n)
{
    if (n >= b->len) {
        b->len = 0;
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
}

const char *tb_buf_cstr(struct tb_buf *b)
{
    tb_buf_reserve(b, 0);
    b->data[b->len] = 0;
    return b->data;
}

void tb_secret_free(char **s)
{
    if (!*s)
        return;
    explicit_bzero(*s, strlen(*s));
    free(*s);
    *s = NULL;
}
