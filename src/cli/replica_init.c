/* `twinbox replica-init PAIR --reference a|b`: converts a pair to replica mode (identical
 * UIDVALIDITY, GUIDs and UIDs; sync/replica_init.c rebuilds the other side's mailboxes
 * from the reference), then runs the first replica sync. Resumable: run it again after an
 * interruption. */
#include "cli/cli.h"

#include "sync/engine.h"
#include "twinbox/config.h"
#include "twinbox/exit.h"
#include "twinbox/log.h"

#include <stdio.h>
#include <string.h>

int tb_cmd_replica_init(const struct tb_cli *cli, int argc, char **argv)
{
    const char *name = NULL, *ref = NULL;
    bool bad = false;
    for (int i = 0; i < argc && !bad; i++) {
        if (strcmp(argv[i], "--reference") == 0 && i + 1 < argc)
            ref = argv[++i];
        else if (argv[i][0] != '-' && !name)
            name = argv[i];
        else
            bad = true;
    }
    if (!name || !ref || bad || (strcmp(ref, "a") != 0 && strcmp(ref, "b") != 0)) {
        tb_log_error("usage: twinbox [-c FILE] replica-init PAIR --reference a|b");
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
        struct tb_pair replica = *pair; /* shallow: only the flag differs */
        replica.replica = true;
        struct tb_sync_opts o = {.replica_init = true, .reference = ref[0] == 'b'};
        const char *pws[2] = {cp.pw[0], cp.pw[1]};
        rc = tb_cli_run_pair(&replica, cp.acct, pws, cp.path, &o, NULL);
        if (rc == TB_EXIT_OK && !pair->replica)
            printf("%s: replica-init done; add \"replica = yes\" to [pair %s] in %s, or the "
                   "next sync gives new messages their own UIDs again\n",
                   pair->name, pair->name, path);
        tb_cli_pair_free(&cp);
    }
    tb_config_free(cfg);
    return rc;
}
