/* twinbox command line: global options, then a sub-command. */
#include "cli/cli.h"

#include "twinbox/exit.h"
#include "twinbox/log.h"

#include <signal.h>
#include <sys/prctl.h>
#include <stdio.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f, "usage: twinbox [-c FILE] [-v|-vv] COMMAND [ARGS]\n"
               "\n"
               "commands:\n"
               "  probe [--json] ACCOUNT   connect and report capabilities and mailboxes\n"
               "  sync [PAIR...] [--mailbox NAME...] [--dry-run]\n"
               "  sync URL_A URL_B          the same for two URLs, no configuration file\n"
               "                           make each pair's two accounts identical\n"
               "  status [PAIR...]         what the state says, and what changed since\n"
               "  status --json [--control PATH]\n"
               "                           the running twinbox watch's pairs, as JSON\n"
               "  watch [PAIR...] [--interval SECONDS] [--max-runs N] [--max-per-host N]\n"
               "        [--metrics FILE] [--control PATH]\n"
               "                           every pair (or those named) in one process: sync,\n"
               "                           wait for a change (X-REPLICATE WATCH or the\n"
               "                           interval, default 300), sync again, until stopped;\n"
               "                           SIGHUP reloads the configuration\n"
               "  replica-init PAIR --reference a|b\n"
               "                           make the other side's UIDVALIDITY, GUIDs and UIDs\n"
               "                           those of the reference (replica mode; resumable)\n"
               "  verify PAIR [--repair]   compare both accounts completely, writing nothing;\n"
               "                           --repair resyncs everything, then compares again\n"
               "  migrate SRC DST [--dry-run] [--delete] [--only P] [--exclude P] [--since D]\n"
               "          [--before D] [--max-age DAYS] [--max-size BYTES] [--state FILE]\n"
               "                           copy SRC into DST one way (SRC is only read);\n"
               "                           reruns copy what is new (see twinbox(1))\n"
               "\n"
               "ACCOUNT is an [account NAME] of the configuration file or a URL:\n"
               "  imap://USER@HOST[:PORT][/?key=value&...]  (STARTTLS unless starttls=no)\n"
               "  imaps://USER@HOST[:PORT][/?key=value&...]\n"
               "  tunnel:COMMAND\n"
               "The password of a URL account comes from $TWINBOX_PASSWORD or a prompt.\n"
               "See twinbox(1).\n");
}

int main(int argc, char **argv)
{
    struct tb_cli cli = {0};
    int i = 1;
    /* A server closing the connection must surface as an error, not kill us. */
    signal(SIGPIPE, SIG_IGN);
    /* Passwords live in this process's memory: no core dump, no ptrace by other processes
     * of the same user, no /proc/PID/mem for them. */
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    for (; i < argc && argv[i][0] == '-'; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-c") == 0 && i + 1 < argc) {
            cli.config_path = argv[++i];
        } else if (strcmp(a, "-v") == 0) {
            tb_verbosity = tb_verbosity < 1 ? 1 : tb_verbosity;
        } else if (strcmp(a, "-vv") == 0) {
            tb_verbosity = 2;
        } else if (strcmp(a, "--json") == 0) {
            cli.json = true;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return TB_EXIT_OK;
        } else if (strcmp(a, "--version") == 0) {
            printf("twinbox %s\n", TWINBOX_VERSION);
            return TB_EXIT_OK;
        } else {
            tb_log_error("unknown option %s (see twinbox --help)", a);
            return TB_EXIT_USAGE;
        }
    }
    if (i >= argc) {
        usage(stderr);
        return TB_EXIT_USAGE;
    }
    const char *cmd = argv[i++];
    /* Sub-command options may follow the sub-command name. */
    char *rest[64];
    int n = 0;
    for (; i < argc && n < 64; i++) {
        if (strcmp(argv[i], "--json") == 0)
            cli.json = true;
        else if (strcmp(argv[i], "-v") == 0)
            tb_verbosity = tb_verbosity < 1 ? 1 : tb_verbosity;
        else if (strcmp(argv[i], "-vv") == 0)
            tb_verbosity = 2;
        else
            rest[n++] = argv[i];
    }
    if (strcmp(cmd, "probe") == 0)
        return tb_cmd_probe(&cli, n, rest);
    if (strcmp(cmd, "sync") == 0)
        return tb_cmd_sync(&cli, n, rest);
    if (strcmp(cmd, "status") == 0)
        return tb_cmd_status(&cli, n, rest);
    if (strcmp(cmd, "watch") == 0)
        return tb_cmd_watch(&cli, n, rest);
    if (strcmp(cmd, "migrate") == 0)
        return tb_cmd_migrate(&cli, n, rest);
    if (strcmp(cmd, "verify") == 0)
        return tb_cmd_verify(&cli, n, rest);
    if (strcmp(cmd, "replica-init") == 0)
        return tb_cmd_replica_init(&cli, n, rest);
    tb_log_error("unknown command '%s' (see twinbox --help)", cmd);
    return TB_EXIT_USAGE;
}
