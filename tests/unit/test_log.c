/* The log sink: library layers' lines reach the embedder's function, not stderr. */
#include "twinbox/log.h"

#include "tap.h"

#include <string.h>

struct seen {
    int n;
    enum tb_log_level level;
    char line[4096];
};

static void sink(enum tb_log_level level, const char *line, void *ud)
{
    struct seen *s = ud;
    s->n++;
    s->level = level;
    strncpy(s->line, line, sizeof(s->line) - 1);
}

int main(void)
{
    struct seen s = {0};
    tb_log_set_sink(sink, &s);
    tb_log_warn("%s: TLS certificate verification is off", "acct");
    CHECK(s.n == 1 && s.level == TB_LOG_WARN &&
              strcmp(s.line, "acct: TLS certificate "
                             "verification is off") == 0,
          "a warning reaches the sink, without prefix or newline");
    tb_verbosity = 0;
    tb_log_debug(1, "C: T1 NOOP");
    CHECK(s.n == 1, "a trace above the verbosity is not even formatted");
    tb_verbosity = 1;
    tb_log_debug(1, "C: T1 NOOP");
    CHECK(s.n == 2 && s.level == TB_LOG_DEBUG && strcmp(s.line, "C: T1 NOOP") == 0, "at -v it is");
    char big[3000];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = 0;
    tb_log_error("%s", big);
    CHECK(s.n == 3 && s.level == TB_LOG_ERROR && strlen(s.line) == 2047,
          "a long line is cut at 2 KiB, not overrun (%zu)", strlen(s.line));
    tb_log_set_sink(NULL, NULL);
    tb_log_info("to stderr again");
    CHECK(s.n == 3, "NULL restores stderr");
    return tap_done();
}
