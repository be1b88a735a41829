/* Framer: cuts the server's decrypted, inflated byte stream into complete IMAP responses
 * (a line plus any number of {n} / {n+} literals and continuation lines).
 *
 * Invariants: every byte is scanned once (the scan position survives between feeds) and the
 * buffer is compacted only when the consumed prefix is at least as large as what remains, so
 * total work is linear in the stream length whatever the literal sizes or chunking.
 * Bounds: a line longer than max_line, a literal larger than max_literal and a response
 * nested deeper than TB_FRAMER_MAX_DEPTH are protocol errors.
 *
 * Detached bodies (tb_framer_detach_bodies): the literal of a "BODY[] {n}" item (a whole
 * message) is not kept in the buffer but copied straight from the fed bytes into a blob of
 * exactly n bytes (allocated when its size is read, so n is bounded by max_literal first),
 * and its size in the response is overwritten with zeros ("{000}"): the response handed out
 * is then a valid one with an empty literal, which libetpan parses without ever seeing the
 * body, and tb_framer_take_body gives the body. One per response (the first such item);
 * any other literal stays inline. */
#ifndef TWINBOX_PROTOCOL_FRAMER_H
#define TWINBOX_PROTOCOL_FRAMER_H

#include "util/buf.h"

#include <stdbool.h>
#include <stdint.h>

struct tb_framer {
    struct tb_buf buf;
    size_t start;          /* offset of the response being assembled */
    size_t line_start;     /* offset of the current line (after the last literal) */
    size_t scan;           /* where CRLF scanning resumes */
    uint64_t literal_left; /* literal bytes still expected before the next line */
    size_t max_line;       /* longest line (without literals) accepted */
    uint64_t max_literal;
    int depth;             /* parenthesis depth of the response being assembled (outside strings) */
    bool detach;           /* tb_framer_detach_bodies */
    struct tb_blob *body;  /* the detached body of the response being assembled */
    size_t body_fill;      /* bytes of it received; literal_left more to come */
    struct tb_blob *taken; /* the body of the response last returned, until taken */
    char error[160];
};

/* libetpan parses nested lists recursively: a response nested deeper than this is refused
 * here, before its parser could exhaust the stack. Real responses stay below ~20 (nested
 * BODYSTRUCTURE of a deeply multipart message). */
#define TB_FRAMER_MAX_DEPTH 100

void tb_framer_init(struct tb_framer *f, size_t max_line, uint64_t max_literal);
void tb_framer_free(struct tb_framer *f);
void tb_framer_feed(struct tb_framer *f, const char *p, size_t n);
/* 1: a complete response is in *resp and *len (valid until the next framer call);
 * 0: more data needed; -1: protocol error (f->error says why; the stream is unusable). */
int tb_framer_next(struct tb_framer *f, const char **resp, size_t *len);
/* Moves the bytes after the last returned response into out (appended): used when a filter
 * (TLS after STARTTLS, inflate after COMPRESS) starts in the middle of the stream. */
void tb_framer_take_rest(struct tb_framer *f, struct tb_buf *out);
/* Detaches BODY[] literals from here on (see above). */
void tb_framer_detach_bodies(struct tb_framer *f);
/* The detached body of the response tb_framer_next returned last (the caller owns the
 * reference), or NULL; valid until the next framer call. */
struct tb_blob *tb_framer_take_body(struct tb_framer *f);
/* Bytes buffered but not yet returned as complete responses. */
size_t tb_framer_pending(const struct tb_framer *f);

#endif
