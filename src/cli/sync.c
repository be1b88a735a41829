/* `twinbox sync [PAIR...] [--mailbox NAME...] [--dry-run]` */
#include "cli/cli.h"

#include "sync/engine.h"
#include "twinbox/config.h"
#include "twinbox/error.h"
#include "twinbox/exit.h"
#include "twinbox/log.h"
#include "twinbox/state.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Worst exit code wins: a person-needed error outranks a retry-later one. */
static int worse(int a, int b)
{
    static const int rank[] = {
        [TB_EXIT_OK] = 0,   [TB_EXIT_TEMPFAIL] = 1, [TB_EXIT_LOCKED] = 2,   [TB_EXIT_CONFLICT] = 3,
        [TB_EXIT_AUTH] = 4, [TB_EXIT_CONFIG] = 5,   [TB_EXIT_INTERNAL] = 6, [TB_EXIT_USAGE] = 7};
    return rank[b] > rank[a] ? b : a;
}

int tb_cli_sync_one(const struct tb_config *cfg, const struct tb_pair *pair,
                    const struct tb_sync_opts *o)
{
    char err[1024];
    struct tb_cli_pair cp;
    int rc = tb_cli_pair_load(cfg, pair, &cp);
    if (rc != TB_EXIT_OK)
        return rc;
    const char *path = cp.path;
    const struct tb_account **acct = cp.acct;
    int lockfd = -1;
    int lr = tb_state_lock(path, &lockfd, err, sizeof(err));
    if (lr != 0) {
        tb_log_error("pair %s: %s", pair->name, err);
        rc = lr == 1 ? TB_EXIT_LOCKED : TB_EXIT_CONFIG;
        goto out;
    }
    struct tb_state *st;
    if (tb_state_open(path, &st, err, sizeof(err)) < 0) {
        tb_log_error("pair %s: %s", pair->name, err);
        rc = TB_EXIT_CONFIG;
        goto out;
    }
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct tb_sync_stats stats = {0};
    double t0 = now();
    const char *pws[2] = {cp.pw[0], cp.pw[1]};
    struct tb_error e;
    rc = tb_sync_pair(&loop, pair, acct, pws, st, o, &stats, &e);
    uv_loop_close(&loop);
    tb_state_close(st);
    if (rc != TB_EXIT_OK)
        tb_log_error("%s", e.msg);
    printf("%s%s: copied a->b %llu, b->a %llu, flag updates %llu, expunged %llu, mailboxes "
           "created %llu deleted %llu renamed %llu, conflicts merged %llu, %.1f MB, %.1fs, round "
           "trips "
           "a %llu b %llu, X-REPLICATE a %s b %s (%llu exact deltas)\n",
           o->dry_run ? "dry run: " : "", pair->name, (unsigned long long)stats.copied[1],
           (unsigned long long)stats.copied[0], (unsigned long long)stats.flag_updates,
           (unsigned long long)stats.expunges, (unsigned long long)stats.created,
           (unsigned long long)stats.deleted, (unsigned long long)stats.renamed,
           (unsigned long long)stats.conflicts, (double)stats.bytes / 1e6, now() - t0,
           (unsigned long long)stats.turns[0], (unsigned long long)stats.turns[1],
           stats.xr[0] ? "yes" : "no", stats.xr[1] ? "yes" : "no",
           (unsigned long long)stats.xr_deltas);
out:
    tb_state_unlock(lockfd);
    tb_cli_pair_free(&cp);
    return rc;
}

int tb_cmd_sync(const struct tb_cli *cli, int argc, char **argv)
{
    struct tb_sync_opts o = {0};
    char *only[64];
    const char *names[64];
    size_t n_names = 0;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--dry-run") == 0) {
            o.dry_run = true;
        } else if (strcmp(argv[i], "--mailbox") == 0 && i + 1 < argc && o.n_only < 64) {
            only[o.n_only++] = argv[++i];
        } else if (argv[i][0] == '-' || n_names >= 64) {
            tb_log_error("usage: twinbox [-c FILE] sync [PAIR...] [--mailbox NAME...] "
                         "[--dry-run]");
            return TB_EXIT_USAGE;
        } else {
            names[n_names++] = argv[i];
        }
    }
    o.only = o.n_only ? only : NULL;
    char path[4096];
    struct tb_config *cfg;
    int rc = tb_cli_config_load(cli, &cfg, path, sizeof(path));
    if (rc != TB_EXIT_OK)
        return rc;
    const char *p = path;

    if (n_names == 0 && cfg->n_pairs == 0) {
        tb_log_error("%s: no [pair NAME] section", p);
        rc = TB_EXIT_CONFIG;
    }
    for (size_t i = 0; i < n_names; i++) {
        if (!tb_config_pair(cfg, names[i])) {
            tb_log_error("%s: no [pair %s] section", p, names[i]);
            rc = TB_EXIT_CONFIG;
        }
    }
    if (rc == TB_EXIT_OK) {
        if (n_names) {
            for (size_t i = 0; i < n_names; i++)
                rc = worse(rc, tb_cli_sync_one(cfg, tb_config_pair(cfg, names[i]), &o));
        } else {
            for (size_t i = 0; i < cfg->n_pairs; i++)
                rc = worse(rc, tb_cli_sync_one(cfg, cfg->pairs[i], &o));
        }
    }
    tb_config_free(cfg);
    return rc;
}
