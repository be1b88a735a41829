/* Internals of `twinbox migrate` shared by migrate.c (one migration) and migrate_many.c
 * (--accounts FILE --jobs N: many at once, one thread each). */
#ifndef TWINBOX_CLI_MIGRATE_H
#define TWINBOX_CLI_MIGRATE_H

#include "cli/cli.h"
#include "sync/engine.h"

#include <stddef.h>
#include <stdint.h>

#define MAX_PATTERNS 64

struct tb_migrate_args {
    const char *side[2];    /* SRC, DST as given */
    const char *pw_file[2]; /* --password-file-src/-dst */
    const char *pw_cmd[2];  /* --password-command-src/-dst */
    const char *pw_env[2];  /* an environment variable (--accounts lines), or NULL */
    const char *state;      /* --state */
    char *only[MAX_PATTERNS], *exclude[MAX_PATTERNS];
    size_t n_only, n_exclude;
    const char *map_from[MAX_PATTERNS], *map_to[MAX_PATTERNS];
    char *map_buf[MAX_PATTERNS];   /* owned copies split at '=' */
    char *rename_buf;              /* owned: "RE\0TO" */
    char *owned[2 * MAX_PATTERNS]; /* folder arguments converted from UTF-8, option names */
    size_t n_owned;
    struct tb_sync_map map;
    unsigned retries;     /* --retries, default 10 */
    uint64_t retry_scale; /* TWINBOX_TEST_RETRY_SCALE: per mille of the pause (tests) */
    const char *report;   /* --report FILE.json */
    const char *accounts; /* --accounts FILE */
    unsigned jobs;        /* --jobs N, default 4 */
    unsigned per_host;    /* --max-per-host N: migrations at once per server host */
    struct tb_sync_opts o;
};

/* One migration of m (side, pw_file, pw_cmd set); its summary lines carry `label`.
 * Returns an exit code; res (may be NULL) gets what the last run did. */
int tb_migrate_one(const struct tb_cli *cli, const struct tb_migrate_args *m, const char *label,
                   struct tb_cli_result *res);
/* Every line of m->accounts, m->jobs at a time; returns the worst exit code. */
int tb_migrate_many(const struct tb_cli *cli, const struct tb_migrate_args *m);

#endif
