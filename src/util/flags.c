#include "util/flags.h"

#include "util/buf.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct set {
    char **v;
    size_t n;
};

static const char *system_flags[] = {"\\Answered", "\\Deleted", "\\Draft", "\\Flagged", "\\Seen"};

static int cmp(const void *a, const void *b)
{
    return strcasecmp(*(char *const *)a, *(char *const *)b);
}

static bool has(const struct set *s, const char *f)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcasecmp(s->v[i], f) == 0)
            return true;
    return false;
}

static void add(struct set *s, const char *f, size_t len)
{
    char *tok = tb_xstrndup(f, len);
    if (tok[0] == '\\') {
        if (strcasecmp(tok, "\\Recent") == 0 || strcmp(tok, "\\*") == 0) {
            free(tok);
            return;
        }
        for (size_t i = 0; i < sizeof(system_flags) / sizeof(*system_flags); i++)
            if (strcasecmp(tok, system_flags[i]) == 0)
                memcpy(tok, system_flags[i], len);
    }
    if (has(s, tok)) {
        free(tok);
        return;
    }
    s->v = tb_xrealloc(s->v, (s->n + 1) * sizeof(*s->v));
    s->v[s->n++] = tok;
}

static struct set parse(const char *list)
{
    struct set s = {NULL, 0};
    const char *p = list ? list : "";
    while (*p) {
        while (*p == ' ' || *p == '(' || *p == ')')
            p++;
        const char *q = p;
        while (*q && *q != ' ' && *q != '(' && *q != ')')
            q++;
        if (q > p)
            add(&s, p, (size_t)(q - p));
        p = q;
    }
    return s;
}

static char *join(struct set *s)
{
    if (s->n > 1)
        qsort(s->v, s->n, sizeof(*s->v), cmp);
    struct tb_buf b;
    tb_buf_init(&b);
    for (size_t i = 0; i < s->n; i++) {
        if (i)
            tb_buf_puts(&b, " ");
        tb_buf_puts(&b, s->v[i]);
    }
    char *r = tb_xstrdup(b.data ? tb_buf_cstr(&b) : "");
    tb_buf_free(&b);
    return r;
}

static void drop(struct set *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->v[i]);
    free(s->v);
}

char *tb_flags_canon(const char *list)
{
    struct set s = parse(list);
    char *r = join(&s);
    drop(&s);
    return r;
}

char *tb_flags_merge(const char *base, const char *a, const char *b)
{
    struct set sb = parse(base), sa = parse(a), sx = parse(b), out = {NULL, 0};
    /* Kept: in base and removed by neither side. */
    for (size_t i = 0; i < sb.n; i++)
        if (has(&sa, sb.v[i]) && has(&sx, sb.v[i]))
            add(&out, sb.v[i], strlen(sb.v[i]));
    /* Added by either side (not in base): wins over the other side's removal. */
    for (size_t i = 0; i < sa.n; i++)
        if (!has(&sb, sa.v[i]))
            add(&out, sa.v[i], strlen(sa.v[i]));
    for (size_t i = 0; i < sx.n; i++)
        if (!has(&sb, sx.v[i]))
            add(&out, sx.v[i], strlen(sx.v[i]));
    char *r = join(&out);
    drop(&sb);
    drop(&sa);
    drop(&sx);
    drop(&out);
    return r;
}

bool tb_flags_equal(const char *x, const char *y)
{
    char *cx = tb_flags_canon(x), *cy = tb_flags_canon(y);
    bool eq = strcasecmp(cx, cy) == 0;
    free(cx);
    free(cy);
    return eq;
}

char *tb_flags_minus(const char *x, const char *y)
{
    struct set sx = parse(x), sy = parse(y), out = {NULL, 0};
    for (size_t i = 0; i < sx.n; i++)
        if (!has(&sy, sx.v[i]))
            add(&out, sx.v[i], strlen(sx.v[i]));
    char *r = join(&out);
    drop(&sx);
    drop(&sy);
    drop(&out);
    return r;
}

char *tb_flags_union(const char *x, const char *y)
{
    struct set sx = parse(x), sy = parse(y);
    for (size_t i = 0; i < sy.n; i++)
        if (!has(&sx, sy.v[i]))
            add(&sx, sy.v[i], strlen(sy.v[i]));
    char *r = join(&sx);
    drop(&sx);
    drop(&sy);
    return r;
}

/* A system flag is storable when PERMANENTFLAGS lists it; a keyword when it lists "\*" or
 * the keyword itself (RFC 3501 7.1). */
char *tb_flags_storable(const char *flags, const char *perm, bool keywords, bool *dropped)
{
    struct set sf = parse(flags), sp = parse(perm), out = {NULL, 0};
    for (size_t i = 0; i < sf.n; i++) {
        bool ok = has(&sp, sf.v[i]) || (sf.v[i][0] != '\\' && keywords);
        if (ok)
            add(&out, sf.v[i], strlen(sf.v[i]));
        else if (dropped)
            *dropped = true;
    }
    char *r = join(&out);
    drop(&sf);
    drop(&sp);
    drop(&out);
    return r;
}
