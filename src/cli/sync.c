/* `twinbox sync [PAIR...] [--mailbox NAME...] [--dry-run]` */
#include "cli/cli.h"
#include "cli/migrate.h"

#include "sync/engine.h"
#include "twinbox/config.h"
#include "twinbox/error.h"
#include "twinbox/exit.h"
#include "twinbox/log.h"
#include "twinbox/state.h"
#include "util/mutf7.h"

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

/* What the mass-change guard saw: always in a dry run, and when it stopped the run. */
static void print_guard(const struct tb_pair *pair, const struct tb_sync_opts *o,
                        const struct tb_sync_stats *st)
{
    if (!st->guard.checked || (!o->dry_run && !st->guard.tripped))
        return;
    printf("%s%s: would remove a: %llu of %llu messages, b: %llu of %llu messages%s\n",
           o->dry_run ? "dry run: " : "", pair->name, (unsigned long long)st->guard.remove[0],
           (unsigned long long)st->guard.total[0], (unsigned long long)st->guard.remove[1],
           (unsigned long long)st->guard.total[1],
           st->guard.tripped
               ? (o->force ? " (over max-delete, --force given)" : " (over max-delete: stopped)")
               : "");
    for (size_t i = 0; i < st->guard.n_lines; i++)
        printf("  %s\n", st->guard.lines[i]);
}

/* Skipped messages: this run's make it exit with CONFLICT (each had a warning line); older
 * ones still recorded get one reminder. */
static int report_skipped(const struct tb_pair *pair, struct tb_state *st,
                          const struct tb_sync_stats *stats)
{
    struct tb_state_skip *rows = NULL;
    size_t n = 0;
    if (tb_state_skips(st, NULL, &rows, &n) < 0)
        n = 0;
    tb_state_skips_free(rows, n);
    if (stats->skipped_messages) {
        tb_log_error("pair %s: %llu message%s not copied this run, %zu skipped in all (twinbox "
                     "status %s lists them; sync --retry-skipped retries them)",
                     pair->name, (unsigned long long)stats->skipped_messages,
                     stats->skipped_messages == 1 ? "" : "s", n, pair->name);
        return TB_EXIT_CONFLICT;
    }
    if (n)
        tb_log_warn("pair %s: %zu message%s remain skipped (twinbox status %s lists them)",
                    pair->name, n, n == 1 ? "" : "s", pair->name);
    return TB_EXIT_OK;
}

static void print_summary(const struct tb_pair *pair, const struct tb_sync_opts *o,
                          const struct tb_sync_stats *stats, double secs)
{
    const char *dry = o->dry_run ? "dry run: " : "";
    if (o->one_way) {
        int d = 1 - o->source;
        printf("%s%s: copied %llu, already there %llu, flag updates %llu, filtered out %llu, "
               "expunged %llu, kept (gone from the source) %llu, mailboxes created %llu "
               "deleted %llu renamed %llu, %.1f MB, %.1fs, round trips source %llu "
               "destination %llu, skipped %llu messages %llu mailboxes\n",
               dry, pair->name, (unsigned long long)stats->copied[d],
               (unsigned long long)stats->matched, (unsigned long long)stats->flag_updates,
               (unsigned long long)stats->filtered, (unsigned long long)stats->expunges,
               (unsigned long long)stats->kept, (unsigned long long)stats->created,
               (unsigned long long)stats->deleted, (unsigned long long)stats->renamed,
               (double)stats->bytes / 1e6, secs, (unsigned long long)stats->turns[o->source],
               (unsigned long long)stats->turns[d], (unsigned long long)stats->skipped_messages,
               (unsigned long long)stats->skipped_mailboxes);
    } else {
        printf("%s%s: copied a->b %llu, b->a %llu, flag updates %llu, expunged %llu, mailboxes "
               "created %llu deleted %llu renamed %llu, conflicts merged %llu, %.1f MB, %.1fs, "
               "round trips a %llu b %llu, X-REPLICATE a %s b %s (%llu exact deltas), skipped "
               "%llu messages %llu mailboxes\n",
               dry, pair->name, (unsigned long long)stats->copied[1],
               (unsigned long long)stats->copied[0], (unsigned long long)stats->flag_updates,
               (unsigned long long)stats->expunges, (unsigned long long)stats->created,
               (unsigned long long)stats->deleted, (unsigned long long)stats->renamed,
               (unsigned long long)stats->conflicts, (double)stats->bytes / 1e6, secs,
               (unsigned long long)stats->turns[0], (unsigned long long)stats->turns[1],
               stats->xr[0] ? "yes" : "no", stats->xr[1] ? "yes" : "no",
               (unsigned long long)stats->xr_deltas, (unsigned long long)stats->skipped_messages,
               (unsigned long long)stats->skipped_mailboxes);
    }
    if (pair->replica && stats->renumbered)
        printf("%s: replica: %llu messages given new UIDs on both sides (the same UID named "
               "different messages on a and b, or one side had used it)\n",
               pair->name, (unsigned long long)stats->renumbered);
    if (stats->flags_unstorable)
        printf("%s: %llu messages written without flags their mailbox cannot keep "
               "(PERMANENTFLAGS); those flags stay on the other side\n",
               pair->name, (unsigned long long)stats->flags_unstorable);
}

/* A run that could not begin (lock, state file): logged, or left in res for a caller that
 * reports failures itself (res->quiet). */
static int setup_fail(const struct tb_pair *pair, struct tb_cli_result *res, enum tb_err_kind kind,
                      int rc, const char *err)
{
    if (res && res->quiet)
        tb_error_set(&res->err, kind, "pair %s: %s", pair->name, err);
    else
        tb_log_error("pair %s: %s", pair->name, err);
    return rc;
}

int tb_cli_run_pair(const struct tb_pair *pair, const struct tb_account *acct[2],
                    const char *pws[2], const char *path, const struct tb_sync_opts *o,
                    struct tb_cli_result *res)
{
    char err[1024];
    int rc = TB_EXIT_OK;
    int lockfd = -1;
    bool quiet = res && res->quiet;
    int lr = tb_state_lock(path, &lockfd, err, sizeof(err));
    if (lr != 0)
        return setup_fail(pair, res, lr == 1 ? TB_ERR_TEMP : TB_ERR_CONFIG,
                          lr == 1 ? TB_EXIT_LOCKED : TB_EXIT_CONFIG, err);
    struct tb_state *st;
    if (tb_state_open(path, &st, err, sizeof(err)) < 0) {
        tb_state_unlock(lockfd);
        return setup_fail(pair, res, TB_ERR_CONFIG, TB_EXIT_CONFIG, err);
    }
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct tb_sync_stats stats = {0};
    double t0 = now();
    struct tb_error e;
    struct tb_sync_opts ro = *o;
    if (!ro.on_event)
        ro.on_event = tb_cli_on_event;
    rc = tb_sync_pair(&loop, pair, acct, pws, st, &ro, &stats, &e);
    uv_loop_close(&loop);
    print_guard(pair, o, &stats);
    if (rc == TB_EXIT_OK)
        rc = report_skipped(pair, st, &stats);
    tb_state_close(st);
    if (rc != TB_EXIT_OK && e.msg[0] && !quiet)
        tb_log_error("%s", e.msg);
    if (res) {
        res->err = e;
        res->copied = stats.copied[0] + stats.copied[1];
        res->matched = stats.matched;
        res->skipped = stats.skipped_messages;
        res->bytes = stats.bytes;
    }
    /* A quiet caller retrying an unreachable server gets no empty summary per attempt. */
    if (!quiet || rc != TB_EXIT_TEMPFAIL || stats.mailboxes_done)
        print_summary(pair, o, &stats, now() - t0);
    tb_sync_stats_free(&stats);
    tb_state_unlock(lockfd);
    return rc;
}

int tb_cli_sync_one(const struct tb_config *cfg, const struct tb_pair *pair,
                    const struct tb_sync_opts *o)
{
    struct tb_cli_pair cp;
    int rc = tb_cli_pair_load(cfg, pair, &cp);
    if (rc != TB_EXIT_OK)
        return rc;
    const char *pws[2] = {cp.pw[0], cp.pw[1]};
    rc = tb_cli_run_pair(pair, cp.acct, pws, cp.path, o, NULL);
    tb_cli_pair_free(&cp);
    return rc;
}

/* The runs of `sync`, once its arguments are parsed. */
static int run_sync(const struct tb_cli *cli, struct tb_sync_opts o, const char **names,
                    size_t n_names)
{
    if (n_names == 2 && tb_cli_is_url(names[0]) && tb_cli_is_url(names[1])) {
        /* A one-off pair of two URLs: no configuration file; its state is keyed by both
         * accounts under $XDG_STATE_HOME, passwords from TWINBOX_PASSWORD_A / _B. */
        struct tb_migrate_args m = {.retries = 0};
        m.side[0] = names[0];
        m.side[1] = names[1];
        m.o = o;
        return tb_migrate_one(cli, &m, "sync", NULL);
    }
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

int tb_cmd_sync(const struct tb_cli *cli, int argc, char **argv)
{
    struct tb_sync_opts o = {0};
    char *only[64];
    const char *names[64];
    size_t n_names = 0;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--dry-run") == 0) {
            o.dry_run = true;
        } else if (strcmp(argv[i], "--force") == 0) {
            o.force = true;
        } else if (strcmp(argv[i], "--retry-skipped") == 0) {
            o.retry_skipped = true;
        } else if (strcmp(argv[i], "--mailbox") == 0 && i + 1 < argc && o.n_only < 64) {
            /* typed in UTF-8; canonical names are in modified UTF-7 */
            char *w = tb_utf8_to_mutf7(argv[++i]);
            if (!w) {
                tb_log_error("sync: --mailbox '%s' is not UTF-8", argv[i]);
                for (size_t j = 0; j < o.n_only; j++)
                    free(only[j]);
                return TB_EXIT_USAGE;
            }
            only[o.n_only++] = w;
        } else if (argv[i][0] == '-' || n_names >= 64) {
            tb_log_error("usage: twinbox [-c FILE] sync [PAIR...] [--mailbox NAME...] "
                         "[--dry-run] [--force] [--retry-skipped]");
            return TB_EXIT_USAGE;
        } else {
            names[n_names++] = argv[i];
        }
    }
    o.only = o.n_only ? only : NULL;
    int rc = run_sync(cli, o, names, n_names);
    for (size_t j = 0; j < o.n_only; j++)
        free(only[j]);
    return rc;
}
