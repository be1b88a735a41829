/* Growable byte buffer with amortised O(1) append and cheap consumption from the front.
 * Ownership: the buffer owns `data`; pointers into it are invalidated by any append. */
#ifndef TWINBOX_UTIL_BUF_H
#define TWINBOX_UTIL_BUF_H

#include <stddef.h>
#include <stdarg.h>

struct tb_buf {
    char *data;
    size_t len; /* bytes in use, starting at data */
    size_t cap;
};

void tb_buf_init(struct tb_buf *b);
void tb_buf_free(struct tb_buf *b);
/* Aborts on allocation failure: twinbox treats OOM as fatal (no partial state is committed). */
void tb_buf_reserve(struct tb_buf *b, size_t extra);
void tb_buf_append(struct tb_buf *b, const void *p, size_t n);
void tb_buf_puts(struct tb_buf *b, const char *s);
void tb_buf_printf(struct tb_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void tb_buf_vprintf(struct tb_buf *b, const char *fmt, va_list ap);
/* Drops n bytes from the front (memmove of the rest). */
void tb_buf_consume(struct tb_buf *b, size_t n);
/* NUL-terminates without counting the terminator in len. */
const char *tb_buf_cstr(struct tb_buf *b);

/* A reference-counted block of bytes (a message body on its way from FETCH to APPEND): each
 * holder (copy job, command, link write request) takes a reference, the last one frees it,
 * so the bytes are never copied between them. Single-threaded: a blob stays on the event
 * loop (one thread) that made it. */
struct tb_blob {
    size_t refs;
    size_t len;
    char data[];
};

/* A blob of len bytes (contents unset), one reference. */
struct tb_blob *tb_blob_new(size_t len);
struct tb_blob *tb_blob_ref(struct tb_blob *b);
/* Drops one reference; NULL is fine. */
void tb_blob_unref(struct tb_blob *b);

void *tb_xmalloc(size_t n);
void *tb_xcalloc(size_t n, size_t m);
void *tb_xrealloc(void *p, size_t n);
char *tb_xstrdup(const char *s);
char *tb_xstrndup(const char *s, size_t n);
/* Wipes a NUL-terminated secret (explicit_bzero, which the compiler keeps), frees it and
 * clears the pointer; NULL is fine. */
void tb_secret_free(char **s);

#endif
