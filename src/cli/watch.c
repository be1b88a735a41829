/* `twinbox watch [PAIR...] [--interval S] [--max-runs N] [--max-per-host N]
 *                [--metrics FILE] [--control PATH]`
 *
 * Every pair of the configuration (or the ones named) in one process: a worker thread per
 * pair syncs, waits for a change (XREPLICATE WATCH where a side offers it, else the
 * interval) and syncs again (daemon_worker.c). This thread owns the signals and the
 * control socket:
 *   SIGHUP          reload the configuration: pairs added start, pairs removed stop after
 *                   their current run, changed or parked ones restart, the others keep
 *                   their threads and connections; a file that no longer loads is
 *                   reported in one line and the old configuration stays;
 *   SIGTERM/SIGINT  a running sync ends after the mailbox in progress, waits end at
 *                   once; exit 0.
 * With --max-runs N each pair stops after N runs and the exit code is the first non-zero
 * last result of a pair in configuration order (0 when all ended well). */
#include "cli/cli.h"
#include "cli/daemon.h"

#include "twinbox/config.h"
#include "twinbox/exit.h"
#include "twinbox/log.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#define MAX_NAMES 1024

struct watch_args {
    const char *names[MAX_NAMES];
    size_t n_names;
    double interval;
    long max_runs;
    long max_per_host;
    const char *metrics, *control;
};

static int parse(int argc, char **argv, struct watch_args *a)
{
    bool bad = false;
    for (int i = 0; i < argc && !bad; i++) {
        char *end = NULL;
        bool more = i + 1 < argc;
        if (strcmp(argv[i], "--interval") == 0 && more) {
            a->interval = strtod(argv[++i], &end);
            bad = *end || !(a->interval >= 1 && a->interval <= 86400);
        } else if (strcmp(argv[i], "--max-runs") == 0 && more) {
            a->max_runs = strtol(argv[++i], &end, 10);
            bad = *end || a->max_runs < 0;
        } else if (strcmp(argv[i], "--max-per-host") == 0 && more) {
            a->max_per_host = strtol(argv[++i], &end, 10);
            bad = *end || a->max_per_host < 0 || a->max_per_host > 10000;
        } else if (strcmp(argv[i], "--metrics") == 0 && more) {
            a->metrics = argv[++i];
        } else if (strcmp(argv[i], "--control") == 0 && more) {
            a->control = argv[++i];
        } else if (argv[i][0] != '-' && a->n_names < MAX_NAMES) {
            a->names[a->n_names++] = argv[i];
        } else {
            bad = true;
        }
    }
    if (bad)
        tb_log_error("usage: twinbox [-c FILE] watch [PAIR...] [--interval SECONDS (1-86400)] "
                     "[--max-runs N] [--max-per-host N] [--metrics FILE] [--control PATH]");
    return bad ? -1 : 0;
}

/* The configuration at start: every named pair must exist. */
static int load(const struct tb_cli *cli, const struct watch_args *a, struct tb_config **cfg,
                char *path, size_t len)
{
    int rc = tb_cli_config_load(cli, cfg, path, len);
    if (rc != TB_EXIT_OK)
        return rc;
    for (size_t i = 0; i < a->n_names && rc == TB_EXIT_OK; i++)
        if (!tb_config_pair(*cfg, a->names[i])) {
            tb_log_error("%s: no [pair %s] section", path, a->names[i]);
            rc = TB_EXIT_CONFIG;
        }
    if (rc == TB_EXIT_OK && (*cfg)->n_pairs == 0) {
        tb_log_error("%s: no [pair NAME] section", path);
        rc = TB_EXIT_CONFIG;
    }
    if (rc != TB_EXIT_OK) {
        tb_config_free(*cfg);
        *cfg = NULL;
    }
    return rc;
}

static void reload(struct tb_daemon *d)
{
    char err[1024];
    struct tb_config *cfg;
    if (tb_config_load(d->config_path, &cfg, err, sizeof(err)) < 0) {
        tb_log_error("reload: %s; keeping the configuration loaded before", err);
        return;
    }
    for (size_t i = 0; i < d->n_only; i++)
        if (!tb_config_pair(cfg, d->only[i]))
            tb_log_warn("reload: %s: no [pair %s] section any more", d->config_path, d->only[i]);
    size_t n = tb_daemon_apply(d, cfg);
    tb_log_info("reload: %s: %zu pair%s", d->config_path, n, n == 1 ? "" : "s");
}

/* Until a stop signal, or every pair's --max-runs: true when a signal stopped it. */
static bool serve(struct tb_daemon *d, int sfd, int lfd)
{
    for (;;) {
        struct pollfd pf[2] = {{.fd = sfd, .events = POLLIN}, {.fd = lfd, .events = POLLIN}};
        int r = poll(pf, lfd >= 0 ? 2 : 1, 200);
        if (r > 0 && (pf[0].revents & POLLIN)) {
            struct signalfd_siginfo si;
            if (read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
                if (si.ssi_signo == SIGHUP)
                    reload(d);
                else
                    return true;
            }
        }
        if (r > 0 && lfd >= 0 && (pf[1].revents & POLLIN))
            tb_control_serve(d, lfd);
        if (tb_daemon_reap(d) == 0 && d->max_runs)
            return false;
    }
}

/* The first non-zero last result, in configuration order (the list is newest first). */
static int final_code(struct tb_daemon *d)
{
    int rc = TB_EXIT_OK;
    pthread_mutex_lock(&d->mu);
    for (struct tb_worker *w = d->workers; w; w = w->next)
        if (!w->retiring && w->final_code != TB_EXIT_OK)
            rc = w->final_code;
    pthread_mutex_unlock(&d->mu);
    return rc;
}

static int control_socket(const struct watch_args *a, char *path, size_t len)
{
    if (a->control)
        snprintf(path, len, "%s", a->control);
    else if (tb_control_default_path(path, len) < 0) {
        tb_log_warn("no control socket: set XDG_RUNTIME_DIR or HOME, or give --control PATH");
        return -1;
    }
    return tb_control_listen(path);
}

int tb_cmd_watch(const struct tb_cli *cli, int argc, char **argv)
{
    static struct watch_args a;
    memset(&a, 0, sizeof(a));
    a.interval = 300;
    a.max_per_host = 8;
    if (parse(argc, argv, &a) < 0)
        return TB_EXIT_USAGE;
    char path[4096], cpath[4096];
    struct tb_config *cfg;
    int rc = load(cli, &a, &cfg, path, sizeof(path));
    if (rc != TB_EXIT_OK)
        return rc;
    int lfd = control_socket(&a, cpath, sizeof(cpath));
    if (lfd < 0 && a.control) {
        tb_config_free(cfg);
        return TB_EXIT_CONFIG;
    }
    /* Signals go to this thread's signalfd only: blocked here, before any thread exists,
     * so every worker (and libuv's threads) inherits the mask. */
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGHUP);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    pthread_sigmask(SIG_BLOCK, &mask, NULL);
    int sfd = signalfd(-1, &mask, SFD_CLOEXEC);
    if (sfd < 0) {
        tb_log_error("watch: signalfd failed");
        if (lfd >= 0) {
            close(lfd);
            unlink(cpath);
        }
        tb_config_free(cfg);
        return TB_EXIT_INTERNAL;
    }
    /* A log for journald or a file: whole lines, as they happen. */
    setvbuf(stdout, NULL, _IOLBF, 0);
    /* Never a password prompt: pairs read their passwords again for every run, from
     * several threads, long after anyone watched the terminal. Without a terminal on stdin
     * an account with no password source is a configuration error (the pair is parked). */
    if (isatty(STDIN_FILENO)) {
        int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (null >= 0 && null != STDIN_FILENO) {
            dup2(null, STDIN_FILENO);
            close(null);
        }
    }
    struct tb_daemon d = {.config_path = path,
                          .only = a.n_names ? a.names : NULL,
                          .n_only = a.n_names,
                          .interval = a.interval,
                          .max_runs = a.max_runs,
                          .max_per_host = (unsigned)a.max_per_host,
                          .metrics_path = a.metrics};
    tb_daemon_init(&d);
    tb_daemon_apply(&d, cfg);
    tb_metrics_write(&d);
    bool signalled = serve(&d, sfd, lfd);
    tb_daemon_stop_all(&d);
    if (lfd >= 0) {
        close(lfd);
        unlink(cpath);
    }
    while (tb_daemon_reap(&d) > 0)
        usleep(50 * 1000);
    rc = signalled ? TB_EXIT_OK : final_code(&d);
    tb_daemon_free(&d);
    close(sfd);
    return rc;
}
