/* fuzz_config: the INI configuration parser and account URLs (include/twinbox/config.h).
 *
 * Feeds the input, up to its first NUL, to tb_config_parse as a file's text and to
 * tb_account_from_url as a URL (one corpus serves both: a config file is a bad URL and a URL
 * a bad config file, which exercises the error paths too); frees everything with
 * tb_config_free / tb_account_free.
 *
 * Invariants checked (besides ASan, UBSan and leak reports):
 * - an error is said, NUL-terminated, *out stays NULL; a file's error is one line;
 * - an error never contains an inline password: the value of a "password =" line of the
 *   file, or the PASSWORD of a URL's USER:PASSWORD@ or password= query (checked for values
 *   of 8+ letters and digits, with a digit, that occur once in the input, so that they
 *   cannot come from elsewhere);
 * - a loaded account obeys config.h's ranges: name and source set; host and user for
 *   imap/imaps with a port in 1..65535; a command and port 0 for tunnel; max_inflight in
 *   1..10000, timeout in 1..3600; a fingerprint empty or 64 lower-case hex digits; tunnel
 *   accounts need no password;
 * - every account and pair is found by tb_config_account / tb_config_pair; a pair names two
 *   different accounts of the file and has at least one mailbox pattern. */
#include "fuzz.h"

#include "twinbox/config.h"

#include <ctype.h>

/* one_line: config.h promises "one line" for file errors; a URL's error may quote a path
 * as given, control characters included. */
static void check_error(int rc, const void *out, const char *err, size_t errlen, bool one_line)
{
    FUZZ_ASSERT(rc == -1, "0 or -1");
    FUZZ_ASSERT(out == NULL, "no result on error");
    FUZZ_ASSERT(memchr(err, 0, errlen) != NULL, "error NUL-terminated");
    FUZZ_ASSERT(err[0] != 0, "an error is said");
    if (one_line)
        FUZZ_ASSERT(strchr(err, '\n') == NULL, "a file error is one line");
}

/* A secret worth looking for in messages: see the comment at the top. */
static bool telltale(const char *text, const char *v, size_t n)
{
    if (n < 8 || n > 200)
        return false;
    bool digit = false, alpha = false;
    for (size_t i = 0; i < n; i++) {
        if (!isalnum((unsigned char)v[i]))
            return false;
        digit |= isdigit((unsigned char)v[i]) != 0;
        alpha |= isalpha((unsigned char)v[i]) != 0;
    }
    if (!digit || !alpha)
        return false;
    char pat[201];
    memcpy(pat, v, n);
    pat[n] = 0;
    const char *first = strstr(text, pat);
    return first && !strstr(first + 1, pat);
}

static void check_no_secret(const char *text, const char *v, size_t n, const char *err)
{
    if (!telltale(text, v, n))
        return;
    char pat[201];
    memcpy(pat, v, n);
    pat[n] = 0;
    FUZZ_ASSERT(strstr(err, pat) == NULL, "an error never shows a password");
}

/* Every "password = VALUE" line of the text (VALUE: its first word). */
static void check_file_error(const char *text, const char *err)
{
    for (const char *line = text; *line;) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        const char *p = line;
        while (p < line + len && (*p == ' ' || *p == '\t'))
            p++;
        if ((size_t)(line + len - p) > 8 && strncmp(p, "password", 8) == 0) {
            p += 8;
            while (p < line + len && (*p == ' ' || *p == '\t'))
                p++;
            if (p < line + len && *p == '=') {
                p++;
                while (p < line + len && (*p == ' ' || *p == '\t'))
                    p++;
                size_t n = 0;
                while (p + n < line + len && !isspace((unsigned char)p[n]))
                    n++;
                check_no_secret(text, p, n, err);
            }
        }
        line += len + (end != NULL);
    }
}

/* USER:PASSWORD@ before the last '@' of the part before the query, and a password=VALUE
 * query key. */
static void check_url_error(const char *url, const char *err)
{
    const char *rest = strstr(url, "://");
    if (!rest)
        return;
    rest += 3;
    size_t hier = strcspn(rest, "?");
    const char *at = NULL;
    for (size_t i = 0; i < hier; i++)
        if (rest[i] == '@')
            at = rest + i;
    const char *colon = at ? memchr(rest, ':', (size_t)(at - rest)) : NULL;
    if (colon)
        check_no_secret(url, colon + 1, (size_t)(at - colon - 1), err);
    /* Query keys: after the '?', each after '?' or '&' (a "password=" in a path is a path). */
    const char *query = strchr(rest, '?');
    for (const char *q = query; q; q = strchr(q + 1, '&')) {
        if (strncmp(q + 1, "password=", 9) == 0)
            check_no_secret(url, q + 10, strcspn(q + 10, "&#"), err);
    }
}

static void check_account(const struct tb_account *a)
{
    FUZZ_ASSERT(a->name && a->source, "name and source set");
    fuzz_touch_str(a->name);
    fuzz_touch_str(a->source);
    FUZZ_ASSERT(a->type == TB_ACCOUNT_IMAP || a->type == TB_ACCOUNT_IMAPS ||
                    a->type == TB_ACCOUNT_TUNNEL,
                "a known type");
    if (a->type == TB_ACCOUNT_TUNNEL) {
        FUZZ_ASSERT(a->command && a->port == 0, "tunnel: a command, no port");
        FUZZ_ASSERT(!tb_account_needs_password(a), "tunnel: no password");
        fuzz_touch_str(a->command);
    } else {
        FUZZ_ASSERT(a->host && a->user, "imap/imaps: host and user");
        FUZZ_ASSERT(a->port >= 1 && a->port <= 65535, "port in 1..65535");
        fuzz_touch_str(a->host);
        fuzz_touch_str(a->user);
    }
    FUZZ_ASSERT(a->max_inflight >= 1 && a->max_inflight <= 10000, "max-inflight in range");
    FUZZ_ASSERT(a->timeout_s >= 1 && a->timeout_s <= 3600, "timeout in range");
    size_t fl = strnlen(a->tls_fingerprint, sizeof(a->tls_fingerprint));
    FUZZ_ASSERT(fl == 0 || fl == 64, "fingerprint unset or 64 digits");
    for (size_t i = 0; i < fl; i++)
        FUZZ_ASSERT(isdigit((unsigned char)a->tls_fingerprint[i]) ||
                        (a->tls_fingerprint[i] >= 'a' && a->tls_fingerprint[i] <= 'f'),
                    "fingerprint lower-case hex");
    fuzz_touch_str(a->password);
    fuzz_touch_str(a->password_file);
    fuzz_touch_str(a->password_command);
    fuzz_touch_str(a->password_env);
    fuzz_touch_str(a->tls_ca_file);
}

static void check_config(const struct tb_config *cfg)
{
    FUZZ_ASSERT(cfg->path != NULL, "path set");
    for (size_t i = 0; i < cfg->n_accounts; i++) {
        check_account(cfg->accounts[i]);
        FUZZ_ASSERT(tb_config_account(cfg, cfg->accounts[i]->name) == cfg->accounts[i],
                    "an account is found by its name");
    }
    for (size_t i = 0; i < cfg->n_pairs; i++) {
        const struct tb_pair *p = cfg->pairs[i];
        FUZZ_ASSERT(p->name && p->source && p->a && p->b, "a pair's strings");
        FUZZ_ASSERT(tb_config_pair(cfg, p->name) == p, "a pair is found by its name");
        FUZZ_ASSERT(tb_config_account(cfg, p->a) && tb_config_account(cfg, p->b),
                    "a pair's accounts exist");
        FUZZ_ASSERT(strcmp(p->a, p->b) != 0, "a pair's accounts differ");
        FUZZ_ASSERT(p->n_mailboxes >= 1 && p->mailboxes, "at least one mailbox pattern");
        for (size_t k = 0; k < p->n_mailboxes; k++)
            fuzz_touch_str(p->mailboxes[k]);
        for (size_t k = 0; k < p->n_exclude; k++)
            fuzz_touch_str(p->exclude[k]);
        fuzz_touch_str(p->state);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = fuzz_cstr(data, size);
    char err[512];

    struct tb_config *cfg = (struct tb_config *)text; /* must be reset to NULL on error */
    memset(err, 'x', sizeof(err));
    int rc = tb_config_parse(text, "fuzz.conf", &cfg, err, sizeof(err));
    if (rc == 0) {
        FUZZ_ASSERT(cfg != NULL, "a config on success");
        check_config(cfg);
        tb_config_free(cfg);
    } else {
        check_error(rc, cfg, err, sizeof(err), true);
        check_file_error(text, err);
    }

    struct tb_account *a = (struct tb_account *)text;
    memset(err, 'x', sizeof(err));
    rc = tb_account_from_url(text, &a, err, sizeof(err));
    if (rc == 0) {
        FUZZ_ASSERT(a != NULL, "an account on success");
        check_account(a);
        FUZZ_ASSERT(strcmp(a->source, "URL") == 0, "source is URL");
        FUZZ_ASSERT(!a->password, "a URL holds no password");
        tb_account_free(a);
    } else {
        check_error(rc, a, err, sizeof(err), false);
        check_url_error(text, err);
    }
    free(text);
    return 0;
}
