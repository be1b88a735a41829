#include "twinbox/log.h"

#include <stdarg.h>
#include <stdio.h>

int tb_verbosity;

/* One line under stderr's lock: threads (watch's pairs, migrate --jobs) never mix lines. */
static void vlog(const char *prefix, const char *fmt, va_list ap)
{
    flockfile(stderr);
    fputs(prefix, stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    funlockfile(stderr);
}

void tb_log_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog("twinbox: ", fmt, ap);
    va_end(ap);
}

void tb_log_warn(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog("twinbox: warning: ", fmt, ap);
    va_end(ap);
}

void tb_log_info(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog("twinbox: ", fmt, ap);
    va_end(ap);
}

void tb_log_debug(int level, const char *fmt, ...)
{
    if (tb_verbosity < level)
        return;
    va_list ap;
    va_start(ap, fmt);
    vlog("", fmt, ap);
    va_end(ap);
}
