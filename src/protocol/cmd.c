#include "protocol/cmd.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* An item is text, a literal (copied, or a referenced blob), a secret or a continuation
 * point. */
enum item_kind { IT_TEXT, IT_LITERAL, IT_SECRET_TEXT, IT_SECRET_LITERAL, IT_CONT, IT_BLOB };

struct item {
    enum item_kind kind;
    char *data; /* IT_BLOB: blob->data */
    size_t len;
    struct tb_blob *blob; /* IT_BLOB: one reference */
};

/* A rendered piece: [off, off + len) of the chunk's text, or a whole blob. */
struct piece {
    size_t off, len;
    struct tb_blob *blob; /* borrowed from its item */
};

struct chunk {
    struct tb_buf text;
    struct piece *pieces;
    size_t n, cap;
    size_t text_from; /* start of the text not yet in a piece */
};

struct tb_cmd {
    char *verb;
    struct item *items;
    size_t n, cap;
    struct chunk *chunks;
    size_t n_chunks;
};

struct tb_cmd *tb_cmd_new(const char *verb)
{
    struct tb_cmd *c = tb_xcalloc(1, sizeof(*c));
    c->verb = tb_xstrdup(verb);
    return c;
}

static void free_chunks(struct tb_cmd *c)
{
    bool secret = tb_cmd_has_secret(c);
    for (size_t i = 0; i < c->n_chunks; i++) {
        struct tb_buf *t = &c->chunks[i].text;
        if (secret && t->data)
            explicit_bzero(t->data, t->cap);
        tb_buf_free(t);
        free(c->chunks[i].pieces);
    }
    free(c->chunks);
    c->chunks = NULL;
    c->n_chunks = 0;
}

void tb_cmd_free(struct tb_cmd *c)
{
    if (!c)
        return;
    free_chunks(c); /* first: it asks the items whether they held a secret */
    for (size_t i = 0; i < c->n; i++) {
        if (c->items[i].kind == IT_SECRET_TEXT || c->items[i].kind == IT_SECRET_LITERAL ||
            c->items[i].kind == IT_CONT)
            explicit_bzero(c->items[i].data, c->items[i].len);
        if (c->items[i].kind == IT_BLOB)
            tb_blob_unref(c->items[i].blob);
        else
            free(c->items[i].data);
    }
    free(c->items);
    free(c->verb);
    free(c);
}

bool tb_cmd_has_secret(const struct tb_cmd *c)
{
    for (size_t i = 0; i < c->n; i++)
        if (c->items[i].kind == IT_SECRET_TEXT || c->items[i].kind == IT_SECRET_LITERAL ||
            c->items[i].kind == IT_CONT)
            return true;
    return false;
}

const char *tb_cmd_verb(const struct tb_cmd *c)
{
    return c->verb;
}

static struct item *new_item(struct tb_cmd *c)
{
    if (c->n == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 8;
        c->items = tb_xrealloc(c->items, c->cap * sizeof(*c->items));
    }
    struct item *it = &c->items[c->n++];
    it->blob = NULL;
    return it;
}

static void add(struct tb_cmd *c, enum item_kind k, const void *p, size_t len)
{
    struct item *it = new_item(c);
    it->kind = k;
    it->data = tb_xmalloc(len + 1);
    memcpy(it->data, p, len);
    it->data[len] = 0;
    it->len = len;
}

static void add_text(struct tb_cmd *c, const char *s)
{
    add(c, IT_TEXT, s, strlen(s));
}

void tb_cmd_atom(struct tb_cmd *c, const char *atom)
{
    add_text(c, " ");
    add_text(c, atom);
}

void tb_cmd_printf(struct tb_cmd *c, const char *fmt, ...)
{
    struct tb_buf b;
    tb_buf_init(&b);
    tb_buf_puts(&b, " ");
    va_list ap;
    va_start(ap, fmt);
    tb_buf_vprintf(&b, fmt, ap);
    va_end(ap);
    add(c, IT_TEXT, b.data, b.len);
    tb_buf_free(&b);
}

static bool is_atom_char(unsigned char ch)
{
    if (ch <= 0x20 || ch >= 0x7f)
        return false;
    return !strchr("(){%*\"\\]", ch);
}

/* 0: atom, 1: quoted, 2: literal */
static int string_form(const char *s, size_t len, bool allow_atom)
{
    if (len > 1024)
        return 2;
    bool atom = allow_atom && len > 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == 0 || ch == '\r' || ch == '\n' || ch >= 0x80)
            return 2;
        if (!is_atom_char(ch))
            atom = false;
    }
    /* NIL as an atom would be read as the nil value. */
    if (atom && len == 3 && strncasecmp(s, "NIL", 3) == 0)
        atom = false;
    return atom ? 0 : 1;
}

static void add_string(struct tb_cmd *c, const char *s, bool allow_atom, bool secret)
{
    size_t len = strlen(s);
    add_text(c, " ");
    int form = string_form(s, len, allow_atom);
    if (form == 2) {
        add(c, secret ? IT_SECRET_LITERAL : IT_LITERAL, s, len);
        return;
    }
    struct tb_buf b;
    tb_buf_init(&b);
    /* Sized once: a growing buffer would leave copies of a secret in freed blocks. */
    tb_buf_reserve(&b, 2 * len + 3);
    if (form == 1)
        tb_buf_puts(&b, "\"");
    for (size_t i = 0; i < len; i++) {
        if (form == 1 && (s[i] == '"' || s[i] == '\\'))
            tb_buf_puts(&b, "\\");
        tb_buf_append(&b, &s[i], 1);
    }
    if (form == 1)
        tb_buf_puts(&b, "\"");
    add(c, secret ? IT_SECRET_TEXT : IT_TEXT, b.data, b.len);
    if (b.data)
        explicit_bzero(b.data, b.cap);
    tb_buf_free(&b);
}

void tb_cmd_astring(struct tb_cmd *c, const char *s)
{
    add_string(c, s, true, false);
}

void tb_cmd_string(struct tb_cmd *c, const char *s)
{
    add_string(c, s, false, false);
}

void tb_cmd_secret(struct tb_cmd *c, const char *s)
{
    add_string(c, s, true, true);
}

void tb_cmd_literal(struct tb_cmd *c, const void *data, size_t len)
{
    add_text(c, " ");
    add(c, IT_LITERAL, data, len);
}

void tb_cmd_literal_blob(struct tb_cmd *c, struct tb_blob *b)
{
    add_text(c, " ");
    struct item *it = new_item(c);
    it->kind = IT_BLOB;
    it->blob = tb_blob_ref(b);
    it->data = b->data;
    it->len = b->len;
}

void tb_cmd_continuation(struct tb_cmd *c, const char *text)
{
    add(c, IT_CONT, text, strlen(text));
}

static struct chunk *new_chunk(struct tb_cmd *c)
{
    c->chunks = tb_xrealloc(c->chunks, (c->n_chunks + 1) * sizeof(*c->chunks));
    struct chunk *ch = &c->chunks[c->n_chunks++];
    memset(ch, 0, sizeof(*ch));
    tb_buf_init(&ch->text);
    if (tb_cmd_has_secret(c)) {
        /* Room for the whole command at once, so no secret is left behind by a realloc. */
        size_t total = strlen(c->verb) + 64;
        for (size_t i = 0; i < c->n; i++)
            total += (c->items[i].kind == IT_BLOB ? 0 : c->items[i].len) + 32;
        tb_buf_reserve(&ch->text, total);
    }
    return ch;
}

static void add_piece(struct chunk *ch, size_t off, size_t len, struct tb_blob *blob)
{
    if (len == 0)
        return;
    if (ch->n == ch->cap) {
        ch->cap = ch->cap ? ch->cap * 2 : 4;
        ch->pieces = tb_xrealloc(ch->pieces, ch->cap * sizeof(*ch->pieces));
    }
    ch->pieces[ch->n++] = (struct piece){off, len, blob};
}

/* The text written since the last piece becomes one. */
static void close_text(struct chunk *ch)
{
    add_piece(ch, ch->text_from, ch->text.len - ch->text_from, NULL);
    ch->text_from = ch->text.len;
}

size_t tb_cmd_render(struct tb_cmd *c, const char *tag, bool literal_plus, bool literal_minus)
{
    free_chunks(c);
    struct chunk *ch = new_chunk(c);
    tb_buf_printf(&ch->text, "%s %s", tag, c->verb);
    for (size_t i = 0; i < c->n; i++) {
        struct item *it = &c->items[i];
        switch (it->kind) {
        case IT_TEXT:
        case IT_SECRET_TEXT:
            tb_buf_append(&ch->text, it->data, it->len);
            break;
        case IT_LITERAL:
        case IT_SECRET_LITERAL:
        case IT_BLOB: {
            bool nonsync = literal_plus || (literal_minus && it->len <= 4096);
            tb_buf_printf(&ch->text, "{%zu%s}\r\n", it->len, nonsync ? "+" : "");
            if (!nonsync) {
                close_text(ch);
                ch = new_chunk(c);
            }
            if (it->kind == IT_BLOB) {
                close_text(ch); /* the blob is written from where it is, never copied */
                add_piece(ch, 0, it->len, it->blob);
            } else {
                tb_buf_append(&ch->text, it->data, it->len);
            }
            break;
        }
        case IT_CONT:
            tb_buf_puts(&ch->text, "\r\n");
            close_text(ch);
            ch = new_chunk(c);
            tb_buf_append(&ch->text, it->data, it->len);
            break;
        }
    }
    tb_buf_puts(&ch->text, "\r\n");
    close_text(ch);
    return c->n_chunks;
}

bool tb_cmd_piece(const struct tb_cmd *c, size_t k, size_t i, struct tb_cmd_piece *out)
{
    if (k >= c->n_chunks || i >= c->chunks[k].n)
        return false;
    const struct chunk *ch = &c->chunks[k];
    const struct piece *pc = &ch->pieces[i];
    out->blob = pc->blob;
    out->data = pc->blob ? pc->blob->data + pc->off : ch->text.data + pc->off;
    out->len = pc->len;
    return true;
}

void tb_cmd_written(struct tb_cmd *c)
{
    free_chunks(c);
    for (size_t i = 0; i < c->n; i++)
        if (c->items[i].kind == IT_BLOB) {
            tb_blob_unref(c->items[i].blob);
            c->items[i].blob = NULL;
            c->items[i].data = NULL;
        }
}

void tb_cmd_chunk_text(const struct tb_cmd *c, size_t k, struct tb_buf *out)
{
    struct tb_cmd_piece pc;
    for (size_t i = 0; tb_cmd_piece(c, k, i, &pc); i++)
        tb_buf_append(out, pc.data, pc.len);
}

void tb_cmd_trace(const struct tb_cmd *c, const char *tag, struct tb_buf *out)
{
    tb_buf_printf(out, "%s %s", tag, c->verb);
    for (size_t i = 0; i < c->n; i++) {
        const struct item *it = &c->items[i];
        switch (it->kind) {
        case IT_TEXT:
            tb_buf_append(out, it->data, it->len);
            break;
        case IT_LITERAL:
        case IT_BLOB:
            tb_buf_printf(out, "{%zu bytes}", it->len);
            break;
        case IT_SECRET_TEXT:
        case IT_SECRET_LITERAL:
        case IT_CONT:
            tb_buf_puts(out, "<redacted>");
            break;
        }
    }
}
