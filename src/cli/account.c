#include "cli/cli.h"

#include "twinbox/config.h"
#include "twinbox/exit.h"
#include "twinbox/log.h"
#include "twinbox/state.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool tb_cli_is_url(const char *arg)
{
    return strstr(arg, "://") != NULL || strncmp(arg, "tunnel:", 7) == 0;
}

int tb_cli_account_find(const struct tb_cli *cli, const char *arg, struct tb_cli_account *out)
{
    char err[512];
    memset(out, 0, sizeof(*out));
    if (tb_cli_is_url(arg)) {
        if (tb_account_from_url(arg, &out->url_acct, err, sizeof(err)) < 0) {
            tb_log_error("%s", err);
            return TB_EXIT_CONFIG;
        }
        out->acct = out->url_acct;
        return TB_EXIT_OK;
    }
    char path[4096];
    int rc = tb_cli_config_load(cli, &out->cfg, path, sizeof(path));
    if (rc != TB_EXIT_OK)
        return rc;
    out->acct = tb_config_account(out->cfg, arg);
    if (!out->acct) {
        tb_log_error("%s: no [account %s] section", path, arg);
        tb_cli_account_free(out);
        return TB_EXIT_CONFIG;
    }
    return TB_EXIT_OK;
}

int tb_cli_account_unlock(struct tb_cli_account *a)
{
    char err[512];
    if (tb_account_needs_password(a->acct) &&
        tb_account_password(a->acct, &a->password, err, sizeof(err)) < 0) {
        tb_log_error("%s", err);
        return TB_EXIT_CONFIG;
    }
    return TB_EXIT_OK;
}

int tb_cli_account_load(const struct tb_cli *cli, const char *arg, struct tb_cli_account *out)
{
    int rc = tb_cli_account_find(cli, arg, out);
    if (rc == TB_EXIT_OK && (rc = tb_cli_account_unlock(out)) != TB_EXIT_OK)
        tb_cli_account_free(out);
    return rc;
}

int tb_cli_config_load(const struct tb_cli *cli, struct tb_config **cfg, char *path, size_t len)
{
    char err[1024];
    if (cli->config_path)
        snprintf(path, len, "%s", cli->config_path);
    else if (tb_config_default_path(path, len) < 0) {
        tb_log_error("cannot determine the configuration file path (set -c FILE)");
        return TB_EXIT_CONFIG;
    }
    if (tb_config_load(path, cfg, err, sizeof(err)) < 0) {
        tb_log_error("%s", err);
        return TB_EXIT_CONFIG;
    }
    return TB_EXIT_OK;
}

int tb_cli_pair_find(const struct tb_cli *cli, const char *name, struct tb_config **cfg,
                     const struct tb_pair **pair, char *path, size_t len)
{
    int rc = tb_cli_config_load(cli, cfg, path, len);
    if (rc != TB_EXIT_OK)
        return rc;
    *pair = name ? tb_config_pair(*cfg, name) : (*cfg)->n_pairs == 1 ? (*cfg)->pairs[0] : NULL;
    if (*pair)
        return TB_EXIT_OK;
    if (name)
        tb_log_error("%s: no [pair %s] section", path, name);
    else
        tb_log_error("%s: name the pair (the file has %zu)", path, (*cfg)->n_pairs);
    tb_config_free(*cfg);
    *cfg = NULL;
    return TB_EXIT_CONFIG;
}

void tb_cli_account_free(struct tb_cli_account *a)
{
    if (a->password)
        tb_password_free(a->password);
    if (a->url_acct)
        tb_account_free(a->url_acct);
    if (a->cfg)
        tb_config_free(a->cfg);
    memset(a, 0, sizeof(*a));
}

size_t tb_utf8_seq_len(const unsigned char *s)
{
    unsigned c = s[0];
    size_t n = c < 0x80             ? 1
               : (c & 0xe0) == 0xc0 ? 2
               : (c & 0xf0) == 0xe0 ? 3
               : (c & 0xf8) == 0xf0 ? 4
                                    : 0;
    if (n < 2)
        return n;
    unsigned cp = c & (0x7f >> n);
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    static const unsigned min[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

void tb_json_string(FILE *f, const char *s)
{
    fputc('"', f);
    const unsigned char *p = (const unsigned char *)(s ? s : "");
    while (*p) {
        size_t n = tb_utf8_seq_len(p);
        if (n == 0) {
            fputs("\\ufffd", f);
            p++;
        } else if (*p == '"' || *p == '\\') {
            fprintf(f, "\\%c", *p++);
        } else if (*p < 0x20 || *p == 0x7f) {
            fprintf(f, "\\u%04x", *p++);
        } else {
            fwrite(p, 1, n, f);
            p += n;
        }
    }
    fputc('"', f);
}

int tb_cli_pair_load(const struct tb_config *cfg, const struct tb_pair *pair,
                     struct tb_cli_pair *out)
{
    char err[1024];
    memset(out, 0, sizeof(*out));
    out->acct[0] = tb_config_account(cfg, pair->a);
    out->acct[1] = tb_config_account(cfg, pair->b);
    for (int k = 0; k < 2; k++) {
        if (tb_account_needs_password(out->acct[k]) &&
            tb_account_password(out->acct[k], &out->pw[k], err, sizeof(err)) < 0) {
            tb_log_error("%s", err);
            tb_cli_pair_free(out);
            return TB_EXIT_CONFIG;
        }
    }
    if (pair->state) {
        snprintf(out->path, sizeof(out->path), "%s", pair->state);
    } else if (tb_state_default_path(pair->name, out->path, sizeof(out->path)) < 0) {
        tb_log_error("pair %s: cannot create the state directory", pair->name);
        tb_cli_pair_free(out);
        return TB_EXIT_CONFIG;
    }
    return TB_EXIT_OK;
}

void tb_cli_pair_free(struct tb_cli_pair *p)
{
    for (int k = 0; k < 2; k++) {
        tb_password_free(p->pw[k]);
        p->pw[k] = NULL;
    }
}
