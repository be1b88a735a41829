#include "protocol/strict.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* What the next token must be. */
enum want {
    W_NONE,
    W_NUM32,     /* UID, size, count */
    W_NZ32,      /* UIDVALIDITY and the like: nz-number */
    W_NUM63,     /* mod-sequence-value */
    W_SET,       /* UID set */
    W_NZ32_SET,  /* APPENDUID: uidvalidity then a set */
    W_NZ32_SET2, /* COPYUID: uidvalidity then two sets */
    W_SET_SET,   /* the first of COPYUID's sets */
};

struct scan {
    const char *p;
    size_t len, i;
    enum want want;
    char *why;
    size_t whylen;
};

static bool is_delim(char c)
{
    return c == ' ' || c == '(' || c == ')' || c == '[' || c == ']' || c == '\r' || c == '\n';
}

static bool all_of(const char *t, size_t n, const char *chars)
{
    for (size_t i = 0; i < n; i++)
        if (!strchr(chars, t[i]))
            return false;
    return n > 0;
}

/* A decimal number within max; nz: not zero. */
static bool number_ok(const char *t, size_t n, uint64_t max, bool nz)
{
    if (n == 0 || n > 20)
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned d = (unsigned)(t[i] - '0');
        if (v > (max - d) / 10)
            return false;
        v = v * 10 + d;
    }
    return !nz || v > 0;
}

/* sequence-set of UIDs: every number 1..2^32-1 ('*' allowed: servers may echo it). */
static bool set_ok(const char *t, size_t n)
{
    size_t s = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && t[i] != ':' && t[i] != ',')
            continue;
        bool star = i - s == 1 && t[s] == '*';
        if (!star && !number_ok(t + s, i - s, UINT32_MAX, true))
            return false;
        s = i + 1;
    }
    return true;
}

static bool fail(struct scan *sc, const char *t, size_t n, const char *what)
{
    snprintf(sc->why, sc->whylen, "%s out of range: %.*s", what, (int)(n > 40 ? 40 : n), t);
    return false;
}

/* Checks a token against what the previous one announced; returns false on a bad value. */
static bool check(struct scan *sc, const char *t, size_t n)
{
    enum want w = sc->want;
    sc->want = W_NONE;
    switch (w) {
    case W_NONE:
        break;
    case W_NUM32:
    case W_NZ32:
    case W_NUM63:
        if (!all_of(t, n, "0123456789"))
            break; /* not a number at all: libetpan's grammar decides */
        if (!number_ok(t, n, w == W_NUM63 ? INT64_MAX : UINT32_MAX, w == W_NZ32))
            return fail(sc, t, n, w == W_NUM63 ? "MODSEQ" : "number");
        break;
    case W_SET:
    case W_SET_SET:
        if (n == 7 && strncasecmp(t, "EARLIER", 7) == 0) {
            sc->want = w; /* VANISHED (EARLIER) set */
            break;
        }
        if (!all_of(t, n, "0123456789:,*"))
            break;
        if (!set_ok(t, n))
            return fail(sc, t, n, "UID set");
        if (w == W_SET_SET)
            sc->want = W_SET;
        break;
    case W_NZ32_SET:
    case W_NZ32_SET2:
        if (!all_of(t, n, "0123456789"))
            break;
        if (!number_ok(t, n, UINT32_MAX, true))
            return fail(sc, t, n, "UIDVALIDITY");
        sc->want = w == W_NZ32_SET ? W_SET : W_SET_SET;
        break;
    }
    static const struct {
        const char *kw;
        enum want want;
    } kws[] = {
        {"UID", W_NZ32},           {"RFC822.SIZE", W_NUM32},   {"MESSAGES", W_NUM32},
        {"UIDNEXT", W_NZ32},       {"UIDVALIDITY", W_NZ32},    {"UNSEEN", W_NUM32},
        {"RECENT", W_NUM32},       {"HIGHESTMODSEQ", W_NUM63}, {"MODSEQ", W_NUM63},
        {"SIZE", W_NUM63},         {"VANISHED", W_SET},        {"MODIFIED", W_SET},
        {"APPENDUID", W_NZ32_SET}, {"COPYUID", W_NZ32_SET2},
    };
    for (size_t k = 0; k < sizeof(kws) / sizeof(*kws); k++)
        if (strlen(kws[k].kw) == n && strncasecmp(t, kws[k].kw, n) == 0)
            sc->want = kws[k].want;
    return true;
}

/* Scans tokens from sc->i up to `end`, skipping quoted strings and literals. */
static bool scan_tokens(struct scan *sc, size_t end)
{
    while (sc->i < end) {
        char c = sc->p[sc->i];
        if (c == '"') {
            for (sc->i++; sc->i < end && sc->p[sc->i] != '"'; sc->i++)
                if (sc->p[sc->i] == '\\')
                    sc->i++;
            sc->i++;
            sc->want = W_NONE;
            continue;
        }
        if (c == '{') {
            /* {n} or {n+} CRLF then n bytes: the framer has checked n and the bytes. */
            size_t j = sc->i + 1;
            uint64_t n = 0;
            while (j < end && sc->p[j] >= '0' && sc->p[j] <= '9' && n < (UINT64_MAX / 10))
                n = n * 10 + (uint64_t)(sc->p[j++] - '0');
            if (j < end && sc->p[j] == '+')
                j++;
            if (j < end && sc->p[j] == '}') {
                const char *nl = memchr(sc->p + j, '\n', end - j);
                if (nl) {
                    size_t body = (size_t)(nl - sc->p) + 1;
                    sc->i = n > end - body ? end : body + (size_t)n;
                    sc->want = W_NONE;
                    continue;
                }
            }
        }
        if (is_delim(c)) {
            sc->i++;
            continue;
        }
        size_t s = sc->i;
        while (sc->i < end && !is_delim(sc->p[sc->i]) && sc->p[sc->i] != '"')
            sc->i++;
        if (!check(sc, sc->p + s, sc->i - s))
            return false;
    }
    return true;
}

/* The next space-delimited word at sc->i (not consumed), upper-case compared. */
static bool word_is(const struct scan *sc, size_t at, const char *w)
{
    size_t n = strlen(w);
    return at + n <= sc->len && strncasecmp(sc->p + at, w, n) == 0 &&
           (at + n == sc->len || is_delim(sc->p[at + n]));
}

/* The end of the astring at `at` (atom, quoted string or literal). */
static size_t skip_astring(const char *p, size_t len, size_t at)
{
    if (at < len && p[at] == '"') {
        for (at++; at < len && p[at] != '"'; at++)
            if (p[at] == '\\')
                at++;
        return at + 1 < len ? at + 1 : len;
    }
    if (at < len && p[at] == '{') {
        uint64_t n = 0;
        size_t j = at + 1;
        while (j < len && p[j] >= '0' && p[j] <= '9' && n < UINT64_MAX / 10)
            n = n * 10 + (uint64_t)(p[j++] - '0');
        const char *nl = memchr(p + j, '\n', len - j);
        if (!nl)
            return len;
        size_t body = (size_t)(nl - p) + 1;
        return n > len - body ? len : body + (size_t)n;
    }
    while (at < len && !is_delim(p[at]))
        at++;
    return at;
}

/* resp-cond-*: only the code in brackets is structured; the rest is text for people. */
static bool scan_code(struct scan *sc, size_t at)
{
    if (at >= sc->len || sc->p[at] != '[')
        return true;
    const char *close = memchr(sc->p + at, ']', sc->len - at);
    if (!close)
        return true;
    sc->i = at + 1;
    return scan_tokens(sc, (size_t)(close - sc->p));
}

bool tb_numbers_ok(const char *p, size_t len, char *why, size_t whylen)
{
    struct scan sc = {.p = p, .len = len, .why = why, .whylen = whylen};
    size_t i = 0;
    if (len >= 2 && p[0] == '*' && p[1] == ' ') {
        i = 2;
        if (p[i] >= '0' && p[i] <= '9') {
            size_t s = i;
            while (i < len && p[i] >= '0' && p[i] <= '9')
                i++;
            if (!number_ok(p + s, i - s, UINT32_MAX, false)) {
                sc.want = W_NONE;
                return fail(&sc, p + s, i - s, "message number");
            }
            if (i < len && p[i] == ' ')
                i++;
            if (word_is(&sc, i, "FETCH")) {
                sc.i = i;
                return scan_tokens(&sc, len);
            }
            return true; /* EXISTS, EXPUNGE, RECENT: the number was all */
        }
        static const char *const cond[] = {"OK", "NO", "BAD", "BYE", "PREAUTH"};
        for (size_t k = 0; k < 5; k++)
            if (word_is(&sc, i, cond[k]))
                return scan_code(&sc, i + strlen(cond[k]) + 1);
        if (word_is(&sc, i, "SEARCH")) {
            /* UIDs (or message numbers) of a SEARCH: each a non-zero 32-bit number. */
            for (i += 7; i < len;) {
                size_t s = i;
                while (i < len && p[i] >= '0' && p[i] <= '9')
                    i++;
                if (i > s && !number_ok(p + s, i - s, UINT32_MAX, true))
                    return fail(&sc, p + s, i - s, "number");
                while (i < len && !(p[i] >= '0' && p[i] <= '9'))
                    i++;
            }
            return true;
        }
        if (word_is(&sc, i, "STATUS") || word_is(&sc, i, "VANISHED")) {
            if (word_is(&sc, i, "STATUS")) {
                /* Skip the mailbox name (an atom may be all digits). */
                sc.i = skip_astring(p, len, i + 7);
            } else {
                sc.i = i;
            }
            return scan_tokens(&sc, len);
        }
        return true;
    }
    if (len && p[0] == '+')
        return true;
    /* tagged: TAG SP (OK|NO|BAD) SP [code] text */
    const char *sp = memchr(p, ' ', len);
    if (!sp)
        return true;
    i = (size_t)(sp - p) + 1;
    static const char *const st[] = {"OK", "NO", "BAD"};
    for (size_t k = 0; k < 3; k++)
        if (word_is(&sc, i, st[k]))
            return scan_code(&sc, i + strlen(st[k]) + 1);
    return true;
}

/* ---- what libetpan 1.9.4 must not see ------------------------------------------------- */

static size_t skip_blanks(const char *p, size_t len, size_t i)
{
    while (i < len && (p[i] == ' ' || p[i] == '\t'))
        i++;
    return i;
}

static bool is_atom_char(char c)
{
    return c > 0x20 && c < 0x7f && !strchr("(){%*\"\\]", c);
}

/* ---- a FETCH's sections: libetpan 1.9.4 loses the section spec it built (40 bytes a
 * response) when what follows "BODY[" does not parse, found by tests/fuzz. So a FETCH goes
 * to libetpan only when each of its sections reads to its ']' (RFC 3501's section-spec,
 * header names as atoms or quoted strings). */

static bool at_word(const char *p, size_t len, size_t i, const char *w)
{
    size_t n = strlen(w);
    return i <= len && len - i >= n && strncasecmp(p + i, w, n) == 0;
}

/* header-fld-name at p[i] (an atom, or a quoted string): the index after it, 0 if none. */
static size_t fld_name(const char *p, size_t len, size_t i)
{
    size_t start = i;
    if (i < len && p[i] == '"') {
        for (i++; i < len; i++) {
            if (p[i] == '\\' && i + 1 < len && (p[i + 1] == '"' || p[i + 1] == '\\'))
                i++;
            else if (p[i] == '"')
                return i + 1;
            else if (p[i] == '\\' || p[i] == '\r' || p[i] == '\n' || (unsigned char)p[i] >= 0x80)
                return 0;
        }
        return 0;
    }
    while (i < len && is_atom_char(p[i]))
        i++;
    return i > start ? i : 0;
}

/* section-msgtext (or "MIME" after a part) at p[i]: the index after it, 0 if none. */
static size_t section_text(const char *p, size_t len, size_t i, bool after_part)
{
    if (at_word(p, len, i, "HEADER.FIELDS")) {
        i += 13;
        if (at_word(p, len, i, ".NOT"))
            i += 4;
        if (!at_word(p, len, i, " ("))
            return 0;
        for (i += 2;; i++) {
            i = fld_name(p, len, i);
            if (!i || i >= len)
                return 0;
            if (p[i] == ')')
                return i + 1;
            if (p[i] != ' ')
                return 0;
        }
    }
    if (at_word(p, len, i, "HEADER"))
        return i + 6;
    if (at_word(p, len, i, "TEXT"))
        return i + 4;
    return after_part && at_word(p, len, i, "MIME") ? i + 4 : 0;
}

/* p[i] follows a '[': true when a section-spec (possibly empty) and its ']' follow. */
static bool section_ok(const char *p, size_t len, size_t i)
{
    bool part = false, dot = false;
    while (i < len && p[i] >= '1' && p[i] <= '9') { /* section-part: nz-number *("." ...) */
        size_t d = i;
        while (i < len && p[i] >= '0' && p[i] <= '9')
            i++;
        if (i - d > 10)
            return false;
        part = true;
        dot = i < len && p[i] == '.';
        if (!dot)
            break;
        i++;
    }
    if (dot || (!part && i < len && p[i] != ']'))
        i = section_text(p, len, i, part);
    return i && i < len && p[i] == ']';
}

/* A '[' at p[i] that opens a FETCH item's section: after BODY, BINARY or BINARY.SIZE, with
 * any blanks between (libetpan skips them: "BODY\t\t[", found by tests/fuzz). */
static bool opens_section(const char *p, size_t i)
{
    size_t end = i;
    while (end > 0 && (p[end - 1] == ' ' || p[end - 1] == '\t'))
        end--;
    size_t k = end;
    while (k > 0 && p[k - 1] != ' ' && p[k - 1] != '\t' && p[k - 1] != '(')
        k--;
    static const char *const items[] = {"BODY", "BINARY", "BINARY.SIZE", "BODY.PEEK"};
    for (size_t n = 0; n < sizeof(items) / sizeof(items[0]); n++)
        if (end - k == strlen(items[n]) && strncasecmp(p + k, items[n], end - k) == 0)
            return true;
    return false;
}

/* Scans p[0..len) for what libetpan must not see: a quoted string left open, or a literal
 * marker "{n}" that is not at the end of its line (libetpan allocates n bytes before it
 * looks at what follows: "{99999999999}x" cost a 4 GiB allocation, found by tests/fuzz),
 * and in a FETCH (fetch) a section that does not read (section_ok). Literals are skipped;
 * *brackets gets the '[' minus ']' count outside strings. NULL when fine, else the
 * reason. */
static const char *scan_strings(const char *p, size_t len, bool fetch, long *brackets)
{
    bool quoted = false;
    *brackets = 0;
    for (size_t i = 0; i < len; i++) {
        if (quoted) {
            if (p[i] == '\\')
                i++;
            else if (p[i] == '"')
                quoted = false;
        } else if (p[i] == '"') {
            quoted = true;
        } else if (p[i] == '[' || p[i] == ']') {
            *brackets += p[i] == '[' ? 1 : -1;
            if (fetch && p[i] == '[' && opens_section(p, i) && !section_ok(p, len, i + 1))
                return "a FETCH section that does not read";
        } else if (p[i] == '{') {
            /* libetpan reads "{ 12 + }" as a literal marker too: blanks are skipped. */
            size_t j = skip_blanks(p, len, i + 1), d = j;
            uint64_t n = 0;
            for (; j < len && p[j] >= '0' && p[j] <= '9'; j++)
                if (n < ((uint64_t)1 << 40)) /* saturates: any larger is too large */
                    n = n * 10 + (uint64_t)(p[j] - '0');
            if (j == d)
                continue; /* no digits: not a literal */
            j = skip_blanks(p, len, j);
            if (j < len && p[j] == '+')
                j = skip_blanks(p, len, j + 1);
            if (j >= len || p[j] != '}')
                continue;
            j++;
            if (j < len && p[j] == '\r')
                j++;
            if (j >= len || p[j] != '\n')
                return "a literal marker inside a line";
            if (n > len - j - 1)
                return "a literal longer than the response";
            i = j + (size_t)n; /* the loop's i++ steps past the last literal byte */
        }
    }
    return quoted ? "quoted string not closed" : NULL;
}

/* "(" [flag *(SP flag)] ")", flag = "\\*" / ["\\"] atom. */
static bool strict_flag_list(const char *p, size_t len, size_t i)
{
    if (i >= len || p[i++] != '(')
        return false;
    if (i < len && p[i] == ')')
        return true;
    for (;;) {
        if (i + 1 < len && p[i] == '\\' && p[i + 1] == '*') {
            i += 2;
        } else {
            if (i < len && p[i] == '\\')
                i++;
            size_t start = i;
            while (i < len && is_atom_char(p[i]))
                i++;
            if (i == start)
                return false;
        }
        if (i < len && p[i] == ')')
            return true;
        if (i >= len || p[i++] != ' ')
            return false;
    }
}

static bool permanentflags_ok(const char *p, size_t len)
{
    for (size_t i = 0; i + 14 <= len; i++) {
        if (strncasecmp(p + i, "PERMANENTFLAGS", 14) != 0)
            continue;
        size_t j = i + 14;
        while (j < len && (p[j] == ' ' || p[j] == '\t'))
            j++; /* libetpan takes tabs for the space too (found by tests/fuzz) */
        if (j < len && p[j] == '(' && !strict_flag_list(p, len, j))
            return false;
    }
    return true;
}

/* For a status response (tagged, untagged OK/NO/BAD/BYE/PREAUTH, greeting): the span of
 * its response code inside the brackets, or an empty span. false: not a status response. */
bool tb_code_span(const char *p, size_t len, size_t *start, size_t *end)
{
    size_t i;
    if (len >= 2 && p[0] == '*' && p[1] == ' ') {
        i = 2;
    } else {
        const char *sp = memchr(p, ' ', len);
        if (!sp || p[0] == '+')
            return false;
        i = (size_t)(sp - p) + 1;
    }
    while (i < len && (p[i] == ' ' || p[i] == '\t'))
        i++; /* libetpan takes "tag  OK" too (found by tests/fuzz) */
    static const char *const cond[] = {"OK ", "NO ", "BAD ", "BYE ", "PREAUTH "};
    for (size_t k = 0; k < 5; k++) {
        size_t n = strlen(cond[k]);
        if (i + n > len || strncasecmp(p + i, cond[k], n) != 0)
            continue;
        i += n;
        while (i < len && (p[i] == ' ' || p[i] == '\t'))
            i++; /* libetpan skips blanks here too ("* OK  [CODE]", found by tests/fuzz) */
        *start = *end = i;
        if (i < len && p[i] == '[') {
            const char *close = memchr(p + i, ']', len - i);
            *start = i + 1;
            *end = close ? (size_t)(close - p) : len;
        }
        return true;
    }
    return false;
}

/* "* n FETCH ..." */
static bool is_fetch(const char *p, size_t len)
{
    size_t i = 2;
    if (len < 4 || p[0] != '*' || p[1] != ' ' || p[2] < '0' || p[2] > '9')
        return false;
    while (i < len && p[i] >= '0' && p[i] <= '9')
        i++;
    return i + 6 <= len && strncasecmp(p + i, " FETCH", 6) == 0;
}

bool tb_etpan_safe(const char *p, size_t len, char *why, size_t whylen)
{
    size_t s = 0, e = len;
    bool status = tb_code_span(p, len, &s, &e);
    if (status && e < len && p[e] != ']' && s < e) {
        snprintf(why, whylen, "response code without ']'");
        return false;
    }
    long brackets;
    bool fetch = !status && is_fetch(p, len);
    const char *bad = scan_strings(p + s, e - s, fetch, &brackets);
    if (bad) {
        snprintf(why, whylen, "%s", bad);
        return false;
    }
    /* A FETCH's "BODY[section" without its ']' makes libetpan lose what it built. Only
     * FETCH: elsewhere (a mailbox name, a position token) an atom may hold a ']'. */
    if (fetch && brackets != 0) {
        snprintf(why, whylen, "unbalanced brackets");
        return false;
    }
    /* Anywhere in the response: however it is spaced, libetpan may take it for the code. */
    if (!permanentflags_ok(p, len)) {
        snprintf(why, whylen, "malformed PERMANENTFLAGS");
        return false;
    }
    return true;
}
