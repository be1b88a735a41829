/* Exit codes come from the error's kind, never from its text. */
#include "twinbox/error.h"
#include "twinbox/exit.h"

#include "tap.h"

#include <string.h>

int main(void)
{
    const struct {
        enum tb_err_kind kind;
        int exit;
    } map[] = {{TB_ERR_NONE, TB_EXIT_OK},           {TB_ERR_CONFIG, TB_EXIT_CONFIG},
               {TB_ERR_AUTH, TB_EXIT_AUTH},         {TB_ERR_TLS, TB_EXIT_AUTH},
               {TB_ERR_PROTOCOL, TB_EXIT_TEMPFAIL}, {TB_ERR_TEMP, TB_EXIT_TEMPFAIL},
               {TB_ERR_CONFLICT, TB_EXIT_CONFLICT}, {TB_ERR_INTERNAL, TB_EXIT_INTERNAL}};
    for (size_t i = 0; i < sizeof(map) / sizeof(*map); i++)
        CHECK(tb_error_exit(map[i].kind) == map[i].exit, "%s -> exit %d",
              tb_error_kind_name(map[i].kind), map[i].exit);
    struct tb_error e;
    tb_error_set(&e, TB_ERR_TLS, "TLS certificate %s", "is fine, really");
    CHECK(e.kind == TB_ERR_TLS && tb_error_exit(e.kind) == TB_EXIT_AUTH,
          "the kind decides, whatever the words");
    tb_error_set(&e, TB_ERR_TEMP, "TLS certificate verify failed");
    CHECK(tb_error_exit(e.kind) == TB_EXIT_TEMPFAIL, "words that once chose exit 4 do not");
    tb_error_set_once(&e, TB_ERR_CONFIG, "second");
    CHECK(e.kind == TB_ERR_TEMP, "set_once keeps the first error");
    tb_error_clear(&e);
    CHECK(!tb_error_is_set(&e), "cleared");
    tb_error_set(&e, TB_ERR_NONE, "x");
    CHECK(e.kind == TB_ERR_INTERNAL, "an error without a kind is internal");
    char big[2000];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = 0;
    tb_error_set(&e, TB_ERR_TEMP, "%s", big);
    CHECK(strlen(e.msg) == sizeof(e.msg) - 1, "long messages are truncated, not overflowed");
    return tap_done();
}
