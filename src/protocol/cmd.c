#include "protocol/cmd.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* An item is text, a literal, a secret or a continuation point. */
enum item_kind { IT_TEXT, IT_LITERAL, IT_SECRET_TEXT, IT_SECRET_LITERAL, IT_CONT };

struct item {
    enum item_kind kind;
    char *data;
    size_t len;
};

struct tb_cmd {
    char *verb;
    struct item *items;
    size_t n, cap;
    struct tb_buf *chunks;
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
        if (secret && c->chunks[i].data)
            explicit_bzero(c->chunks[i].data, c->chunks[i].cap);
        tb_buf_free(&c->chunks[i]);
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

static void add(struct tb_cmd *c, enum item_kind k, const void *p, size_t len)
{
    if (c->n == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 8;
        c->items = tb_xrealloc(c->items, c->cap * sizeof(*c->items));
    }
    struct item *it = &c->items[c->n++];
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

void tb_cmd_continuation(struct tb_cmd *c, const char *text)
{
    add(c, IT_CONT, text, strlen(text));
}

static struct tb_buf *new_chunk(struct tb_cmd *c)
{
    c->chunks = tb_xrealloc(c->chunks, (c->n_chunks + 1) * sizeof(*c->chunks));
    struct tb_buf *b = &c->chunks[c->n_chunks++];
    tb_buf_init(b);
    if (tb_cmd_has_secret(c)) {
        /* Room for the whole command at once, so no secret is left behind by a realloc. */
        size_t total = strlen(c->verb) + 64;
        for (size_t i = 0; i < c->n; i++)
            total += c->items[i].len + 32;
        tb_buf_reserve(b, total);
    }
    return b;
}

size_t tb_cmd_render(struct tb_cmd *c, const char *tag, bool literal_plus, bool literal_minus)
{
    free_chunks(c);
    struct tb_buf *b = new_chunk(c);
    tb_buf_printf(b, "%s %s", tag, c->verb);
    for (size_t i = 0; i < c->n; i++) {
        struct item *it = &c->items[i];
        switch (it->kind) {
        case IT_TEXT:
        case IT_SECRET_TEXT:
            tb_buf_append(b, it->data, it->len);
            break;
        case IT_LITERAL:
        case IT_SECRET_LITERAL: {
            bool nonsync = literal_plus || (literal_minus && it->len <= 4096);
            tb_buf_printf(b, "{%zu%s}\r\n", it->len, nonsync ? "+" : "");
            if (!nonsync)
                b = new_chunk(c);
            tb_buf_append(b, it->data, it->len);
            break;
        }
        case IT_CONT:
            tb_buf_puts(b, "\r\n");
            b = new_chunk(c);
            tb_buf_append(b, it->data, it->len);
            break;
        }
    }
    tb_buf_puts(b, "\r\n");
    return c->n_chunks;
}

const struct tb_buf *tb_cmd_chunk(const struct tb_cmd *c, size_t k)
{
    return k < c->n_chunks ? &c->chunks[k] : NULL;
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
