#include "protocol/mboxname.h"

#include "util/buf.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

char *tb_mboxname_unwire(const char *raw)
{
    if (raw[0] == '"') {
        struct tb_buf b;
        tb_buf_init(&b);
        for (const char *q = raw + 1; *q && *q != '"'; q++) {
            if (*q == '\\' && q[1])
                q++;
            tb_buf_append(&b, q, 1);
        }
        char *s = tb_xstrdup(tb_buf_cstr(&b));
        tb_buf_free(&b);
        return s;
    }
    if (raw[0] == '{') {
        char *end;
        unsigned long n = strtoul(raw + 1, &end, 10);
        if (*end == '+')
            end++;
        if (end[0] == '}' && end[1] == '\r' && end[2] == '\n' && strlen(end + 3) >= n)
            return tb_xstrndup(end + 3, n);
    }
    return tb_xstrdup(raw);
}

static bool starts_with(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* Whether wire lies in another user's or a shared namespace. */
static bool in_other_ns(const struct tb_ns *ns, const char *wire)
{
    for (const char *p = ns->others; p && *p;) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        if (n && strncmp(wire, p, n) == 0)
            return true;
        p = nl ? nl + 1 : p + n;
    }
    return false;
}

char *tb_mbox_canon(const struct tb_ns *ns, const char *wire, const char **why)
{
    const char *dummy;
    if (!why)
        why = &dummy;
    if (strcasecmp(wire, "INBOX") == 0)
        return tb_xstrdup("INBOX");
    const char *prefix = ns->prefix ? ns->prefix : "";
    if (in_other_ns(ns, wire) && !(prefix[0] && starts_with(wire, prefix))) {
        *why = "in another user's or a shared namespace";
        return NULL;
    }
    if (prefix[0] && !starts_with(wire, prefix)) {
        *why = "outside the personal namespace";
        return NULL;
    }
    const char *rest = wire + strlen(prefix);
    if (!rest[0]) {
        *why = "the namespace prefix itself";
        return NULL;
    }
    if (ns->sep != '/' && strchr(rest, '/')) {
        *why = "a level of its name holds '/', the canonical separator";
        return NULL;
    }
    if (prefix[0] && strcasecmp(rest, "INBOX") == 0) {
        *why = "named INBOX below the namespace prefix";
        return NULL;
    }
    char *c = tb_xstrdup(rest);
    if (ns->sep && ns->sep != '/')
        for (char *q = c; *q; q++)
            if (*q == ns->sep)
                *q = '/';
    return c;
}

char *tb_mbox_wire(const struct tb_ns *ns, const char *canon, const char **why)
{
    const char *dummy;
    if (!why)
        why = &dummy;
    if (strcasecmp(canon, "INBOX") == 0)
        return tb_xstrdup("INBOX");
    if (!ns->sep && strchr(canon, '/')) {
        *why = "that server has no hierarchy";
        return NULL;
    }
    if (ns->sep && ns->sep != '/' && strchr(canon, ns->sep)) {
        *why = "a level of its name holds that server's hierarchy separator";
        return NULL;
    }
    const char *prefix = ns->prefix ? ns->prefix : "";
    size_t pl = strlen(prefix), cl = strlen(canon);
    char *w = tb_xmalloc(pl + cl + 1);
    memcpy(w, prefix, pl);
    memcpy(w + pl, canon, cl + 1);
    if (ns->sep && ns->sep != '/')
        for (char *q = w + pl; *q; q++)
            if (*q == '/')
                *q = ns->sep;
    return w;
}
