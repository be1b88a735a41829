/* `twinbox watch PAIR [--interval SECONDS] [--max-runs N]`: sync, then wait for a change
 * (XREPLICATE WATCH where a side offers it, else the interval), sync again, until
 * SIGINT/SIGTERM or N runs. A failed run is retried after the interval; only an error a
 * person must fix (configuration, authentication) ends the loop. */
#include "cli/cli.h"

#include "sync/engine.h"
#include "sync/watch.h"
#include "twinbox/config.h"
#include "twinbox/exit.h"
#include "twinbox/log.h"
#include "twinbox/state.h"

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

/* Waits for a change of the pair: 1 changed, 0 interval over or stopped. */
static int wait_change(const struct tb_config *cfg, const struct tb_pair *pair, double interval)
{
    struct tb_cli_pair cp;
    if (tb_cli_pair_load(cfg, pair, &cp) != TB_EXIT_OK)
        return 0;
    char err[1024];
    struct tb_state *st;
    int r = 0, watched = 0;
    if (tb_state_open(cp.path, &st, err, sizeof(err)) < 0) {
        tb_log_error("pair %s: %s", pair->name, err);
    } else {
        uv_loop_t loop;
        uv_loop_init(&loop);
        const char *pws[2] = {cp.pw[0], cp.pw[1]};
        r = tb_watch_wait(&loop, pair, cp.acct, pws, st, interval, &stop_requested, tb_cli_on_event,
                          NULL, &watched, err, sizeof(err));
        uv_loop_close(&loop);
        tb_state_close(st);
        if (r < 0)
            tb_log_warn("pair %s: watch: %s; syncing after the interval", pair->name, err);
    }
    tb_cli_pair_free(&cp);
    if (r < 0) {
        /* A failed watch connection: fall back to the interval. */
        for (double t = 0; t < interval && !stop_requested; t += 0.2)
            uv_sleep(200);
        r = 0;
    }
    return r;
}

int tb_cmd_watch(const struct tb_cli *cli, int argc, char **argv)
{
    const char *name = NULL;
    double interval = 300;
    long max_runs = 0;
    bool bad = false;
    for (int i = 0; i < argc && !bad; i++) {
        char *end = NULL;
        if (strcmp(argv[i], "--interval") == 0 && i + 1 < argc) {
            interval = strtod(argv[++i], &end);
            bad = *end || interval < 1 || interval > 86400;
        } else if (strcmp(argv[i], "--max-runs") == 0 && i + 1 < argc) {
            max_runs = strtol(argv[++i], &end, 10);
            bad = *end || max_runs < 0;
        } else if (argv[i][0] != '-' && !name) {
            name = argv[i];
        } else {
            bad = true;
        }
    }
    if (bad) {
        tb_log_error("usage: twinbox [-c FILE] watch [PAIR] [--interval SECONDS (1-86400)] "
                     "[--max-runs N]");
        return TB_EXIT_USAGE;
    }
    char path[4096];
    struct tb_config *cfg;
    const struct tb_pair *pair;
    int rc = tb_cli_pair_find(cli, name, &cfg, &pair, path, sizeof(path));
    if (rc != TB_EXIT_OK)
        return rc;
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    struct tb_sync_opts o = {0};
    for (long run = 1; !stop_requested; run++) {
        rc = tb_cli_sync_one(cfg, pair, &o);
        fflush(stdout);
        if (rc == TB_EXIT_CONFIG || rc == TB_EXIT_AUTH || rc == TB_EXIT_USAGE ||
            rc == TB_EXIT_INTERNAL)
            break;
        if ((max_runs && run >= max_runs) || stop_requested)
            break;
        wait_change(cfg, pair, interval);
    }
    if (stop_requested && rc != TB_EXIT_CONFIG && rc != TB_EXIT_AUTH)
        rc = TB_EXIT_OK;
    tb_config_free(cfg);
    return rc;
}
