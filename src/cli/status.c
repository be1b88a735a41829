/* `twinbox status [PAIR...]`: per mailbox, what the state recorded and whether either
 * server changed since (one LIST-STATUS per server; nothing is selected or written). */
#include "cli/cli.h"
#include "cli/daemon.h"

#include "store/store.h"
#include "twinbox/config.h"
#include "twinbox/exit.h"
#include "twinbox/log.h"
#include "twinbox/state.h"
#include "util/mutf7.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The listed mailbox whose canonical name (relative to the personal namespace) is canon. */
static const struct tb_mbox_info *find(struct tb_store *s, const char *canon)
{
    for (size_t i = 0; i < s->n_boxes; i++) {
        const struct tb_mbox_info *b = &s->boxes[i];
        char *c = tb_mbox_canon(tb_store_ns(s), b->name, NULL);
        bool same = c && strcmp(c, canon) == 0;
        free(c);
        if (same)
            return b;
    }
    return NULL;
}

static const char *side_state(const struct tb_mbox_info *b, const struct tb_state_side *s)
{
    if (!b)
        return "gone";
    if (b->uidvalidity != s->uidvalidity)
        return "uidvalidity changed";
    if (b->uidnext != s->uidnext)
        return "new messages";
    if (b->highestmodseq != s->highestmodseq)
        return "changed";
    return "in sync";
}

/* Messages recorded as skipped (not copied), with why and since when. */
static void print_skipped(const struct tb_pair *pair, struct tb_state *st)
{
    struct tb_state_skip *k = NULL;
    size_t n = 0;
    if (tb_state_skips(st, NULL, &k, &n) < 0 || n == 0) {
        tb_state_skips_free(k, n);
        return;
    }
    printf("pair %s: %zu skipped message%s (sync --retry-skipped retries them)\n", pair->name, n,
           n == 1 ? "" : "s");
    for (size_t i = 0; i < n; i++) {
        char when[32] = "?";
        time_t t = (time_t)k[i].last;
        struct tm tm;
        if (gmtime_r(&t, &tm))
            strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%SZ", &tm);
        char show[512];
        printf("  %s on %s: UID %u, %u bytes, Message-ID %s: %s (%s, %d attempt%s, last %s)\n",
               tb_mutf7_show(k[i].mailbox, show, sizeof(show)), k[i].side ? "b" : "a", k[i].uid,
               k[i].size, k[i].msgid[0] ? k[i].msgid : "none", k[i].reason,
               k[i].permanent ? "refused" : "not delivered", k[i].attempts,
               k[i].attempts == 1 ? "" : "s", when);
    }
    tb_state_skips_free(k, n);
}

static int status_one(const struct tb_config *cfg, const struct tb_pair *pair)
{
    char err[1024];
    struct tb_cli_pair cp;
    int rc = tb_cli_pair_load(cfg, pair, &cp);
    if (rc != TB_EXIT_OK)
        return rc;
    const char *path = cp.path;
    struct tb_state *st;
    if (tb_state_open(path, &st, err, sizeof(err)) < 0) {
        tb_log_error("pair %s: %s", pair->name, err);
        tb_cli_pair_free(&cp);
        return TB_EXIT_CONFIG;
    }
    const struct tb_account **acct = cp.acct;
    char **pw = cp.pw;
    struct tb_state_mailbox *mb = NULL;
    size_t n = 0;
    if (rc == TB_EXIT_OK && tb_state_mailboxes(st, &mb, &n) < 0) {
        tb_log_error("pair %s: state: %s", pair->name, tb_state_error(st));
        rc = TB_EXIT_INTERNAL;
    }
    if (rc == TB_EXIT_OK) {
        uv_loop_t loop;
        uv_loop_init(&loop);
        struct tb_store s[2];
        struct tb_store *both[2] = {&s[0], &s[1]};
        for (int k = 0; k < 2; k++)
            tb_store_init(&s[k], &loop, acct[k], pw[k]);
        if (tb_store_wait(both, 2) == 0) {
            tb_store_list_start(&s[0]);
            tb_store_list_start(&s[1]);
        }
        if (tb_store_wait(both, 2) < 0) {
            for (int k = 0; k < 2; k++)
                if (s[k].failed)
                    tb_log_error("%s", s[k].err.msg);
            rc = TB_EXIT_TEMPFAIL;
        } else {
            printf("pair %s (state %s): %zu mailboxes\n", pair->name, path, n);
            for (size_t i = 0; i < n; i++) {
                char show[512];
                printf("  %-30s a: %u/%u/%llu %-19s b: %u/%u/%llu %s\n",
                       tb_mutf7_show(mb[i].name, show, sizeof(show)), mb[i].side[0].uidvalidity,
                       mb[i].side[0].uidnext, (unsigned long long)mb[i].side[0].highestmodseq,
                       side_state(find(&s[0], mb[i].name), &mb[i].side[0]),
                       mb[i].side[1].uidvalidity, mb[i].side[1].uidnext,
                       (unsigned long long)mb[i].side[1].highestmodseq,
                       side_state(find(&s[1], mb[i].name), &mb[i].side[1]));
            }
        }
        if (rc == TB_EXIT_OK)
            tb_store_logout(both, 2);
        for (int k = 0; k < 2; k++)
            tb_store_free(&s[k]);
        uv_run(&loop, UV_RUN_DEFAULT);
        uv_loop_close(&loop);
    }
    print_skipped(pair, st);
    tb_state_mailboxes_free(mb, n);
    tb_state_close(st);
    tb_cli_pair_free(&cp);
    return rc;
}

/* status --json: the running daemon's document (control.c), all pairs. */
static int status_daemon(const char *control)
{
    char path[4096];
    if (control)
        snprintf(path, sizeof(path), "%s", control);
    else if (tb_control_default_path(path, sizeof(path)) < 0) {
        tb_log_error("status --json: no control socket path (set XDG_RUNTIME_DIR or HOME, or "
                     "give --control PATH)");
        return TB_EXIT_CONFIG;
    }
    int r = tb_control_query(path, "status");
    if (r == 1)
        tb_log_error("status --json: no twinbox watch is running (nothing answers on %s)", path);
    return r == 0 ? TB_EXIT_OK : TB_EXIT_TEMPFAIL;
}

int tb_cmd_status(const struct tb_cli *cli, int argc, char **argv)
{
    const char *control = NULL;
    int n_names = 0;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--control") == 0 && i + 1 < argc)
            control = argv[++i];
        else if (argv[i][0] == '-') {
            tb_log_error("usage: twinbox [-c FILE] status [PAIR...] | status --json "
                         "[--control PATH]");
            return TB_EXIT_USAGE;
        } else
            argv[n_names++] = argv[i];
    }
    argc = n_names;
    if (cli->json || control)
        return status_daemon(control);
    char path[4096];
    struct tb_config *cfg;
    int rc = tb_cli_config_load(cli, &cfg, path, sizeof(path));
    if (rc != TB_EXIT_OK)
        return rc;
    const char *p = path;

    for (int i = 0; i < argc && rc == TB_EXIT_OK; i++)
        if (!tb_config_pair(cfg, argv[i])) {
            tb_log_error("%s: no [pair %s] section", p, argv[i]);
            rc = TB_EXIT_CONFIG;
        }
    size_t n = argc ? (size_t)argc : cfg->n_pairs;
    for (size_t i = 0; i < n && rc == TB_EXIT_OK; i++)
        rc = status_one(cfg, argc ? tb_config_pair(cfg, argv[i]) : cfg->pairs[i]);
    tb_config_free(cfg);
    return rc;
}
