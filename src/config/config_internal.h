/* Internal to src/config: account.c provides one table of account keys, one setter and one
 * validator, used by the INI parser (config.c) and the URL parser (url.c), so a key means
 * exactly the same in both places. */
#ifndef TWINBOX_CONFIG_INTERNAL_H
#define TWINBOX_CONFIG_INTERNAL_H

#include "twinbox/config.h"

#include <stdbool.h>
#include <stddef.h>

enum tb_key {
    TB_K_TYPE,
    TB_K_HOST,
    TB_K_PORT,
    TB_K_USER,
    TB_K_PASSWORD,
    TB_K_PASSWORD_FILE,
    TB_K_PASSWORD_COMMAND,
    TB_K_PASSWORD_ENV,
    TB_K_STARTTLS,
    TB_K_TLS_CA_FILE,
    TB_K_TLS_FINGERPRINT,
    TB_K_TLS_VERIFY,
    TB_K_ALLOW_PLAINTEXT_PASSWORD,
    TB_K_COMPRESS,
    TB_K_COMMAND,
    TB_K_MAX_INFLIGHT,
    TB_K_TIMEOUT,
    TB_K_XREPLICATE,
    TB_K_MAX_LINE,
    TB_K_MAX_RESPONSE_LINE,
    TB_K_MAX_MESSAGE_SIZE,
    TB_K_AUTH,
    TB_K_AUTH_USER,
    TB_K_OAUTH_TOKEN_COMMAND,
    TB_K_MAX_BYTES_PER_SECOND,
    TB_K_MAX_MESSAGES_PER_SECOND,
    TB_K_COUNT
};

/* A zeroed account with every default that does not depend on the type. */
struct tb_account *tb_account_new(void);
/* The key id of NAME ("max-inflight"), or -1. */
int tb_account_key(const char *name);
/* Sets KEY from VALUE (already unquoted/decoded). 0 ok; -1 bad value, with the reason in
 * WHY (never the value of a password key). Replaces nothing: callers refuse duplicates. */
int tb_account_set(struct tb_account *a, int key, const char *value, char *why, size_t n);
/* Checks an account once all its keys are set (SET[k] says which were given) and fills the
 * type-dependent defaults. 0 ok; -1 with WHY and *BAD_KEY = the offending key, or -1 when
 * the problem is the section as a whole (a missing key). */
int tb_account_check(struct tb_account *a, const bool set[TB_K_COUNT], int *bad_key, char *why,
                     size_t n);
/* "~" and "~/..." become $HOME (or the passwd entry's home); other paths are copied as
 * given. 0 ok (*out malloc'd), -1 with the reason in WHY. */
int tb_config_expand_path(const char *v, char **out, char *why, size_t n);
/* Writes "WHO: message" into ERR (when ERR is not NULL) and returns -1. */
int tb_config_fail(char *err, size_t errlen, const char *who, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* yes/true/on/1 or no/false/off/0, any case; -1 otherwise. */
int tb_config_parse_bool(const char *v, bool *out);

#endif
