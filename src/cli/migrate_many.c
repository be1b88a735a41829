/* `twinbox migrate --accounts FILE --jobs N`: many migrations in one process.
 *
 * FILE holds one migration per line: SRC,DST[,SRC_PASSWORD[,DST_PASSWORD]] where SRC and
 * DST are URLs or account names and a password is file:PATH, command:CMD (the rest of the
 * line for the last field) or env:NAME; empty or missing: the account's own source. Lines
 * that are empty or start with '#' are skipped. Each migration runs in its own thread with
 * its own event loop and state file (so a rerun of the same FILE resumes every account);
 * N run at once, and at most --max-per-host of them use one server host at a time. One
 * failing account never stops the others; the exit code is the worst of all. */
#include "cli/migrate.h"

#include "twinbox/exit.h"
#include "twinbox/log.h"
#include "util/buf.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_ACCOUNTS 10000

struct job {
    unsigned line;
    char *fields[4]; /* owned; NULL when absent */
    char label[48];
    int rc; /* -1 waiting, -2 running, else its exit code */
    struct tb_cli_result res;
    double secs;
    char host[2][256];
};

struct many {
    const struct tb_cli *cli;
    const struct tb_migrate_args *m;
    struct job *jobs;
    size_t n;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* running migrations per host: a short list, hosts are few */
    struct {
        char host[256];
        unsigned n;
    } hosts[256];
    size_t n_hosts;
};

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t l = strlen(s);
    while (l && (s[l - 1] == ' ' || s[l - 1] == '\t' || s[l - 1] == '\r' || s[l - 1] == '\n'))
        s[--l] = 0;
    return s;
}

/* The host of a URL (imap://user@host:port/...), or the argument itself. */
static void host_of(const char *arg, char *out, size_t len)
{
    const char *p = strstr(arg, "://");
    p = p ? p + 3 : arg;
    const char *at = strchr(p, '@'), *slash = strchr(p, '/');
    if (at && (!slash || at < slash))
        p = at + 1;
    size_t n = strcspn(p, ":/?");
    snprintf(out, len, "%.*s", (int)(n < len ? n : len - 1), p);
}

static int parse_file(const char *path, struct many *mm)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        tb_log_error("migrate: %s: cannot open", path);
        return TB_EXIT_CONFIG;
    }
    char buf[8192];
    unsigned line = 0;
    int rc = TB_EXIT_OK;
    while (fgets(buf, sizeof(buf), f) && rc == TB_EXIT_OK) {
        line++;
        char *s = trim(buf);
        if (!s[0] || s[0] == '#')
            continue;
        if (mm->n >= MAX_ACCOUNTS) {
            tb_log_error("migrate: %s: more than %d migrations", path, MAX_ACCOUNTS);
            rc = TB_EXIT_CONFIG;
            break;
        }
        struct job *j = &mm->jobs[mm->n];
        memset(j, 0, sizeof(*j));
        j->line = line;
        for (int k = 0; k < 4 && s; k++) {
            char *comma = k < 3 ? strchr(s, ',') : NULL;
            if (comma)
                *comma = 0;
            char *v = trim(s);
            j->fields[k] = v[0] ? tb_xstrdup(v) : NULL;
            s = comma ? comma + 1 : NULL;
        }
        if (!j->fields[0] || !j->fields[1]) {
            tb_log_error("migrate: %s:%u: want SRC,DST[,SRC_PASSWORD[,DST_PASSWORD]]", path, line);
            rc = TB_EXIT_CONFIG;
        }
        snprintf(j->label, sizeof(j->label), "migrate line %u", line);
        host_of(j->fields[0] ? j->fields[0] : "", j->host[0], sizeof(j->host[0]));
        host_of(j->fields[1] ? j->fields[1] : "", j->host[1], sizeof(j->host[1]));
        mm->n++;
    }
    fclose(f);
    return rc;
}

/* "file:PATH", "command:CMD", "env:NAME" into the args of one side; false when malformed. */
static bool password_spec(struct tb_migrate_args *a, int k, const char *spec)
{
    if (!spec)
        return true;
    if (strncmp(spec, "file:", 5) == 0)
        a->pw_file[k] = spec + 5;
    else if (strncmp(spec, "command:", 8) == 0)
        a->pw_cmd[k] = spec + 8;
    else if (strncmp(spec, "env:", 4) == 0 && getenv(spec + 4))
        a->pw_env[k] = spec + 4;
    else
        return false;
    return true;
}

static unsigned *host_slot(struct many *mm, const char *host)
{
    for (size_t i = 0; i < mm->n_hosts; i++)
        if (strcmp(mm->hosts[i].host, host) == 0)
            return &mm->hosts[i].n;
    if (mm->n_hosts == sizeof(mm->hosts) / sizeof(*mm->hosts))
        return NULL; /* more hosts than slots: unbounded for the rest */
    snprintf(mm->hosts[mm->n_hosts].host, sizeof(mm->hosts[0].host), "%s", host);
    mm->hosts[mm->n_hosts].n = 0;
    return &mm->hosts[mm->n_hosts++].n;
}

/* Under mu: whether j may start now (each of its hosts below --max-per-host), taking
 * their slots if so. A job whose two accounts are on one host takes one slot there. */
static bool take_hosts(struct many *mm, struct job *j)
{
    unsigned limit = mm->m->per_host;
    if (!limit)
        return true;
    unsigned *a = host_slot(mm, j->host[0]), *b = host_slot(mm, j->host[1]);
    if (b == a)
        b = NULL;
    if ((a && *a >= limit) || (b && *b >= limit))
        return false;
    if (a)
        (*a)++;
    if (b)
        (*b)++;
    return true;
}

static void release_hosts(struct many *mm, struct job *j)
{
    if (!mm->m->per_host)
        return;
    unsigned *a = host_slot(mm, j->host[0]), *b = host_slot(mm, j->host[1]);
    if (b == a)
        b = NULL;
    if (a && *a)
        (*a)--;
    if (b && *b)
        (*b)--;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void run_job(struct many *mm, struct job *j)
{
    struct tb_migrate_args a = *mm->m;
    a.side[0] = j->fields[0];
    a.side[1] = j->fields[1];
    if (!password_spec(&a, 0, j->fields[2]) || !password_spec(&a, 1, j->fields[3])) {
        tb_log_error("%s: a password must be file:PATH, command:CMD or env:NAME (set)", j->label);
        j->rc = TB_EXIT_CONFIG;
        return;
    }
    fprintf(stderr, "twinbox: %s: started (%s -> %s)\n", j->label, j->host[0], j->host[1]);
    double t0 = now();
    j->rc = tb_migrate_one(mm->cli, &a, j->label, &j->res);
    j->secs = now() - t0;
    fprintf(stderr, "twinbox: %s: %s, %llu copied in %.1f s\n", j->label,
            j->rc == TB_EXIT_OK ? "done" : "FAILED", (unsigned long long)j->res.copied, j->secs);
}

/* Jobs: rc -1 waiting, -2 running, else finished with that exit code. */
static void *worker(void *ud)
{
    struct many *mm = ud;
    pthread_mutex_lock(&mm->mu);
    for (;;) {
        struct job *j = NULL;
        bool waiting = false;
        for (size_t i = 0; i < mm->n && !j; i++) {
            if (mm->jobs[i].rc != -1)
                continue;
            waiting = true;
            if (take_hosts(mm, &mm->jobs[i]))
                j = &mm->jobs[i];
        }
        if (!waiting)
            break;
        if (!j) {
            pthread_cond_wait(&mm->cv, &mm->mu);
            continue;
        }
        j->rc = -2;
        pthread_mutex_unlock(&mm->mu);
        run_job(mm, j);
        pthread_mutex_lock(&mm->mu);
        release_hosts(mm, j);
        pthread_cond_broadcast(&mm->cv);
    }
    pthread_mutex_unlock(&mm->mu);
    return NULL;
}

static int table(const struct many *mm)
{
    int worst = TB_EXIT_OK;
    printf("%-6s %-28s %-28s %-7s %8s %8s %8s %8s\n", "line", "source", "destination", "result",
           "copied", "matched", "skipped", "seconds");
    for (size_t i = 0; i < mm->n; i++) {
        const struct job *j = &mm->jobs[i];
        printf("%-6u %-28.28s %-28.28s %-7s %8llu %8llu %8llu %8.1f\n", j->line, j->fields[0],
               j->fields[1], j->rc == TB_EXIT_OK ? "ok" : "FAILED",
               (unsigned long long)j->res.copied, (unsigned long long)j->res.matched,
               (unsigned long long)j->res.skipped, j->secs);
        if (j->rc > worst)
            worst = j->rc;
    }
    size_t failed = 0;
    for (size_t i = 0; i < mm->n; i++)
        failed += mm->jobs[i].rc != TB_EXIT_OK;
    printf("migrate: %zu of %zu accounts migrated%s\n", mm->n - failed, mm->n,
           failed ? "; the failed ones are named above (rerun the same file to resume)" : "");
    return worst;
}

int tb_migrate_many(const struct tb_cli *cli, const struct tb_migrate_args *m)
{
    struct many mm = {.cli = cli, .m = m};
    mm.jobs = tb_xcalloc(MAX_ACCOUNTS, sizeof(*mm.jobs));
    int rc = parse_file(m->accounts, &mm);
    if (rc == TB_EXIT_OK && mm.n == 0) {
        tb_log_error("migrate: %s: no migration in it", m->accounts);
        rc = TB_EXIT_CONFIG;
    }
    if (rc == TB_EXIT_OK) {
        for (size_t i = 0; i < mm.n; i++)
            mm.jobs[i].rc = -1; /* waiting */
        pthread_mutex_init(&mm.mu, NULL);
        pthread_cond_init(&mm.cv, NULL);
        unsigned n = m->jobs < mm.n ? m->jobs : (unsigned)mm.n;
        pthread_t th[256];
        unsigned started = 0;
        for (; started < n; started++)
            if (pthread_create(&th[started], NULL, worker, &mm) != 0)
                break;
        if (started == 0)
            worker(&mm);
        for (unsigned i = 0; i < started; i++)
            pthread_join(th[i], NULL);
        pthread_cond_destroy(&mm.cv);
        pthread_mutex_destroy(&mm.mu);
        rc = table(&mm);
    }
    for (size_t i = 0; i < mm.n; i++)
        for (int k = 0; k < 4; k++)
            free(mm.jobs[i].fields[k]);
    free(mm.jobs);
    return rc;
}
