#include "sync/names.h"

#include "util/buf.h"

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
