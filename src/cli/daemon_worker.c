/* One pair's worker thread: run, wait for a change, run again, until stopped.
 *
 * Failures: a run that fails for a reason that may pass (network, timeout, a server
 * misbehaving, the pair's lock held by another twinbox) is retried after a delay that
 * starts at 1 s and doubles up to the interval (at most 300 s), with jitter so pairs of
 * one server do not come back in step. The trouble is logged once when it begins and
 * once when a run succeeds again, never per attempt. A configuration or authentication
 * error (or a bug) parks the pair with one error line until a reload restarts it.
 *
 * Stopping: a stop request (SIGTERM, a reload removing or changing the pair) ends a
 * running sync after the mailbox in progress (tb_sync_opts.stop); waits and back-off
 * delays end within 0.2 s. */
#include "cli/cli.h"
#include "cli/daemon.h"

#include "sync/engine.h"
#include "sync/watch.h"
#include "twinbox/config.h"
#include "twinbox/exit.h"
#include "twinbox/log.h"
#include "twinbox/state.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

/* What a cycle (a run and the wait after it) needs: the passwords, read again for each
 * run (a password command or an OAuth token may change), and the state path. */
struct cycle {
    const struct tb_account *acct[2];
    char *pw[2];
    char path[4096];
};

struct trouble {
    bool on;
    double since; /* monotonic seconds */
    double delay; /* the last back-off delay */
    char who[128];
    unsigned seed; /* rand_r's, per worker */
};

static double mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void cycle_free(struct cycle *c)
{
    for (int k = 0; k < 2; k++) {
        tb_password_free(c->pw[k]);
        c->pw[k] = NULL;
    }
}

/* 0, or -1 with a configuration error in e (a password that cannot be read). */
static int cycle_load(struct tb_worker *w, struct cycle *c, struct tb_error *e)
{
    const struct tb_pair *p = w->pair;
    char err[1024];
    memset(c, 0, sizeof(*c));
    c->acct[0] = tb_config_account(w->ref->cfg, p->a);
    c->acct[1] = tb_config_account(w->ref->cfg, p->b);
    for (int k = 0; k < 2; k++) {
        if (tb_account_needs_password(c->acct[k]) &&
            tb_account_password(c->acct[k], &c->pw[k], err, sizeof(err)) < 0) {
            tb_error_set(e, TB_ERR_CONFIG, "%s", err);
            cycle_free(c);
            return -1;
        }
    }
    if (p->state)
        snprintf(c->path, sizeof(c->path), "%s", p->state);
    else if (tb_state_default_path(p->name, c->path, sizeof(c->path)) < 0) {
        tb_error_set(e, TB_ERR_CONFIG, "pair %s: cannot create the state directory", p->name);
        cycle_free(c);
        return -1;
    }
    return 0;
}

/* The engine's events as for one run, minus the progress line: pairs run at once, and a
 * daemon's output is a log. */
static void on_event(void *ud, const struct tb_sync_event *ev)
{
    if (ev->kind != TB_SYNC_EV_PROGRESS && ev->kind != TB_SYNC_EV_PROGRESS_END)
        tb_cli_on_event(ud, ev);
}

/* Sleeps up to secs, in steps that notice w->stop. */
static void nap(struct tb_worker *w, double secs)
{
    for (double end = mono() + secs; !tb_worker_stopping(w) && mono() < end;) {
        double left = end - mono();
        uv_sleep(left > 0.2 ? 200 : (unsigned)(left * 1000) + 1);
    }
}

/* Waits for a change: 1 changed, 0 the interval passed or stopped, -1 the watch failed. */
static int wait_change(struct tb_worker *w, struct cycle *c, char *err, size_t errlen)
{
    struct tb_state *st;
    if (tb_state_open(c->path, &st, err, errlen) < 0)
        return -1;
    uv_loop_t loop;
    uv_loop_init(&loop);
    const char *pws[2] = {c->pw[0], c->pw[1]};
    int watched = 0;
    int r = tb_watch_wait(&loop, w->pair, c->acct, pws, st, w->d->interval, &w->stop, on_event,
                          NULL, &watched, err, errlen);
    uv_loop_close(&loop);
    tb_state_close(st);
    return r;
}

/* The account an error line names ("NAME: ..."), for the trouble lines; "" when it names
 * none (a mailbox left alone, the pair's lock held). */
static void who_failed(const struct tb_pair *p, const char *msg, char *who, size_t len)
{
    const char *names[2] = {p->a, p->b};
    who[0] = 0;
    for (int k = 0; k < 2; k++) {
        size_t n = strlen(names[k]);
        if (strncmp(msg, names[k], n) == 0 && msg[n] == ':') {
            snprintf(who, len, "account %s", names[k]);
            return;
        }
    }
}

/* The message without a leading "pair NAME: ", which our own lines already say. */
static const char *bare(const struct tb_pair *p, const char *msg)
{
    size_t n = strlen(p->name);
    if (strncmp(msg, "pair ", 5) == 0 && strncmp(msg + 5, p->name, n) == 0 &&
        strncmp(msg + 5 + n, ": ", 2) == 0)
        return msg + 7 + n;
    return msg;
}

static bool retryable(int rc)
{
    return rc == TB_EXIT_TEMPFAIL || rc == TB_EXIT_LOCKED;
}

/* Records a finished run in the shared stats. t_wake: when the wake-up that led to it saw
 * a change (0: none), for the propagation histogram. */
static void record(struct tb_worker *w, int rc, const struct tb_cli_result *res, double t_wake)
{
    struct tb_pair_stats *s = &w->st;
    pthread_mutex_lock(&w->d->mu);
    s->runs++;
    s->last_run = (int64_t)time(NULL);
    s->last_code = rc;
    s->copied += res->copied;
    s->bytes += res->bytes;
    s->change_pending = false;
    if (rc == TB_EXIT_OK) {
        s->runs_ok++;
        s->last_success = s->last_run;
        snprintf(s->last_text, sizeof(s->last_text), "ok");
    } else {
        s->runs_failed++;
        s->errors++;
        const char *m = res->err.msg[0] ? res->err.msg : "failed (see the log)";
        snprintf(s->last_text, sizeof(s->last_text), "%s", m);
        snprintf(s->last_error, sizeof(s->last_error), "%s", m);
    }
    if (t_wake > 0 && rc == TB_EXIT_OK) {
        double dt = mono() - t_wake;
        s->prop_count++;
        s->prop_sum += dt;
        for (int i = 0; i < TB_PROP_BUCKETS; i++)
            s->prop_buckets[i] += dt <= tb_prop_bounds[i];
    }
    pthread_mutex_unlock(&w->d->mu);
    tb_metrics_write(w->d);
}

static void set_state(struct tb_worker *w, enum tb_worker_state s, double next_in)
{
    pthread_mutex_lock(&w->d->mu);
    tb_worker_set_state(w, s);
    w->st.next_run = next_in >= 0 ? (int64_t)time(NULL) + (int64_t)(next_in + 0.5) : 0;
    pthread_mutex_unlock(&w->d->mu);
}

/* After a run: logs the trouble's start or end; returns the back-off delay, 0 for none. */
static double judge(struct tb_worker *w, struct trouble *t, int rc, const struct tb_error *e)
{
    const struct tb_pair *p = w->pair;
    if (!retryable(rc)) {
        if (t->on && t->who[0])
            tb_log_info("pair %s: %s reachable again after %.0f s", p->name, t->who,
                        mono() - t->since);
        else if (t->on)
            tb_log_info("pair %s: runs succeed again after %.0f s", p->name, mono() - t->since);
        t->on = false;
        t->delay = 0;
        return 0;
    }
    if (!t->on) {
        const char *why = bare(p, e->msg[0] ? e->msg : "failed");
        who_failed(p, e->msg, t->who, sizeof(t->who));
        if (t->who[0])
            tb_log_error("pair %s: %s unreachable: %s; retrying", p->name, t->who, why);
        else
            tb_log_error("pair %s: %s; retrying", p->name, why);
        t->on = true;
        t->since = mono();
    }
    double cap = w->d->interval < 300 ? w->d->interval : 300;
    t->delay = t->delay ? t->delay * 2 : 1;
    if (t->delay > cap)
        t->delay = cap;
    /* Jitter: between half and all of the delay. */
    return t->delay * (0.5 + 0.5 * ((double)rand_r(&t->seed) / RAND_MAX));
}

/* A run that needs a person (exit 7: a mailbox the other side cannot hold, the
 * mass-change guard) logs its line when it differs from the previous run's, so a pair that
 * stays in that state does not repeat it after every change; a good run forgets it. */
static void conflict(int rc, const struct tb_error *e, char *last, size_t len)
{
    if (rc != TB_EXIT_CONFLICT) {
        last[0] = 0;
        return;
    }
    if (e->msg[0] && strcmp(e->msg, last) != 0)
        tb_log_error("%s", e->msg);
    snprintf(last, len, "%s", e->msg);
}

/* One run with its host slots; the exit code, res filled. */
static int run(struct tb_worker *w, struct cycle *c, struct tb_cli_result *res)
{
    if (!tb_hosts_take(w))
        return -1;
    set_state(w, TB_W_SYNCING, -1);
    const char *pws[2] = {c->pw[0], c->pw[1]};
    struct tb_sync_opts o = {.on_event = on_event, .stop = &w->stop};
    int rc = tb_cli_run_pair(w->pair, c->acct, pws, c->path, &o, res);
    tb_hosts_release(w);
    fflush(stdout);
    return rc;
}

/* Waits for a replaced worker of this pair to end: it holds the pair's state lock. */
static void await_prev(struct tb_worker *w)
{
    pthread_mutex_lock(&w->d->mu);
    while (w->prev && !atomic_load(&w->prev->exited) && !tb_worker_stopping(w)) {
        pthread_mutex_unlock(&w->d->mu);
        uv_sleep(50);
        pthread_mutex_lock(&w->d->mu);
    }
    w->prev = NULL;
    pthread_mutex_unlock(&w->d->mu);
}

/* Parked: one error line, then nothing until a reload or a stop. */
static void park(struct tb_worker *w, const struct tb_error *e)
{
    tb_log_error("pair %s: %s; parked until the configuration is reloaded (SIGHUP)", w->pair->name,
                 bare(w->pair, e->msg[0] ? e->msg : "failed"));
    set_state(w, TB_W_PARKED, -1);
    while (!tb_worker_stopping(w) && !w->d->max_runs)
        uv_sleep(200);
}

/* The wait after a good run; returns the time a change was seen (0: none). */
static double wait_after(struct tb_worker *w, struct cycle *c, double *watch_delay)
{
    char err[1024];
    set_state(w, TB_W_WAITING, w->d->interval);
    int r = wait_change(w, c, err, sizeof(err));
    if (r == 1) {
        pthread_mutex_lock(&w->d->mu);
        w->st.change_pending = true;
        pthread_mutex_unlock(&w->d->mu);
        *watch_delay = 0;
        return mono();
    }
    if (r < 0) {
        /* The watch connection failed (a server going away, often): sync soon, after a
         * short growing delay; the run tells whether the server is reachable and logs. */
        *watch_delay = *watch_delay ? *watch_delay * 2 : 1;
        if (*watch_delay > w->d->interval)
            *watch_delay = w->d->interval;
        tb_log_debug(1, "pair %s: watch: %s", w->pair->name, err);
        nap(w, *watch_delay);
    } else {
        *watch_delay = 0;
    }
    return 0;
}

void *tb_worker_main(void *ud)
{
    struct tb_worker *w = ud;
    struct trouble t = {.seed = (unsigned)(uintptr_t)w ^ (unsigned)time(NULL)};
    double t_wake = 0, watch_delay = 0;
    char last_conflict[sizeof(((struct tb_error *)0)->msg)] = "";
    int rc = TB_EXIT_OK;
    await_prev(w);
    for (long n = 0; !tb_worker_stopping(w) && (!w->d->max_runs || n < w->d->max_runs); n++) {
        struct cycle c;
        struct tb_cli_result res = {.quiet = true};
        if (cycle_load(w, &c, &res.err) < 0) {
            rc = TB_EXIT_CONFIG;
            record(w, rc, &res, 0);
            park(w, &res.err);
            break;
        }
        rc = run(w, &c, &res);
        if (rc < 0) { /* stopped while waiting for a slot */
            cycle_free(&c);
            rc = TB_EXIT_OK;
            break;
        }
        record(w, rc, &res, t_wake);
        t_wake = 0;
        if (tb_worker_stopping(w)) {
            /* Stopped inside the run (after a mailbox), or just after it: no trouble. */
            if (rc == TB_EXIT_TEMPFAIL && strstr(res.err.msg, ": stopped after "))
                tb_log_info("%s; the next run does the rest", res.err.msg);
            cycle_free(&c);
            rc = TB_EXIT_OK;
            break;
        }
        if (!retryable(rc) && rc != TB_EXIT_OK && rc != TB_EXIT_CONFLICT) {
            judge(w, &t, TB_EXIT_OK, &res.err); /* it answered: not a network trouble */
            cycle_free(&c);
            park(w, &res.err);
            break;
        }
        conflict(rc, &res.err, last_conflict, sizeof(last_conflict));
        double delay = judge(w, &t, rc, &res.err);
        bool last = w->d->max_runs && n + 1 >= w->d->max_runs;
        if (delay > 0 && !last) {
            set_state(w, TB_W_BACKOFF, delay);
            nap(w, delay);
        } else if (!last && !tb_worker_stopping(w)) {
            t_wake = wait_after(w, &c, &watch_delay);
        }
        cycle_free(&c);
    }
    pthread_mutex_lock(&w->d->mu);
    w->final_code = rc;
    tb_worker_set_state(w, TB_W_STOPPED);
    w->st.next_run = 0;
    pthread_mutex_unlock(&w->d->mu);
    tb_metrics_write(w->d);
    /* Last: the main thread may join and free w from here on. */
    pthread_mutex_lock(&w->d->mu);
    atomic_store(&w->exited, true);
    pthread_cond_broadcast(&w->d->cv);
    pthread_mutex_unlock(&w->d->mu);
    return NULL;
}
