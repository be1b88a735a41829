/* One error value for every layer: a kind, decided where the failure happens, and one line
 * of text for people. Exit codes (twinbox/exit.h) come from the kind only, never from the
 * wording, so a reworded message cannot change what a cron job or daemon does next.
 *
 * Ownership: a tb_error is a plain value (no heap); copy it freely. The message never holds
 * a password: whoever formats it redacts first. */
#ifndef TWINBOX_ERROR_H
#define TWINBOX_ERROR_H

#include <stdbool.h>
#include <stddef.h>

enum tb_err_kind {
    TB_ERR_NONE = 0,
    TB_ERR_CONFIG,   /* configuration, account definition, local set-up (exit 3) */
    TB_ERR_AUTH,     /* login refused (exit 4) */
    TB_ERR_TLS,      /* TLS not established, not trusted, or skipped by the server (exit 4) */
    TB_ERR_PROTOCOL, /* the server broke the protocol or sent data we cannot trust (exit 5) */
    TB_ERR_TEMP,     /* network, timeout, a refused command: retry later (exit 5) */
    TB_ERR_CONFLICT, /* data needs a person: mass-change guard, skipped messages (exit 7) */
    TB_ERR_INTERNAL, /* local state database, resources, a bug (exit 1) */
};

struct tb_error {
    enum tb_err_kind kind;
    char msg[768];
};

/* Sets kind and message (truncated to fit); a kind of TB_ERR_NONE is stored as INTERNAL. */
void tb_error_set(struct tb_error *e, enum tb_err_kind kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Keeps the first error: does nothing when e already holds one. */
void tb_error_set_once(struct tb_error *e, enum tb_err_kind kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void tb_error_clear(struct tb_error *e);
static inline bool tb_error_is_set(const struct tb_error *e)
{
    return e->kind != TB_ERR_NONE;
}
/* The process exit code for a kind (0 for TB_ERR_NONE). */
int tb_error_exit(enum tb_err_kind kind);
/* "config", "auth", "tls", "protocol", "temporary", "conflict", "internal", "none". */
const char *tb_error_kind_name(enum tb_err_kind kind);

#endif
