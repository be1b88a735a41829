/* Modified UTF-7 <-> UTF-8 (util/mutf7.c), with RFC 3501's example. */
#include "tap.h"
#include "util/mutf7.h"

#include <stdlib.h>
#include <string.h>

static void both(const char *wire, const char *utf8, const char *what)
{
    char *u = tb_mutf7_to_utf8(wire);
    CHECK_STR(u, utf8, "%s: to UTF-8", what);
    char *w = tb_utf8_to_mutf7(utf8);
    CHECK_STR(w, wire, "%s: to modified UTF-7", what);
    free(u);
    free(w);
}

int main(void)
{
    both("INBOX", "INBOX", "ASCII");
    both("Caf&AOk-", "Caf\xc3\xa9", "one accented letter");
    both("~peter/mail/&U,BTFw-/&ZeVnLIqe-",
         "~peter/mail/\xe5\x8f\xb0\xe5\x8c\x97/\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e",
         "RFC 3501's example");
    both("Tom &- Jerry", "Tom & Jerry", "an ampersand");
    both("&2D3eAA-", "\xf0\x9f\x98\x80", "a character beyond the BMP (surrogates)");
    char *u = tb_mutf7_to_utf8("Bad&AOk");
    CHECK_STR(u, "Bad&AOk", "unterminated run left as sent");
    free(u);
    u = tb_mutf7_to_utf8("&AGE-");
    CHECK_STR(u, "&AGE-", "encoded ASCII is malformed, left as sent");
    free(u);
    CHECK(tb_utf8_to_mutf7("\xc3") == NULL, "truncated UTF-8 refused");
    CHECK(tb_utf8_to_mutf7("\xed\xa0\x80") == NULL, "an encoded surrogate refused");
    return tap_done();
}
