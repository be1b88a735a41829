/* Answers that ask the client to come back later (see tb_imap_result_throttled). */
#include "twinbox/imap.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

bool tb_imap_result_throttled(const struct tb_imap_result *r)
{
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
    /* The delay itself travels in the error's text: migrate reads it from there. */
    return hit || (r->text && strcasestr(r->text, "Suggested Backoff Time: "));
}
