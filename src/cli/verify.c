/* `twinbox verify PAIR [--repair]`: report every difference between a pair's accounts
 * (sync/verify.c), writing nothing; with --repair, a full resync that trusts no stored
 * number (every mailbox listed on both sides and matched again by identity: nothing is
 * removed, what is missing is copied, flags are merged), then the comparison again. */
#include "cli/cli.h"

#include "sync/engine.h"
#include "sync/verify.h"
#include "twinbox/config.h"
#include "twinbox/exit.h"
#include "twinbox/log.h"

#include <stdio.h>
#include <string.h>

static int verify_once(const struct tb_pair *pair, struct tb_cli_pair *cp)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct tb_verify_report rep;
    struct tb_error err;
    const char *pws[2] = {cp->pw[0], cp->pw[1]};
    int rc = tb_verify_pair(&loop, pair, cp->acct, pws, &rep, tb_cli_on_event, NULL, &err);
    uv_loop_close(&loop);
    if (rc != TB_EXIT_OK && rc != TB_EXIT_CONFLICT) {
        tb_log_error("%s", err.msg);
        return rc;
    }
    printf("%s: verify: %llu mailboxes, %llu messages on both sides; missing on a %llu, on b "
           "%llu; flag differences %llu; duplicates a %llu, b %llu; mailboxes only on a %llu, "
           "only on b %llu; unreadable %llu: %s\n",
           pair->name, (unsigned long long)rep.mailboxes, (unsigned long long)rep.compared,
           (unsigned long long)rep.missing[0], (unsigned long long)rep.missing[1],
           (unsigned long long)rep.flag_diffs, (unsigned long long)rep.duplicates[0],
           (unsigned long long)rep.duplicates[1], (unsigned long long)rep.only_mailbox[0],
           (unsigned long long)rep.only_mailbox[1], (unsigned long long)rep.unreadable,
           rc == TB_EXIT_OK ? "identical" : "they differ");
    return rc;
}

int tb_cmd_verify(const struct tb_cli *cli, int argc, char **argv)
{
    const char *name = NULL;
    bool repair = false;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--repair") == 0)
            repair = true;
        else if (argv[i][0] != '-' && !name)
            name = argv[i];
        else
            name = NULL, argc = -1;
    }
    if (!name || argc < 0) {
        tb_log_error("usage: twinbox [-c FILE] verify PAIR [--repair]");
        return TB_EXIT_USAGE;
    }
    char path[4096];
    struct tb_config *cfg;
    const struct tb_pair *pair;
    int rc = tb_cli_pair_find(cli, name, &cfg, &pair, path, sizeof(path));
    if (rc != TB_EXIT_OK)
        return rc;
    struct tb_cli_pair cp;
    rc = tb_cli_pair_load(cfg, pair, &cp);
    if (rc == TB_EXIT_OK) {
        rc = verify_once(pair, &cp);
        if (rc == TB_EXIT_CONFLICT && repair) {
            struct tb_sync_opts o = {.full_resync = true};
            const char *pws[2] = {cp.pw[0], cp.pw[1]};
            rc = tb_cli_run_pair(pair, cp.acct, pws, cp.path, &o, NULL);
            if (rc == TB_EXIT_OK)
                rc = verify_once(pair, &cp);
        }
        tb_cli_pair_free(&cp);
    }
    tb_config_free(cfg);
    return rc;
}
