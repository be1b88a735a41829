#include "twinbox/log.h"

#include <stdarg.h>
#include <stdio.h>

int tb_verbosity;

static tb_log_sink_fn *sink;
static void *sink_ud;

void tb_log_set_sink(tb_log_sink_fn *fn, void *ud)
{
    sink = fn;
    sink_ud = ud;
}

/* One line under stderr's lock: threads (watch's pairs, migrate --jobs) never mix lines. */
static void vlog(enum tb_log_level level, const char *fmt, va_list ap)
{
    if (sink) {
        char line[2048];
        vsnprintf(line, sizeof(line), fmt, ap);
        sink(level, line, sink_ud);
        return;
    }
    static const char *const prefix[] = {[TB_LOG_ERROR] = "twinbox: ",
                                         [TB_LOG_WARN] = "twinbox: warning: ",
                                         [TB_LOG_INFO] = "twinbox: ",
                                         [TB_LOG_DEBUG] = ""};
    flockfile(stderr);
    fputs(prefix[level], stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    funlockfile(stderr);
}

void tb_log_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog(TB_LOG_ERROR, fmt, ap);
    va_end(ap);
}

void tb_log_warn(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog(TB_LOG_WARN, fmt, ap);
    va_end(ap);
}

void tb_log_info(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog(TB_LOG_INFO, fmt, ap);
    va_end(ap);
}

void tb_log_debug(int level, const char *fmt, ...)
{
    if (tb_verbosity < level)
        return;
    va_list ap;
    va_start(ap, fmt);
    vlog(TB_LOG_DEBUG, fmt, ap);
    va_end(ap);
}
