#include "sync/names.h"

#include "twinbox/config.h"
#include "util/buf.h"

#include <fnmatch.h>
#include <string.h>
#include <strings.h>

/* Legacy mapping for a name that discovery already found representable on this side. */
static char *by_separator(const char *name, char from, char to)
{
    char *c = tb_xstrdup(name);
    if (from && to && from != to)
        for (char *q = c; *q; q++)
            if (*q == from)
                *q = to;
    return c;
}

char *tb_name_canon(const char *wire, const struct tb_ns *ns)
{
    char *c = tb_mbox_canon(ns, wire, NULL);
    return c ? c : by_separator(wire, ns->sep, '/');
}

char *tb_name_wire(const char *canon, const struct tb_ns *ns)
{
    char *w = tb_mbox_wire(ns, canon, NULL);
    return w ? w : by_separator(canon, '/', ns->sep);
}

bool tb_pair_wants(const struct tb_pair *pair, const char *canon)
{
    bool inc = pair->n_mailboxes == 0;
    for (size_t i = 0; i < pair->n_mailboxes && !inc; i++)
        inc = fnmatch(pair->mailboxes[i], canon, 0) == 0;
    for (size_t i = 0; i < pair->n_exclude && inc; i++)
        if (fnmatch(pair->exclude[i], canon, 0) == 0)
            inc = false;
    return inc;
}
