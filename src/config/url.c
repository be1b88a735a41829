/* Accounts given on the command line as URLs: imap://, imaps:// and tunnel:.
 *
 * A URL is typed into shells and ends up in ps output and shell history, so a password in
 * it is refused outright; the password comes from TWINBOX_PASSWORD (or a query key naming
 * a file or command) instead. Error messages never echo the user-info part of a URL until
 * it is known to hold no password. Query keys go through the same setter and validator as
 * the INI file (config_internal.h), so they mean exactly the same. */
#include "config/config_internal.h"
#include "util/buf.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int tb_config_fail(char *err, size_t errlen, const char *who, const char *fmt, ...)
{
    if (!err || !errlen)
        return -1;
    int off = snprintf(err, errlen, "%s: ", who);
    if (off >= 0 && (size_t)off < errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err + off, errlen - (size_t)off, fmt, ap);
        va_end(ap);
    }
    return -1;
}

#define fail tb_config_fail

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (char)tolower((unsigned char)c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Percent-decodes S[0..N). NULL on a malformed escape or an encoded NUL. '+' stays '+'
 * (this is not form encoding: '+' is common in paths and commands). */
static char *pct_decode(const char *s, size_t n)
{
    char *out = tb_xmalloc(n + 1), *o = out;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '%') {
            *o++ = s[i];
            continue;
        }
        int hi = i + 2 < n ? hexval(s[i + 1]) : -1;
        int lo = hi >= 0 ? hexval(s[i + 2]) : -1;
        if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
            free(out);
            return NULL;
        }
        *o++ = (char)(hi * 16 + lo);
        i += 2;
    }
    *o = '\0';
    return out;
}

static bool valid_hostname(const char *h, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!(isalnum((unsigned char)h[i]) || h[i] == '-' || h[i] == '.' || h[i] == '_'))
            return false;
    return true;
}

static bool valid_ipv6(const char *h, size_t n)
{
    if (n < 2 || !memchr(h, ':', n))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!(isxdigit((unsigned char)h[i]) || h[i] == ':' || h[i] == '.'))
            return false;
    return true;
}

static int tunnel_account(const char *url, struct tb_account **out, char *err, size_t errlen)
{
    const char *cmd = url + 7;
    while (*cmd == ' ' || *cmd == '\t')
        cmd++;
    if (!*cmd)
        return fail(err, errlen, "URL", "tunnel: needs a command (tunnel:COMMAND)");
    struct tb_account *a = tb_account_new();
    a->type = TB_ACCOUNT_TUNNEL;
    a->command = tb_xstrdup(cmd);
    a->name = tb_xstrdup(url);
    a->source = tb_xstrdup("URL");
    *out = a;
    return 0;
}

/* Applies the query (without the '?'). */
static int apply_query(struct tb_account *a, bool set[TB_K_COUNT], const char *q, char *err,
                       size_t errlen)
{
    while (*q) {
        size_t len = strcspn(q, "&");
        const char *eq = memchr(q, '=', len);
        if (len == 0) { /* "a=1&&b=2" or a trailing '&' */
            q++;
            continue;
        }
        if (!eq)
            return fail(err, errlen, a->name, "query item without '=': expected KEY=VALUE");
        char *key = pct_decode(q, (size_t)(eq - q));
        char *val = pct_decode(eq + 1, len - (size_t)(eq - q) - 1);
        int rc = 0;
        int k = key ? tb_account_key(key) : -1;
        char why[256];
        if (!key || !val)
            rc = fail(err, errlen, a->name, "bad percent-encoding in the query");
        else if (k < 0)
            rc = fail(err, errlen, a->name, "unknown key '%.64s'", key);
        else if (k == TB_K_PASSWORD)
            rc = fail(err, errlen, a->name,
                      "a password in the URL is refused (it would show in ps and shell "
                      "history): set TWINBOX_PASSWORD instead");
        else if (k == TB_K_TYPE || k == TB_K_HOST || k == TB_K_PORT || k == TB_K_USER)
            rc = fail(err, errlen, a->name, "'%s' is part of the URL, not a query key", key);
        else if (set[k])
            rc = fail(err, errlen, a->name, "duplicate key '%s'", key);
        else if (tb_account_set(a, k, val, why, sizeof(why)) < 0)
            rc = fail(err, errlen, a->name, "%s", why);
        else
            set[k] = true;
        free(key);
        free(val);
        if (rc < 0)
            return -1;
        q += len;
        if (*q == '&')
            q++;
    }
    return 0;
}

/* Parses HOST[:PORT] or [IPV6][:PORT] from S[0..N) into A. */
static int parse_hostport(struct tb_account *a, bool set[TB_K_COUNT], const char *s, size_t n,
                          char *err, size_t errlen)
{
    const char *host = s, *colon;
    size_t hlen;
    if (n && s[0] == '[') {
        const char *close = memchr(s, ']', n);
        if (!close || !valid_ipv6(s + 1, (size_t)(close - s - 1)))
            return fail(err, errlen, a->name, "bad IPv6 address (expected [ADDRESS])");
        host = s + 1;
        hlen = (size_t)(close - s - 1);
        colon = close + 1;
        if (colon < s + n && *colon != ':')
            return fail(err, errlen, a->name, "unexpected text after ']'");
        if (colon == s + n)
            colon = NULL;
    } else {
        colon = memchr(s, ':', n);
        hlen = colon ? (size_t)(colon - s) : n;
        if (!valid_hostname(s, hlen))
            return fail(err, errlen, a->name, "bad or missing host name");
    }
    a->host = tb_xstrndup(host, hlen);
    set[TB_K_HOST] = true;
    if (colon) {
        char *port = tb_xstrndup(colon + 1, (size_t)(s + n - colon - 1));
        char why[256];
        int rc = tb_account_set(a, TB_K_PORT, port, why, sizeof(why));
        free(port);
        if (rc < 0)
            return fail(err, errlen, a->name, "%s", why);
        set[TB_K_PORT] = true;
    }
    return 0;
}

int tb_account_from_url(const char *url, struct tb_account **out, char *err, size_t errlen)
{
    *out = NULL;
    if (err && errlen)
        err[0] = '\0';
    if (strncasecmp(url, "tunnel:", 7) == 0)
        return tunnel_account(url, out, err, errlen);
    enum tb_account_type type;
    size_t skip;
    if (strncasecmp(url, "imap://", 7) == 0) {
        type = TB_ACCOUNT_IMAP;
        skip = 7;
    } else if (strncasecmp(url, "imaps://", 8) == 0) {
        type = TB_ACCOUNT_IMAPS;
        skip = 8;
    } else {
        return fail(err, errlen, "URL",
                    "unsupported scheme (expected imap://, imaps:// or "
                    "tunnel:)");
    }
    const char *rest = url + skip;
    const char *query = strchr(rest, '?');
    size_t hier = query ? (size_t)(query - rest) : strlen(rest);
    /* The user-info ends at the last '@' of the whole part before the query, so a stray
     * '/' or '@' inside a password cannot make us mistake it for host or path. */
    const char *at = NULL;
    for (size_t i = 0; i < hier; i++)
        if (rest[i] == '@')
            at = rest + i;
    if (at && memchr(rest, ':', (size_t)(at - rest)))
        return fail(err, errlen, "URL",
                    "contains a password (USER:PASSWORD@): remove it and set TWINBOX_PASSWORD "
                    "instead");
    if (!at)
        return fail(err, errlen, "URL", "needs a user (%s://USER@HOST)",
                    type == TB_ACCOUNT_IMAP ? "imap" : "imaps");
    const char *hp = at + 1;
    size_t hplen = strcspn(hp, "/?#");
    const char *path = hp + hplen;
    size_t pathlen = (size_t)(rest + hier - path);

    struct tb_account *a = tb_account_new();
    a->type = type;
    a->name = tb_xstrndup(url, (size_t)(path - url));
    a->source = tb_xstrdup("URL");
    bool set[TB_K_COUNT] = {[TB_K_TYPE] = true, [TB_K_USER] = true};
    char why[256];
    int bad;
    if (!(pathlen == 0 || (pathlen == 1 && *path == '/'))) {
        /* The path only: what follows it is the query, which may hold a secret. */
        fail(err, errlen, a->name,
             "unexpected path or fragment '%.*s' (expected nothing or "
             "'/' before '?')",
             (int)(pathlen > 64 ? 64 : pathlen), path);
        goto bad;
    }
    a->user = pct_decode(rest, (size_t)(at - rest));
    if (!a->user || !a->user[0]) {
        fail(err, errlen, a->name, "bad percent-encoding in the user, or empty user");
        goto bad;
    }
    if (parse_hostport(a, set, hp, hplen, err, errlen) < 0)
        goto bad;
    if (query && apply_query(a, set, query + 1, err, errlen) < 0)
        goto bad;
    if (!a->password_file && !a->password_command && !a->password_env)
        a->password_env = tb_xstrdup("TWINBOX_PASSWORD");
    if (tb_account_check(a, set, &bad, why, sizeof(why)) < 0) {
        fail(err, errlen, a->name, "%s", why);
        goto bad;
    }
    *out = a;
    return 0;
bad:
    tb_account_free(a);
    return -1;
}
