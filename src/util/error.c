#include "twinbox/error.h"

#include "twinbox/exit.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static void vset(struct tb_error *e, enum tb_err_kind kind, const char *fmt, va_list ap)
{
    e->kind = kind == TB_ERR_NONE ? TB_ERR_INTERNAL : kind;
    vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
}

void tb_error_set(struct tb_error *e, enum tb_err_kind kind, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vset(e, kind, fmt, ap);
    va_end(ap);
}

void tb_error_set_once(struct tb_error *e, enum tb_err_kind kind, const char *fmt, ...)
{
    if (tb_error_is_set(e))
        return;
    va_list ap;
    va_start(ap, fmt);
    vset(e, kind, fmt, ap);
    va_end(ap);
}

void tb_error_clear(struct tb_error *e)
{
    e->kind = TB_ERR_NONE;
    e->msg[0] = 0;
}

int tb_error_exit(enum tb_err_kind kind)
{
    switch (kind) {
    case TB_ERR_NONE:
        return TB_EXIT_OK;
    case TB_ERR_CONFIG:
        return TB_EXIT_CONFIG;
    case TB_ERR_AUTH:
    case TB_ERR_TLS:
        return TB_EXIT_AUTH;
    case TB_ERR_PROTOCOL:
    case TB_ERR_TEMP:
        return TB_EXIT_TEMPFAIL;
    case TB_ERR_CONFLICT:
        return TB_EXIT_CONFLICT;
    case TB_ERR_INTERNAL:
        break;
    }
    return TB_EXIT_INTERNAL;
}

const char *tb_error_kind_name(enum tb_err_kind kind)
{
    static const char *const names[] = {
        [TB_ERR_NONE] = "none",         [TB_ERR_CONFIG] = "config",     [TB_ERR_AUTH] = "auth",
        [TB_ERR_TLS] = "tls",           [TB_ERR_PROTOCOL] = "protocol", [TB_ERR_TEMP] = "temporary",
        [TB_ERR_CONFLICT] = "conflict", [TB_ERR_INTERNAL] = "internal",
    };
    return (unsigned)kind < sizeof(names) / sizeof(*names) ? names[kind] : "internal";
}
