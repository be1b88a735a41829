#include "util/mutf7.h"

#include "util/buf.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

static int b64_value(char c)
{
    const char *p = c ? strchr(b64, c) : NULL;
    return p ? (int)(p - b64) : -1;
}

static void put_utf8(struct tb_buf *out, uint32_t cp)
{
    char s[4];
    size_t n;
    if (cp < 0x80) {
        s[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        s[0] = (char)(0xc0 | (cp >> 6));
        s[1] = (char)(0x80 | (cp & 0x3f));
        n = 2;
    } else if (cp < 0x10000) {
        s[0] = (char)(0xe0 | (cp >> 12));
        s[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        s[2] = (char)(0x80 | (cp & 0x3f));
        n = 3;
    } else {
        s[0] = (char)(0xf0 | (cp >> 18));
        s[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
        s[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
        s[3] = (char)(0x80 | (cp & 0x3f));
        n = 4;
    }
    tb_buf_append(out, s, n);
}

/* One "&...-" run (p after '&', end at '-'): UTF-16 from base64; false when malformed. */
static bool decode_run(const char *p, const char *end, struct tb_buf *out)
{
    uint32_t bits = 0, nbits = 0, high = 0;
    bool any = false;
    for (; p < end; p++) {
        int v = b64_value(*p);
        if (v < 0)
            return false;
        bits = (bits << 6) | (uint32_t)v;
        nbits += 6;
        if (nbits < 16)
            continue;
        nbits -= 16;
        uint32_t u = (bits >> nbits) & 0xffff;
        any = true;
        if (u >= 0xd800 && u < 0xdc00) {
            if (high)
                return false;
            high = u;
        } else if (u >= 0xdc00 && u < 0xe000) {
            if (!high)
                return false;
            put_utf8(out, 0x10000 + ((high - 0xd800) << 10) + (u - 0xdc00));
            high = 0;
        } else {
            if (high || (u >= 0x20 && u < 0x7f))
                return false; /* printable ASCII must not be encoded */
            put_utf8(out, u);
        }
    }
    /* leftover bits must be zero padding */
    return any && !high && nbits < 6 && (bits & ((1u << nbits) - 1)) == 0;
}

char *tb_mutf7_to_utf8(const char *name)
{
    struct tb_buf out;
    tb_buf_init(&out);
    for (const char *p = name; *p;) {
        if (*p != '&') {
            tb_buf_append(&out, p++, 1);
            continue;
        }
        const char *end = strchr(p + 1, '-');
        if (!end)
            goto bad;
        if (end == p + 1)
            tb_buf_puts(&out, "&");
        else if (!decode_run(p + 1, end, &out))
            goto bad;
        p = end + 1;
    }
    char *r = tb_xstrdup(tb_buf_cstr(&out));
    tb_buf_free(&out);
    return r;
bad:
    tb_buf_free(&out);
    return tb_xstrdup(name);
}

/* The next code point of UTF-8 at *p, advancing; -1 when malformed. */
static long next_cp(const unsigned char **p)
{
    const unsigned char *s = *p;
    uint32_t cp;
    int n;
    if (s[0] < 0x80) {
        cp = s[0];
        n = 0;
    } else if ((s[0] & 0xe0) == 0xc0) {
        cp = s[0] & 0x1f;
        n = 1;
    } else if ((s[0] & 0xf0) == 0xe0) {
        cp = s[0] & 0x0f;
        n = 2;
    } else if ((s[0] & 0xf8) == 0xf0) {
        cp = s[0] & 0x07;
        n = 3;
    } else {
        return -1;
    }
    for (int i = 1; i <= n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return -1;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    static const uint32_t min[] = {0, 0x80, 0x800, 0x10000};
    if (cp < min[n] || cp > 0x10ffff || (cp >= 0xd800 && cp < 0xe000))
        return -1;
    *p = s + n + 1;
    return (long)cp;
}

static void flush_b64(struct tb_buf *out, uint32_t *bits, int *nbits)
{
    while (*nbits >= 6) {
        *nbits -= 6;
        tb_buf_append(out, &b64[(*bits >> *nbits) & 0x3f], 1);
    }
}

char *tb_utf8_to_mutf7(const char *name)
{
    struct tb_buf out;
    tb_buf_init(&out);
    const unsigned char *p = (const unsigned char *)name;
    bool in = false;
    uint32_t bits = 0;
    int nbits = 0;
    while (*p) {
        long cp = next_cp(&p);
        if (cp < 0) {
            tb_buf_free(&out);
            return NULL;
        }
        bool plain = cp >= 0x20 && cp < 0x7f;
        if (plain && in) {
            if (nbits)
                tb_buf_append(&out, &b64[(bits << (6 - nbits)) & 0x3f], 1);
            tb_buf_puts(&out, "-");
            in = false;
            bits = 0;
            nbits = 0;
        }
        if (plain) {
            tb_buf_puts(&out, cp == '&' ? "&-" : (char[]){(char)cp, 0});
            continue;
        }
        if (!in) {
            tb_buf_puts(&out, "&");
            in = true;
        }
        uint32_t units[2] = {(uint32_t)cp, 0};
        int nu = 1;
        if (cp >= 0x10000) {
            units[0] = 0xd800 + (((uint32_t)cp - 0x10000) >> 10);
            units[1] = 0xdc00 + (((uint32_t)cp - 0x10000) & 0x3ff);
            nu = 2;
        }
        for (int i = 0; i < nu; i++) {
            bits = (bits << 16) | units[i];
            nbits += 16;
            flush_b64(&out, &bits, &nbits);
        }
    }
    if (in) {
        if (nbits)
            tb_buf_append(&out, &b64[(bits << (6 - nbits)) & 0x3f], 1);
        tb_buf_puts(&out, "-");
    }
    char *r = tb_xstrdup(tb_buf_cstr(&out));
    tb_buf_free(&out);
    return r;
}

const char *tb_mutf7_show(const char *name, char *buf, size_t len)
{
    char *u = tb_mutf7_to_utf8(name ? name : "");
    snprintf(buf, len, "%s", u);
    free(u);
    return buf;
}
