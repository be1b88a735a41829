/* A migration's folder mapping: the destination name of each source mailbox (see struct
 * tb_sync_map), and the way back for a source mailbox the listing no longer shows. Only
 * explicit rules (--map, --into) can be undone; a name that came from the special-use
 * mapping or --rename cannot, so such a mailbox is never judged gone on the source (and so
 * never deleted on the destination) by its name. */
#include "sync/engine_internal.h"

#include "sync/names.h"
#include "util/buf.h"

#include <regex.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Well-known names of the special-use folders, as servers without SPECIAL-USE and mail
 * clients in several languages create them (compared case-insensitively). */
static const struct {
    const char *use;
    const char *names[16];
} known[] = {
    {"\\Sent",
     {"Sent", "Sent Items", "Sent Messages", "Sent Mail", "INBOX/Sent", "Gesendet",
      "Gesendete Elemente", "Envoyés", "Enviados", "Inviati", "Verzonden", "Skickat", NULL}},
    {"\\Drafts",
     {"Drafts", "Draft", "INBOX/Drafts", "Entwürfe", "Brouillons", "Borradores", "Bozze",
      "Concepten", "Utkast", NULL}},
    {"\\Trash",
     {"Trash", "Deleted Items", "Deleted Messages", "Bin", "INBOX/Trash", "Papierkorb",
      "Gelöschte Elemente", "Corbeille", "Papelera", "Cestino", "Prullenbak", NULL}},
    {"\\Junk",
     {"Junk", "Spam", "Junk E-mail", "Junk Email", "Bulk Mail", "INBOX/Junk", "INBOX/Spam",
      "Courrier indésirable", "Correo no deseado", "Posta indesiderata", NULL}},
    {"\\Archive", {"Archive", "Archives", "INBOX/Archive", "Archiv", NULL}},
};

/* The use a name is known for, or NULL. Names are in modified UTF-7 on the wire; the
 * accented ones above match only servers that send them in UTF-8 (UTF8=ACCEPT). */
static const char *use_of_name(const char *canon)
{
    for (size_t i = 0; i < sizeof(known) / sizeof(*known); i++)
        for (size_t j = 0; known[i].names[j]; j++)
            if (strcasecmp(canon, known[i].names[j]) == 0)
                return known[i].use;
    return NULL;
}

/* The destination's mailbox for a special use: by attribute, else by a well-known name. */
static char *dst_of_use(struct ctx *x, const char *use)
{
    int d = 1 - x->mode->source;
    struct tb_store *s = &x->s[d];
    const char *by_name = NULL;
    for (int pass = 0; pass < 2; pass++)
        for (size_t i = 0; i < s->n_boxes; i++) {
            const struct tb_mbox_info *b = &s->boxes[i];
            if (b->noselect)
                continue;
            char *c = tb_mbox_canon(tb_store_ns(s), b->name, NULL);
            if (!c)
                continue;
            bool hit = pass == 0 ? b->special_use && strcasecmp(b->special_use, use) == 0
                                 : (by_name = use_of_name(c)) && strcmp(by_name, use) == 0;
            if (hit)
                return c;
            free(c);
        }
    return NULL;
}

/* "FROM" itself or below it: the part after FROM ("" or "/rest"), else NULL. */
static const char *under(const char *name, const char *from)
{
    size_t l = strlen(from);
    if (strncmp(name, from, l) != 0 || (name[l] && name[l] != '/'))
        return NULL;
    return name + l;
}

static char *join(const char *a, const char *b)
{
    struct tb_buf buf;
    tb_buf_init(&buf);
    tb_buf_printf(&buf, "%s%s", a, b);
    char *r = tb_xstrdup(tb_buf_cstr(&buf));
    tb_buf_free(&buf);
    return r;
}

/* s/RE/TO/ once, with \1..\9; NULL when the expression does not match or is invalid. */
static char *rename_re(const char *re, const char *to, const char *name)
{
    regex_t rx;
    if (regcomp(&rx, re, REG_EXTENDED) != 0)
        return NULL;
    regmatch_t m[10];
    char *out = NULL;
    if (regexec(&rx, name, 10, m, 0) == 0) {
        struct tb_buf b;
        tb_buf_init(&b);
        tb_buf_append(&b, name, (size_t)m[0].rm_so);
        for (const char *p = to; *p; p++) {
            if (p[0] == '\\' && p[1] >= '0' && p[1] <= '9') {
                int g = p[1] - '0';
                if (m[g].rm_so >= 0)
                    tb_buf_append(&b, name + m[g].rm_so, (size_t)(m[g].rm_eo - m[g].rm_so));
                p++;
            } else {
                tb_buf_append(&b, p, 1);
            }
        }
        tb_buf_puts(&b, name + m[0].rm_eo);
        out = tb_xstrdup(tb_buf_cstr(&b));
        tb_buf_free(&b);
    }
    regfree(&rx);
    return out;
}

char *tb_eng_map(struct ctx *x, const struct tb_mbox_info *b, const char *canon)
{
    const struct tb_sync_map *m = x->mode ? x->o->map : NULL;
    if (!x->mode)
        return tb_xstrdup(canon);
    if (b && b->special_use && !(m && m->include_all) &&
        (strcasecmp(b->special_use, "\\All") == 0 ||
         strcasecmp(b->special_use, "\\Important") == 0))
        return NULL; /* Gmail's views of mail that is in other folders too */
    char *name = NULL;
    for (size_t i = 0; m && i < m->n && !name; i++) {
        const char *rest = under(canon, m->from[i]);
        if (rest)
            name = join(m->to[i], rest);
    }
    if (!name && !(m && m->no_special) && strcmp(canon, "INBOX") != 0) {
        const char *use = b && b->special_use ? b->special_use : use_of_name(canon);
        name = use ? dst_of_use(x, use) : NULL;
    }
    if (!name && m && m->rename_re)
        name = rename_re(m->rename_re, m->rename_to, canon);
    if (!name)
        name = tb_xstrdup(canon);
    if (m && m->into && m->into[0]) {
        char *full = tb_xmalloc(strlen(m->into) + strlen(name) + 2);
        sprintf(full, "%s/%s", m->into, name);
        free(name);
        name = full;
    }
    return name;
}

/* The source name of a destination name, when only explicit rules made it; else NULL. */
static char *unmap(struct ctx *x, const char *canon)
{
    const struct tb_sync_map *m = x->o->map;
    const char *name = canon;
    if (m && m->into && m->into[0]) {
        const char *rest = under(canon, m->into);
        if (!rest || !rest[0])
            return NULL;
        name = rest + 1;
    }
    if (m && m->rename_re)
        return NULL;
    for (size_t i = 0; m && i < m->n; i++) {
        const char *rest = under(name, m->to[i]);
        if (rest)
            return join(m->from[i], rest);
    }
    if (!(m && m->no_special) && use_of_name(name))
        return NULL;
    return tb_xstrdup(name);
}

char *tb_eng_wire(struct ctx *x, const struct entry *e, int k)
{
    if (e->box[k])
        return tb_xstrdup(e->box[k]->name);
    if (!x->mode || k != x->mode->source)
        return tb_name_wire(e->canon, tb_store_ns(&x->s[k]));
    char *src = unmap(x, e->canon);
    char *w = src ? tb_mbox_wire(tb_store_ns(&x->s[k]), src, NULL) : NULL;
    free(src);
    return w;
}
