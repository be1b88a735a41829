/* X-REPLICATE untagged responses as a libetpan extension.
 *
 * libetpan's response-data parser tries its own grammar first, then its built-in
 * extensions and then the registered ones with calling_parser
 * MAILIMAP_EXTENDED_PARSER_RESPONSE_DATA, stopping at the first that does not answer
 * MAILIMAP_ERROR_PARSE; it then parses the CRLF itself and wraps our
 * mailimap_extension_data as MAILIMAP_RESP_DATA_TYPE_EXTENSION_DATA. The same hook is
 * called for mailbox-data, resp-text-code, fetch and status items: we answer PARSE there so
 * the other extensions still get their turn.
 *
 * The grammar is scanned here rather than with libetpan's exported helpers because those
 * are lax in ways that would let a broken line through as a plausible value: their number
 * parsers wrap on overflow and skip a leading space, quoted strings take CR, LF and any
 * escape, literals take "{-5}" and NULs. tb_parse_response() hands us the whole response
 * with its literals inline (fd == NULL), so everything is in the buffer; a literal that
 * runs past it answers MAILIMAP_ERROR_NEEDS_MORE_DATA like libetpan's own parsers do. */
#include "protocol/xrep.h"

#include "protocol/parse.h"

#include <libetpan/libetpan.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* A cursor over libetpan's buffer. Failures only report false: the whole value is then
 * dropped, so no helper needs to restore the position. */
struct scan {
    const char *s;
    size_t len, pos;
    bool more;  /* a literal reaches past the buffer */
    bool nomem; /* an allocation failed (not a syntax error) */
};

static int peek(const struct scan *sc)
{
    return sc->pos < sc->len ? (unsigned char)sc->s[sc->pos] : -1;
}

static bool take(struct scan *sc, char c)
{
    if (peek(sc) != (unsigned char)c)
        return false;
    sc->pos++;
    return true;
}

/* RFC 3501 ATOM-CHAR: CHAR minus atom-specials (CTL, SP, "(){%*\"\\]"). */
static bool is_atom_char(int c)
{
    return c > 0x20 && c < 0x7f && c != '(' && c != ')' && c != '{' && c != '%' && c != '*' &&
           c != '"' && c != '\\' && c != ']';
}

/* Skips 1*ATOM-CHAR (1*ASTRING-CHAR, which adds ']', when astring); returns the length. */
static size_t atom_span(struct scan *sc, bool astring)
{
    size_t start = sc->pos;
    for (int c; (c = peek(sc)) >= 0 && (is_atom_char(c) || (astring && c == ']'));)
        sc->pos++;
    return sc->pos - start;
}

/* The index of the keyword the next atom spells, or -1. Keywords are case-insensitive
 * (RFC 3501 section 9) and must be the whole atom, so "CREATEDX" is no "CREATED". */
static int which(struct scan *sc, const char *const *words, int n)
{
    size_t start = sc->pos, len = atom_span(sc, false);
    for (int i = 0; i < n; i++)
        if (strlen(words[i]) == len && strncasecmp(sc->s + start, words[i], len) == 0)
            return i;
    return -1;
}

static bool keyword(struct scan *sc, const char *word)
{
    return which(sc, &word, 1) == 0;
}

static char *dup_span(struct scan *sc, size_t start, size_t n)
{
    char *p = malloc(n + 1);
    if (!p) {
        sc->nomem = true;
        return NULL;
    }
    memcpy(p, sc->s + start, n);
    p[n] = 0;
    return p;
}

/* 1*DIGIT not above max; nz also wants digit-nz first (no 0, no leading zeros). Overflow
 * is refused: a wrapped UID or MODSEQ would be a plausible wrong value. */
static bool number(struct scan *sc, uint64_t max, bool nz, uint64_t *out)
{
    size_t start = sc->pos;
    uint64_t v = 0;
    for (int c; (c = peek(sc)) >= '0' && c <= '9'; sc->pos++) {
        unsigned d = (unsigned)(c - '0');
        if (v > (max - d) / 10)
            return false;
        v = v * 10 + d;
    }
    if (sc->pos == start || (nz && sc->s[start] == '0'))
        return false;
    *out = v;
    return true;
}

static bool nz_number(struct scan *sc, uint32_t *out)
{
    uint64_t v;
    if (!number(sc, UINT32_MAX, true, &v))
        return false;
    *out = (uint32_t)v;
    return true;
}

/* RFC 7162 mod-sequence-value: 1*DIGIT, at most 2^63-1; 0 only where valzer is allowed. */
static bool modseq(struct scan *sc, bool zero_ok, uint64_t *out)
{
    return number(sc, INT64_MAX, false, out) && (zero_ok || *out > 0);
}

/* string = quoted / literal, as a new C string. Quoted: 7-bit TEXT-CHARs with only the
 * \" and \\ escapes (RFC 3501). Literal: "{n}" CRLF (or bare LF, as the framer accepts)
 * and n bytes; a NUL is refused because names and tokens are used as C strings. */
static char *string(struct scan *sc)
{
    if (take(sc, '"')) {
        size_t start = sc->pos, n = 0;
        for (;;) {
            int c = peek(sc);
            if (c <= 0 || c == '\r' || c == '\n' || c >= 0x80)
                return NULL;
            sc->pos++;
            if (c == '"')
                break;
            if (c == '\\' && !take(sc, '"') && !take(sc, '\\'))
                return NULL;
            n++;
        }
        char *p = malloc(n + 1);
        if (!p) {
            sc->nomem = true;
            return NULL;
        }
        for (size_t i = start, o = 0; o < n; i++, o++) {
            if (sc->s[i] == '\\')
                i++;
            p[o] = sc->s[i];
        }
        p[n] = 0;
        return p;
    }
    uint64_t n;
    if (!take(sc, '{') || !number(sc, UINT32_MAX, false, &n) || !take(sc, '}'))
        return NULL;
    take(sc, '\r');
    if (!take(sc, '\n'))
        return NULL;
    if (n > sc->len - sc->pos) {
        sc->more = true;
        return NULL;
    }
    if (memchr(sc->s + sc->pos, 0, (size_t)n))
        return NULL;
    char *p = dup_span(sc, sc->pos, (size_t)n);
    sc->pos += (size_t)n;
    return p;
}

/* xrep-name: a string (never an atom), and never empty: an unnamed mailbox is a broken
 * line, not something to create or rename to. */
static char *name(struct scan *sc)
{
    char *p = string(sc);
    if (p && !*p) {
        free(p);
        p = NULL;
    }
    return p;
}

/* position-token = astring; an empty one could not be sent back, so it is refused. */
static char *astring(struct scan *sc)
{
    int c = peek(sc);
    char *p;
    if (c == '"' || c == '{') {
        p = string(sc);
    } else {
        size_t start = sc->pos, n = atom_span(sc, true);
        p = n ? dup_span(sc, start, n) : NULL;
    }
    if (p && !*p) {
        free(p);
        p = NULL;
    }
    return p;
}

bool tb_xrep_guid_parse(char out[33], const char *p)
{
    for (size_t i = 0; i < 32; i++) {
        char c = p[i];
        if (c >= 'A' && c <= 'F')
            c = (char)(c - 'A' + 'a');
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return false;
        out[i] = c;
    }
    out[32] = 0;
    return true;
}

/* mailbox-guid = 32(DIGIT / %x61-66): lower case only, it is compared as a string. */
static bool guid(struct scan *sc, char out[33])
{
    if (sc->len - sc->pos < 32)
        return false;
    for (size_t i = 0; i < 32; i++) {
        char c = sc->s[sc->pos + i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return false;
    }
    memcpy(out, sc->s + sc->pos, 32);
    out[32] = 0;
    sc->pos += 32;
    return true;
}

/* A sequence-set of UIDs, kept as sent: nz-number [":" nz-number] *("," ...), no "*". */
static char *uid_set(struct scan *sc)
{
    size_t start = sc->pos;
    uint32_t u;
    do {
        if (!nz_number(sc, &u) || (take(sc, ':') && !nz_number(sc, &u)))
            return NULL;
    } while (take(sc, ','));
    return dup_span(sc, start, sc->pos - start);
}

/* flag-list = "(" [flag *(SP flag)] ")", flag = ["\"] atom; the inside kept as sent. */
static char *flag_list(struct scan *sc)
{
    if (!take(sc, '('))
        return NULL;
    size_t start = sc->pos;
    if (peek(sc) != ')') {
        do {
            take(sc, '\\');
            if (atom_span(sc, false) == 0)
                return NULL;
        } while (take(sc, ' '));
    }
    size_t end = sc->pos;
    if (!take(sc, ')'))
        return NULL;
    return dup_span(sc, start, end - start);
}

static bool parse_status(struct scan *sc, struct tb_xrep *x)
{
    if (!(x->name = name(sc)) || !take(sc, ' ') || !take(sc, '(') || !keyword(sc, "UIDVALIDITY") ||
        !take(sc, ' ') || !nz_number(sc, &x->uidvalidity) || !take(sc, ' ') ||
        !keyword(sc, "UIDNEXT") || !take(sc, ' ') || !nz_number(sc, &x->uidnext) ||
        !take(sc, ' ') || !keyword(sc, "HIGHESTMODSEQ") || !take(sc, ' ') ||
        !modseq(sc, true, &x->highestmodseq) || !take(sc, ')') || !take(sc, ' ') || !take(sc, '('))
        return false;
    if (take(sc, '\\')) {
        if (!keyword(sc, "Subscribed"))
            return false;
        x->subscribed = true;
    }
    return take(sc, ')');
}

static bool parse_resync(struct scan *sc, struct tb_xrep *x)
{
    size_t start = sc->pos, n = atom_span(sc, false);
    if (n == 0 || !(x->reason = dup_span(sc, start, n)))
        return false;
    for (char *p = x->reason; *p; p++)
        if (*p >= 'a' && *p <= 'z')
            *p = (char)(*p - 'a' + 'A');
    return take(sc, ' ') && (x->name = name(sc)) != NULL;
}

static bool parse_flags(struct scan *sc, struct tb_xrep *x)
{
    return (x->uids = uid_set(sc)) && take(sc, ' ') && keyword(sc, "MODSEQ") && take(sc, ' ') &&
           modseq(sc, false, &x->modseq) && take(sc, ' ') && keyword(sc, "ADD") && take(sc, ' ') &&
           (x->add = flag_list(sc)) && take(sc, ' ') && keyword(sc, "REMOVE") && take(sc, ' ') &&
           (x->remove = flag_list(sc));
}

/* xrep-data, after "XREPLICATE" SP. Fills x as it goes; on false the caller frees it. */
static bool parse_data(struct scan *sc, struct tb_xrep *x)
{
    static const char *const kinds[] = {
        [TB_XREP_MAILBOX] = "MAILBOX",   [TB_XREP_STATUS] = "STATUS",
        [TB_XREP_RESYNC] = "RESYNC",     [TB_XREP_APPENDED] = "APPENDED",
        [TB_XREP_EXPUNGED] = "EXPUNGED", [TB_XREP_FLAGS] = "FLAGS",
        [TB_XREP_POSITION] = "POSITION",
    };
    static const char *const events[] = {
        [TB_XREP_CREATED] = "CREATED",           [TB_XREP_DELETED] = "DELETED",
        [TB_XREP_RENAMED] = "RENAMED",           [TB_XREP_SUBSCRIBED] = "SUBSCRIBED",
        [TB_XREP_UNSUBSCRIBED] = "UNSUBSCRIBED",
    };
    int k = which(sc, kinds, (int)(sizeof(kinds) / sizeof(*kinds)));
    if (k < 0 || !take(sc, ' '))
        return false;
    x->kind = (enum tb_xrep_kind)k;
    if (x->kind == TB_XREP_POSITION)
        return (x->token = astring(sc)) != NULL;
    if (!guid(sc, x->guid) || !take(sc, ' '))
        return false;
    switch (x->kind) {
    case TB_XREP_MAILBOX: {
        int e = which(sc, events, (int)(sizeof(events) / sizeof(*events)));
        if (e < 0 || !take(sc, ' ') || !(x->name = name(sc)))
            return false;
        x->event = (enum tb_xrep_event)e;
        if (x->event == TB_XREP_RENAMED)
            return take(sc, ' ') && (x->new_name = name(sc)) != NULL;
        return true;
    }
    case TB_XREP_STATUS:
        return parse_status(sc, x);
    case TB_XREP_RESYNC:
        return parse_resync(sc, x);
    case TB_XREP_APPENDED:
    case TB_XREP_EXPUNGED:
        return (x->uids = uid_set(sc)) != NULL;
    case TB_XREP_FLAGS:
        return parse_flags(sc, x);
    case TB_XREP_POSITION:
        break;
    }
    return false;
}

static void xrep_free(struct tb_xrep *x)
{
    free(x->name);
    free(x->new_name);
    free(x->reason);
    free(x->uids);
    free(x->add);
    free(x->remove);
    free(x->token);
    free(x);
}

static int ext_parse(int calling_parser, mailstream *fd, MMAPString *buffer,
                     struct mailimap_parser_context *parser_ctx, size_t *indx,
                     struct mailimap_extension_data **result, size_t progr_rate,
                     progress_function *progr_fun);
static void ext_free(struct mailimap_extension_data *ext_data);

static char ext_name[] = "X-REPLICATE";

/* Identifies our data in tb_xrep_of(): the api's address, since ext_id is -1 (outside
 * libetpan) and ext_type is the kind. */
static struct mailimap_extension_api xrep_api = {
    .ext_name = ext_name,
    .ext_id = -1,
    .ext_parser = ext_parse,
    .ext_free = ext_free,
};

static int ext_parse(int calling_parser, mailstream *fd, MMAPString *buffer,
                     struct mailimap_parser_context *parser_ctx, size_t *indx,
                     struct mailimap_extension_data **result, size_t progr_rate,
                     progress_function *progr_fun)
{
    (void)parser_ctx;
    (void)progr_rate;
    (void)progr_fun;
    if (calling_parser != MAILIMAP_EXTENDED_PARSER_RESPONSE_DATA || *indx > buffer->len)
        return MAILIMAP_ERROR_PARSE;
    struct scan sc = {.s = buffer->str, .len = buffer->len, .pos = *indx};
    if (!keyword(&sc, "XREPLICATE") || !take(&sc, ' '))
        return MAILIMAP_ERROR_PARSE;
    struct tb_xrep *x = calloc(1, sizeof(*x));
    if (!x)
        return MAILIMAP_ERROR_MEMORY;
    /* The CRLF is libetpan's to consume, but it would also skip a space before it; the
     * grammar has none, so anything but the line end right here is trailing garbage. */
    bool ok = parse_data(&sc, x) &&
              (peek(&sc) == '\n' ||
               (peek(&sc) == '\r' && sc.pos + 1 < sc.len && sc.s[sc.pos + 1] == '\n'));
    if (!ok) {
        xrep_free(x);
        if (sc.nomem)
            return MAILIMAP_ERROR_MEMORY;
        return sc.more && fd == NULL ? MAILIMAP_ERROR_NEEDS_MORE_DATA : MAILIMAP_ERROR_PARSE;
    }
    struct mailimap_extension_data *d = mailimap_extension_data_new(&xrep_api, (int)x->kind, x);
    if (!d) {
        xrep_free(x);
        return MAILIMAP_ERROR_MEMORY;
    }
    *indx = sc.pos;
    *result = d;
    return MAILIMAP_NO_ERROR;
}

/* Called by mailimap_extension_data_free() (from mailimap_response_data_free(), i.e.
 * tb_resp_clear(), or libetpan's own error path): frees the wrapper too. */
static void ext_free(struct mailimap_extension_data *ext_data)
{
    if (!ext_data)
        return;
    if (ext_data->ext_data)
        xrep_free(ext_data->ext_data);
    free(ext_data);
}

static void xrep_register_once(void)
{
    mailimap_extension_register(&xrep_api);
}

void tb_xrep_register(void)
{
    /* libetpan has no way to ask what is registered, and a second entry would only run the
     * same parser twice; several threads may get here at once (migrate --jobs). */
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, xrep_register_once);
}

const struct tb_xrep *tb_xrep_of(const struct tb_resp *r)
{
    if (!r || r->kind != TB_RESP_UNTAGGED || !r->data ||
        r->data->rsp_type != MAILIMAP_RESP_DATA_TYPE_EXTENSION_DATA)
        return NULL;
    const struct mailimap_extension_data *e = r->data->rsp_data.rsp_extension_data;
    if (!e || e->ext_extension != &xrep_api)
        return NULL;
    return e->ext_data;
}

bool tb_xrep_unreadable(const struct tb_resp *r)
{
    if (r->kind != TB_RESP_UNTAGGED || tb_xrep_of(r))
        return false;
    char kw[16];
    tb_resp_untagged_keyword(r, kw, sizeof(kw));
    return strcmp(kw, "XREPLICATE") == 0;
}
