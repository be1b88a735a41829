#include "protocol/mboxname.h"

#include "util/buf.h"

#include <stdlib.h>
#include <string.h>

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
