/* Answers that ask the client to come back later (see tb_imap_result_throttled). */
#include "twinbox/imap.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

bool tb_imap_result_throttled(const struct tb_imap_result *r, uint64_t *backoff_ms)
{
    if (backoff_ms)
        *backoff_ms = 0;
    if (r->status != TB_IMAP_NO)
        return false;
    char code[64];
    tb_imap_code_prefix(r, code, sizeof(code));
    /* Not [LIMIT]: Dovecot answers a message over its size limit with it, a refusal of that
     * message for good (RFC 5530: an implementation limit). */
    static const char *const codes[] = {"[THROTTLED] ", "[UNAVAILABLE] ", "[INUSE] ",
                                        "[SERVERBUG] "};
    bool hit = false;
    for (size_t i = 0; i < sizeof(codes) / sizeof(*codes); i++)
        hit = hit || strcasecmp(code, codes[i]) == 0;
    const char *t = r->text ? strcasestr(r->text, "Suggested Backoff Time: ") : NULL;
    if (t) {
        hit = true;
        unsigned long long ms = strtoull(t + 24, NULL, 10);
        if (backoff_ms)
            *backoff_ms = ms > 3600000 ? 3600000 : ms; /* an hour at most */
    }
    return hit;
}
