/* Account keys: the one table, setter and validator behind both the INI file (config.c)
 * and URL accounts (url.c), so a key is spelled, parsed and checked the same way in both.
 * An account owns all its strings; tb_account_free wipes an inline password before freeing. */
#include "config/config_internal.h"
#include "util/buf.h"

#include <ctype.h>
#include <pwd.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

static const char *const key_names[TB_K_COUNT] = {
    [TB_K_TYPE] = "type",
    [TB_K_HOST] = "host",
    [TB_K_PORT] = "port",
    [TB_K_USER] = "user",
    [TB_K_PASSWORD] = "password",
    [TB_K_PASSWORD_FILE] = "password-file",
    [TB_K_PASSWORD_COMMAND] = "password-command",
    [TB_K_PASSWORD_ENV] = "password-env",
    [TB_K_STARTTLS] = "starttls",
    [TB_K_TLS_CA_FILE] = "tls-ca-file",
    [TB_K_TLS_FINGERPRINT] = "tls-fingerprint",
    [TB_K_TLS_VERIFY] = "tls-verify",
    [TB_K_ALLOW_PLAINTEXT_PASSWORD] = "allow-plaintext-password",
    [TB_K_COMPRESS] = "compress",
    [TB_K_COMMAND] = "command",
    [TB_K_MAX_INFLIGHT] = "max-inflight",
    [TB_K_TIMEOUT] = "timeout",
    [TB_K_XREPLICATE] = "xreplicate",
    [TB_K_MAX_LINE] = "max-line",
    [TB_K_MAX_RESPONSE_LINE] = "max-response-line",
    [TB_K_MAX_MESSAGE_SIZE] = "max-message-size",
    [TB_K_AUTH] = "auth",
    [TB_K_AUTH_USER] = "auth-user",
    [TB_K_OAUTH_TOKEN_COMMAND] = "oauth-token-command",
    [TB_K_MAX_BYTES_PER_SECOND] = "max-bytes-per-second",
    [TB_K_MAX_MESSAGES_PER_SECOND] = "max-messages-per-second",
};

/* ---- values ---------------------------------------------------------------------------- */

int tb_config_parse_bool(const char *v, bool *out)
{
    static const char *const yes[] = {"yes", "true", "on", "1"};
    static const char *const no[] = {"no", "false", "off", "0"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(v, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcasecmp(v, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return -1;
}

/* Decimal digits only (no sign, no blanks), within [lo, hi]. */
static int parse_int(const char *v, int lo, int hi, int *out)
{
    long n = 0;
    if (!*v)
        return -1;
    for (const char *p = v; *p; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        n = n * 10 + (*p - '0');
        if (n > hi)
            return -1;
    }
    if (n < lo)
        return -1;
    *out = (int)n;
    return 0;
}

/* A byte count: digits with an optional K, M or G suffix (binary units), within [lo, hi]. */
static int parse_size(const char *v, uint64_t lo, uint64_t hi, uint64_t *out)
{
    uint64_t n = 0;
    const char *p = v;
    if (*p < '0' || *p > '9')
        return -1;
    for (; *p >= '0' && *p <= '9'; p++) {
        n = n * 10 + (uint64_t)(*p - '0');
        if (n > hi)
            return -1;
    }
    unsigned shift = 0;
    if (*p == 'k' || *p == 'K')
        shift = 10;
    else if (*p == 'm' || *p == 'M')
        shift = 20;
    else if (*p == 'g' || *p == 'G')
        shift = 30;
    if (shift)
        p++;
    if (*p || n > (hi >> shift))
        return -1;
    n <<= shift;
    if (n < lo)
        return -1;
    *out = n;
    return 0;
}

/* Accepts "sha256:" (any case) followed by 64 hex digits, either plain or as 32 colon
 * separated pairs; stores 64 lowercase hex digits. */
static int parse_fingerprint(const char *v, char out[65])
{
    if (strncasecmp(v, "sha256:", 7) == 0)
        v += 7;
    size_t len = strlen(v), n = 0;
    bool colons = strchr(v, ':') != NULL;
    if (len != (colons ? 95 : 64))
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (colons && i % 3 == 2) {
            if (v[i] != ':')
                return -1;
            continue;
        }
        if (!isxdigit((unsigned char)v[i]))
            return -1;
        out[n++] = (char)tolower((unsigned char)v[i]);
    }
    out[n] = '\0';
    return n == 64 ? 0 : -1;
}

/* "~" and "~/..." become $HOME (or the passwd home); everything else is kept as given. */
int tb_config_expand_path(const char *v, char **out, char *why, size_t n)
{
    if (v[0] != '~') {
        *out = tb_xstrdup(v);
        return 0;
    }
    if (v[1] != '\0' && v[1] != '/') {
        snprintf(why, n, "'~user' paths are not supported: '%.200s'", v);
        return -1;
    }
    const char *home = getenv("HOME");
    if (!home || !*home) {
        struct passwd *pw = getpwuid(getuid());
        home = pw ? pw->pw_dir : NULL;
    }
    if (!home || !*home) {
        snprintf(why, n, "cannot expand '~': no home directory");
        return -1;
    }
    struct tb_buf b;
    tb_buf_init(&b);
    tb_buf_printf(&b, "%s%s", home, v + 1);
    *out = tb_xstrdup(tb_buf_cstr(&b));
    tb_buf_free(&b);
    return 0;
}

static int parse_auth(const char *v, enum tb_auth *out)
{
    static const char *const names[] = {
        [TB_AUTH_PLAIN] = "plain",
        [TB_AUTH_LOGIN] = "login",
        [TB_AUTH_XOAUTH2] = "xoauth2",
        [TB_AUTH_OAUTHBEARER] = "oauthbearer",
    };
    for (size_t i = TB_AUTH_PLAIN; i < sizeof(names) / sizeof(names[0]); i++) {
        if (strcasecmp(v, names[i]) == 0) {
            *out = (enum tb_auth)i;
            return 0;
        }
    }
    return -1;
}

static bool valid_env_name(const char *v)
{
    if (!(isalpha((unsigned char)*v) || *v == '_'))
        return false;
    for (; *v; v++)
        if (!(isalnum((unsigned char)*v) || *v == '_'))
            return false;
    return true;
}

static bool has_space_or_ctl(const char *v)
{
    for (; *v; v++)
        if (isspace((unsigned char)*v) || iscntrl((unsigned char)*v))
            return true;
    return false;
}

struct tb_account *tb_account_new(void)
{
    struct tb_account *a = tb_xcalloc(1, sizeof(*a));
    a->starttls = true;
    a->tls_verify = true;
    a->compress = a->compress_auto = true;
    a->xreplicate = true;
    a->max_inflight = 512;
    a->timeout_s = 60;
    a->max_line = TB_DEFAULT_MAX_LINE;
    a->max_response_line = TB_DEFAULT_MAX_RESPONSE_LINE;
    a->max_message_size = TB_DEFAULT_MAX_MESSAGE_SIZE;
    return a;
}

int tb_account_key(const char *name)
{
    for (int k = 0; k < TB_K_COUNT; k++)
        if (strcmp(name, key_names[k]) == 0)
            return k;
    return -1;
}

int tb_account_set(struct tb_account *a, int key, const char *v, char *why, size_t n)
{
    const char *kn = key_names[key];
    if (!*v) {
        snprintf(why, n, "%s: empty value", kn);
        return -1;
    }
    bool *flag = NULL;
    char **str = NULL;
    switch (key) {
    case TB_K_TYPE:
        if (strcasecmp(v, "imap") == 0)
            a->type = TB_ACCOUNT_IMAP;
        else if (strcasecmp(v, "imaps") == 0)
            a->type = TB_ACCOUNT_IMAPS;
        else if (strcasecmp(v, "tunnel") == 0)
            a->type = TB_ACCOUNT_TUNNEL;
        else {
            snprintf(why, n, "type: '%.64s' is not imap, imaps or tunnel", v);
            return -1;
        }
        return 0;
    case TB_K_HOST: {
        size_t len = strlen(v);
        /* Brackets are how URLs write IPv6 literals; resolvers want the bare address. */
        if (v[0] == '[' && len > 2 && v[len - 1] == ']') {
            v++;
            len -= 2;
        }
        char *h = tb_xstrndup(v, len);
        if (has_space_or_ctl(h) || strchr(h, '/') || strchr(h, '[') || strchr(h, ']')) {
            snprintf(why, n, "host: '%.200s' is not a host name or address", h);
            free(h);
            return -1;
        }
        a->host = h;
        return 0;
    }
    case TB_K_PORT:
        if (parse_int(v, 1, 65535, &a->port) < 0) {
            snprintf(why, n, "port: '%.64s' is not a number in 1..65535", v);
            return -1;
        }
        return 0;
    case TB_K_MAX_INFLIGHT:
        if (parse_int(v, 1, 10000, &a->max_inflight) < 0) {
            snprintf(why, n, "max-inflight: '%.64s' is not a number in 1..10000", v);
            return -1;
        }
        return 0;
    case TB_K_TIMEOUT:
        if (parse_int(v, 1, 3600, &a->timeout_s) < 0) {
            snprintf(why, n, "timeout: '%.64s' is not a number of seconds in 1..3600", v);
            return -1;
        }
        return 0;
    case TB_K_MAX_LINE: {
        uint64_t v64;
        if (parse_size(v, 1000, 1u << 20, &v64) < 0) {
            snprintf(why, n, "max-line: '%.64s' is not a size in 1000..1M", v);
            return -1;
        }
        a->max_line = (size_t)v64;
        return 0;
    }
    case TB_K_MAX_RESPONSE_LINE: {
        uint64_t v64;
        if (parse_size(v, 64u << 10, 1u << 30, &v64) < 0) {
            snprintf(why, n, "max-response-line: '%.64s' is not a size in 64K..1G", v);
            return -1;
        }
        a->max_response_line = (size_t)v64;
        return 0;
    }
    case TB_K_MAX_MESSAGE_SIZE:
        if (parse_size(v, 1u << 10, (uint64_t)4 << 30, &a->max_message_size) < 0) {
            snprintf(why, n, "max-message-size: '%.64s' is not a size in 1K..4G", v);
            return -1;
        }
        return 0;
    case TB_K_MAX_BYTES_PER_SECOND:
        /* The transport's buckets hold at most 2^32 tokens (transport/ratelimit.h). */
        if (parse_size(v, 0, (uint64_t)4 << 30, &a->max_bytes_per_second) < 0) {
            snprintf(why, n, "max-bytes-per-second: '%.64s' is not a size in 0..4G", v);
            return -1;
        }
        return 0;
    case TB_K_MAX_MESSAGES_PER_SECOND: {
        int per_s;
        if (parse_int(v, 0, 100000, &per_s) < 0) {
            snprintf(why, n, "max-messages-per-second: '%.64s' is not a number in 0..100000", v);
            return -1;
        }
        a->max_messages_per_second = (uint64_t)per_s;
        return 0;
    }
    case TB_K_TLS_FINGERPRINT:
        if (parse_fingerprint(v, a->tls_fingerprint) < 0) {
            a->tls_fingerprint[0] = '\0';
            snprintf(why, n,
                     "tls-fingerprint: '%.120s' is not a SHA-256 fingerprint (64 hex digits, "
                     "colons and a sha256: prefix allowed)",
                     v);
            return -1;
        }
        return 0;
    case TB_K_PASSWORD_ENV:
        if (!valid_env_name(v)) {
            snprintf(why, n, "password-env: '%.64s' is not an environment variable name", v);
            return -1;
        }
        a->password_env = tb_xstrdup(v);
        return 0;
    case TB_K_AUTH:
        if (parse_auth(v, &a->auth) < 0) {
            snprintf(why, n, "auth: '%.64s' is not plain, login, xoauth2 or oauthbearer", v);
            return -1;
        }
        return 0;
    case TB_K_PASSWORD_FILE:
        return tb_config_expand_path(v, &a->password_file, why, n);
    case TB_K_TLS_CA_FILE:
        return tb_config_expand_path(v, &a->tls_ca_file, why, n);
    case TB_K_USER:
        str = &a->user;
        break;
    case TB_K_PASSWORD:
        str = &a->password;
        break;
    case TB_K_PASSWORD_COMMAND:
        str = &a->password_command;
        break;
    case TB_K_AUTH_USER:
        str = &a->auth_user;
        break;
    case TB_K_OAUTH_TOKEN_COMMAND:
        str = &a->oauth_token_command;
        break;
    case TB_K_COMMAND:
        str = &a->command;
        break;
    case TB_K_STARTTLS:
        flag = &a->starttls;
        break;
    case TB_K_TLS_VERIFY:
        flag = &a->tls_verify;
        break;
    case TB_K_ALLOW_PLAINTEXT_PASSWORD:
        flag = &a->allow_plaintext_password;
        break;
    case TB_K_COMPRESS:
        /* auto: see compress_auto in twinbox/config.h */
        a->compress_auto = strcmp(v, "auto") == 0;
        if (a->compress_auto) {
            a->compress = true;
            return 0;
        }
        flag = &a->compress;
        break;
    case TB_K_XREPLICATE:
        flag = &a->xreplicate;
        break;
    default:
        snprintf(why, n, "unknown key");
        return -1;
    }
    if (str) {
        *str = tb_xstrdup(v);
        return 0;
    }
    if (tb_config_parse_bool(v, flag) < 0) {
        snprintf(why, n, "%s: '%.64s' is not yes or no%s", kn, v,
                 key == TB_K_COMPRESS ? " (or auto)" : "");
        return -1;
    }
    return 0;
}

/* The keys of the mechanism chosen with `auth`: a key the mechanism would ignore is refused,
 * because a silently unused password source or identity hides a mistake. */
static int check_auth(struct tb_account *a, const bool set[TB_K_COUNT], int *bad_key, char *why,
                      size_t n)
{
    static const char *const mech[] = {"", "plain", "login", "xoauth2", "oauthbearer"};
    if (tb_account_uses_oauth(a)) {
        static const int pw_keys[] = {TB_K_PASSWORD, TB_K_PASSWORD_FILE, TB_K_PASSWORD_COMMAND,
                                      TB_K_PASSWORD_ENV, TB_K_AUTH_USER};
        for (size_t i = 0; i < sizeof(pw_keys) / sizeof(pw_keys[0]); i++) {
            if (set[pw_keys[i]]) {
                *bad_key = pw_keys[i];
                snprintf(why, n,
                         "'%s' does not apply to auth = %s (the token comes from "
                         "oauth-token-command)",
                         key_names[pw_keys[i]], mech[a->auth]);
                return -1;
            }
        }
        if (has_space_or_ctl(a->user)) {
            /* \x01 separates the fields of the SASL message the user is sent in. */
            *bad_key = TB_K_USER;
            snprintf(why, n, "user: blanks or control characters cannot be sent with auth = %s",
                     mech[a->auth]);
            return -1;
        }
        if (!a->oauth_token_command) {
            *bad_key = TB_K_AUTH;
            snprintf(why, n, "auth = %s needs 'oauth-token-command'", mech[a->auth]);
            return -1;
        }
        return 0;
    }
    if (set[TB_K_OAUTH_TOKEN_COMMAND]) {
        *bad_key = TB_K_OAUTH_TOKEN_COMMAND;
        snprintf(why, n, "'oauth-token-command' needs auth = xoauth2 or oauthbearer");
        return -1;
    }
    if (a->auth_user && a->auth == TB_AUTH_LOGIN) {
        /* LOGIN has no authorization identity; PLAIN carries both (RFC 4616). */
        *bad_key = TB_K_AUTH_USER;
        snprintf(why, n, "'auth-user' needs auth = plain (LOGIN cannot log in for another user)");
        return -1;
    }
    if (a->auth_user)
        a->auth = TB_AUTH_PLAIN;
    return 0;
}

int tb_account_check(struct tb_account *a, const bool set[TB_K_COUNT], int *bad_key, char *why,
                     size_t n)
{
    *bad_key = -1;
    if (!set[TB_K_TYPE]) {
        snprintf(why, n, "missing 'type' (imap, imaps or tunnel)");
        return -1;
    }
    if (a->type == TB_ACCOUNT_TUNNEL) {
        /* A tunnel is pre-authenticated and local: anything about networks, TLS or
         * passwords would be silently ignored, which hides mistakes. */
        static const int only_net[] = {
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
            TB_K_AUTH,
            TB_K_AUTH_USER,
            TB_K_OAUTH_TOKEN_COMMAND,
        };
        for (size_t i = 0; i < sizeof(only_net) / sizeof(only_net[0]); i++) {
            if (set[only_net[i]]) {
                *bad_key = only_net[i];
                snprintf(why, n, "'%s' does not apply to type tunnel", key_names[only_net[i]]);
                return -1;
            }
        }
        if (!a->command) {
            snprintf(why, n, "type tunnel needs 'command'");
            return -1;
        }
        a->port = 0;
        return 0;
    }
    const char *tn = a->type == TB_ACCOUNT_IMAP ? "imap" : "imaps";
    if (set[TB_K_COMMAND]) {
        *bad_key = TB_K_COMMAND;
        snprintf(why, n, "'command' applies only to type tunnel");
        return -1;
    }
    if (set[TB_K_STARTTLS] && a->type != TB_ACCOUNT_IMAP) {
        *bad_key = TB_K_STARTTLS;
        snprintf(why, n, "'starttls' applies only to type imap (imaps is always TLS)");
        return -1;
    }
    if (a->type == TB_ACCOUNT_IMAP && !a->starttls) {
        static const int tls_keys[] = {TB_K_TLS_CA_FILE, TB_K_TLS_FINGERPRINT, TB_K_TLS_VERIFY};
        for (size_t i = 0; i < 3; i++) {
            if (set[tls_keys[i]]) {
                *bad_key = tls_keys[i];
                snprintf(why, n, "'%s' has no effect with starttls = no", key_names[tls_keys[i]]);
                return -1;
            }
        }
    }
    if (!a->host) {
        snprintf(why, n, "type %s needs 'host'", tn);
        return -1;
    }
    if (!a->user) {
        snprintf(why, n, "type %s needs 'user'", tn);
        return -1;
    }
    if (check_auth(a, set, bad_key, why, n) < 0)
        return -1;
    if (a->port == 0)
        a->port = a->type == TB_ACCOUNT_IMAP ? 143 : 993;
    return 0;
}

void tb_account_free(struct tb_account *a)
{
    if (!a)
        return;
    free(a->name);
    free(a->host);
    free(a->user);
    if (a->password) {
        explicit_bzero(a->password, strlen(a->password));
        free(a->password);
    }
    free(a->password_file);
    free(a->password_command);
    free(a->password_env);
    free(a->auth_user);
    free(a->oauth_token_command);
    free(a->tls_ca_file);
    free(a->command);
    free(a->source);
    free(a);
}

bool tb_account_needs_password(const struct tb_account *a)
{
    return a->type != TB_ACCOUNT_TUNNEL;
}

bool tb_account_uses_oauth(const struct tb_account *a)
{
    return a->auth == TB_AUTH_XOAUTH2 || a->auth == TB_AUTH_OAUTHBEARER;
}
