/* Internal interface between the command-line front end and its sub-commands. */
#ifndef TWINBOX_CLI_CLI_H
#define TWINBOX_CLI_CLI_H

#include "twinbox/error.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

struct tb_account;
struct tb_config;
struct tb_pair;

struct tb_cli {
    const char *config_path; /* -c, or NULL for the default */
    bool json;
};

/* An account argument is a [account NAME] of the config file or a URL
 * (imap://, imaps://, tunnel:). On success *acct is valid until tb_cli_account_free. */
struct tb_cli_account {
    struct tb_config *cfg;
    struct tb_account *url_acct;
    struct tb_account *acct;
    char *password;
};
int tb_cli_account_load(const struct tb_cli *cli, const char *arg, struct tb_cli_account *out);
/* The two steps of tb_cli_account_load, for callers that change the account in between
 * (migrate sets each side's password source): find it without its password (on failure
 * nothing is left to free), then read the password (on failure tb_cli_account_free). */
int tb_cli_account_find(const struct tb_cli *cli, const char *arg, struct tb_cli_account *out);
int tb_cli_account_unlock(struct tb_cli_account *a);
/* Whether an account argument is a URL (imap://, imaps://, tunnel:) rather than a name. */
bool tb_cli_is_url(const char *arg);
/* Loads -c FILE or the default configuration; the file name used is copied into path.
 * Returns an exit code; the error is already printed. */
int tb_cli_config_load(const struct tb_cli *cli, struct tb_config **cfg, char *path, size_t len);
void tb_cli_account_free(struct tb_cli_account *a);
/* Loads the configuration and finds [pair NAME] (NAME NULL: the file's only pair). Returns
 * an exit code; on success *cfg is the caller's (tb_config_free), else the error is printed
 * and nothing is left to free. */
int tb_cli_pair_find(const struct tb_cli *cli, const char *name, struct tb_config **cfg,
                     const struct tb_pair **pair, char *path, size_t len);

/* A pair's two accounts, their passwords and its state path, resolved for a command. */
struct tb_cli_pair {
    const struct tb_account *acct[2];
    char *pw[2];
    char path[4096];
};
/* Returns an exit code; the error is already printed and nothing is left to free. */
int tb_cli_pair_load(const struct tb_config *cfg, const struct tb_pair *pair,
                     struct tb_cli_pair *out);
void tb_cli_pair_free(struct tb_cli_pair *p);

struct tb_sync_opts;
struct tb_sync_event;
/* The terminal rendering of the engine's events (cli/events.c): tb_sync_event_fn, ud
 * unused. tb_cli_run_pair uses it when the options name no callback. */
void tb_cli_on_event(void *ud, const struct tb_sync_event *ev);
/* One sync run of a pair, with its lock, state and summary line; returns an exit code. */
int tb_cli_sync_one(const struct tb_config *cfg, const struct tb_pair *pair,
                    const struct tb_sync_opts *o);
struct tb_account;
/* The same with accounts and passwords already resolved and the state file given. */
/* What one run did, for callers that report several (migrate --accounts). quiet is read:
 * the caller reports a failure itself from err (the daemon logs a pair's trouble once, not
 * per attempt); otherwise the error line is logged as for a single run. */
struct tb_cli_result {
    bool quiet;
    struct tb_error err;
    uint64_t copied, matched, skipped;
    uint64_t bytes;
};
int tb_cli_run_pair(const struct tb_pair *pair, const struct tb_account *acct[2],
                    const char *pws[2], const char *path, const struct tb_sync_opts *o,
                    struct tb_cli_result *res);
int tb_cmd_migrate(const struct tb_cli *cli, int argc, char **argv);
int tb_cmd_verify(const struct tb_cli *cli, int argc, char **argv);
int tb_cmd_replica_init(const struct tb_cli *cli, int argc, char **argv);

int tb_cmd_probe(const struct tb_cli *cli, int argc, char **argv);
int tb_cmd_sync(const struct tb_cli *cli, int argc, char **argv);
int tb_cmd_status(const struct tb_cli *cli, int argc, char **argv);
int tb_cmd_watch(const struct tb_cli *cli, int argc, char **argv);

/* A JSON string: quotes, backslashes and control characters escaped, bytes that are not
 * UTF-8 written as U+FFFD (servers' text is untrusted: the document stays valid JSON). */
void tb_json_string(FILE *f, const char *s);
/* Length of the UTF-8 sequence at s (1-4; 1 for the terminating NUL), or 0 when it is not
 * one (overlong, surrogate, past U+10FFFF, truncated). */
size_t tb_utf8_seq_len(const unsigned char *s);

#endif
