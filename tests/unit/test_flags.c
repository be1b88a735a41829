/* The 3-way flag merge of the sync contract. */
#include "util/flags.h"
#include "tap.h"

#include <stdlib.h>

static void merge(const char *base, const char *a, const char *b, const char *want,
                  const char *what)
{
    char *r = tb_flags_merge(base, a, b);
    CHECK_STR(r, want, "%s: got (%s)", what, r);
    free(r);
}

int main(void)
{
    char *c = tb_flags_canon("(\\seen \\Recent $Junk \\FLAGGED $junk)");
    CHECK_STR(c, "$Junk \\Flagged \\Seen", "canonical form drops \\Recent and duplicates");
    free(c);
    merge("\\Flagged", "\\Answered \\Flagged", "\\Seen", "\\Answered \\Seen",
          "design example: +Answered vs +Seen -Flagged");
    merge("", "\\Seen", "", "\\Seen", "one-sided add");
    merge("\\Seen", "", "\\Seen", "", "one-sided remove");
    merge("\\Seen", "", "\\Seen $Work", "$Work", "remove on one side, keyword add on other");
    merge("", "\\Seen", "\\Seen", "\\Seen", "same add on both");
    merge("$A", "$B", "$a", "$B", "keywords compare case-insensitively");
    merge("\\Seen", "\\Seen", "\\Seen", "\\Seen", "no change");
    CHECK(tb_flags_equal("\\Seen \\Draft", "(\\draft \\seen)"), "equality ignores order/case");
    c = tb_flags_minus("\\Seen \\Draft $X", "\\Draft");
    CHECK_STR(c, "$X \\Seen", "difference");
    free(c);
    return tap_done();
}
