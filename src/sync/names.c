#include "sync/names.h"

#include "twinbox/config.h"
#include "util/buf.h"

#include <fnmatch.h>
#include <string.h>
#include <strings.h>

char *tb_name_canon(const char *wire, char sep)
{
    char *c = tb_xstrdup(wire);
    if (strcasecmp(c, "INBOX") == 0)
        memcpy(c, "INBOX", 5);
    if (sep && sep != '/')
        for (char *q = c; *q; q++)
            if (*q == sep)
                *q = '/';
    return c;
}

char *tb_name_wire(const char *canon, char sep)
{
    char *w = tb_xstrdup(canon);
    if (sep && sep != '/')
        for (char *q = w; *q; q++)
            if (*q == '/')
                *q = sep;
    return w;
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
