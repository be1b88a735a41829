/* Command writer: builds one IMAP command (without its tag) as text chunks separated by
 * points where the server's continuation may be needed (synchronizing literals, SASL).
 *
 * Quoting rule: an atom when every byte is ATOM-CHAR, a quoted string for other short
 * printable 7-bit text, a literal for anything with CR, LF, NUL, 8-bit bytes or > 1 KiB.
 * With LITERAL+ (or LITERAL- for literals up to 4096 bytes) literals are sent as {n+} and
 * never wait; otherwise {n} and the pipeline holds the rest of the command (and everything
 * queued behind it, which the protocol requires) until the server's "+". */
#ifndef TWINBOX_PROTOCOL_CMD_H
#define TWINBOX_PROTOCOL_CMD_H

#include "util/buf.h"

#include <stdbool.h>
#include <stddef.h>

struct tb_cmd;

struct tb_cmd *tb_cmd_new(const char *verb);
void tb_cmd_free(struct tb_cmd *c);
/* Each appender puts one space before its item. */
void tb_cmd_atom(struct tb_cmd *c, const char *atom);
void tb_cmd_printf(struct tb_cmd *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void tb_cmd_astring(struct tb_cmd *c, const char *s);
void tb_cmd_string(struct tb_cmd *c, const char *s); /* never an atom (e.g. mailbox "") */
void tb_cmd_literal(struct tb_cmd *c, const void *data, size_t len);
/* A literal of b's bytes, not copied: the command holds a reference until it is freed, and
 * the rendered chunk refers to the blob (written from it by the pipeline). */
void tb_cmd_literal_blob(struct tb_cmd *c, struct tb_blob *b);
/* Like astring, but the trace shows <redacted>. */
void tb_cmd_secret(struct tb_cmd *c, const char *s);
/* Ends the current chunk: the text after it is sent only after a continuation request
 * (AUTHENTICATE without SASL-IR). The text is secret in traces. */
void tb_cmd_continuation(struct tb_cmd *c, const char *text);
const char *tb_cmd_verb(const struct tb_cmd *c);
/* Whether the command carries a secret (password, SASL response): its rendered bytes must be
 * wiped wherever they are copied. */
bool tb_cmd_has_secret(const struct tb_cmd *c);

/* Rendering for the pipeline. literal_plus: {n+} allowed for any size; literal_minus: for
 * literals of at most 4096 bytes. Returns the number of chunks. Chunk k > 0 may be sent
 * only after a continuation request. The first chunk starts with "TAG ". */
size_t tb_cmd_render(struct tb_cmd *c, const char *tag, bool literal_plus, bool literal_minus);
/* Piece i of chunk k (false past its end), valid until the command is rendered again or
 * freed: text of the rendering, or a blob literal's bytes in place (blob set). A chunk's
 * bytes are its pieces in order. */
struct tb_cmd_piece {
    const char *data;
    size_t len;
    struct tb_blob *blob;
};
bool tb_cmd_piece(const struct tb_cmd *c, size_t k, size_t i, struct tb_cmd_piece *out);
/* Every chunk was written: the rendering and the blob literals are released (the trace
 * still shows the literals' lengths). The command must not be rendered again. */
void tb_cmd_written(struct tb_cmd *c);
/* Chunk k's bytes appended to out, flattened (tests). */
void tb_cmd_chunk_text(const struct tb_cmd *c, size_t k, struct tb_buf *out);
/* Trace form of the whole command: secrets and literal bodies replaced. */
void tb_cmd_trace(const struct tb_cmd *c, const char *tag, struct tb_buf *out);

#endif
