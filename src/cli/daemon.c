/* The daemon's workers and configurations: which pairs run, and what a reload changes.
 *
 * Threads: each worker runs tb_sync_pair and tb_watch_wait on its own uv loop with its own
 * tb_state (SQLite connection; the library is built thread-safe and a connection is never
 * shared), its own stores and connections. What they share was checked: the engine keeps
 * no global state (run ids are an atomic counter); libetpan's parser is reentrant and the
 * one registration (X-REPLICATE) is done under pthread_once; OpenSSL 1.1+ initialises
 * itself once, thread-safely, and each connection has its own SSL_CTX; the environment
 * list for children is guarded by a mutex (util/env.c); tb_log writes each line under
 * stderr's lock (util/log.c) and stdout lines are single printf calls, so lines from
 * several pairs never mix; tb_verbosity is set before any thread starts. Configurations
 * are read-only once loaded and shared by reference (struct tb_cfg_ref). */
#include "cli/daemon.h"

#include "twinbox/config.h"
#include "twinbox/log.h"
#include "util/buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const char *tb_worker_state_name(enum tb_worker_state s)
{
    static const char *const names[] = {
        [TB_W_STARTING] = "starting", [TB_W_SYNCING] = "syncing", [TB_W_WAITING] = "waiting",
        [TB_W_BACKOFF] = "backoff",   [TB_W_PARKED] = "parked",   [TB_W_STOPPED] = "stopped"};
    return names[s];
}

void tb_worker_set_state(struct tb_worker *w, enum tb_worker_state s)
{
    if (w->st.state != s)
        w->st.since = (int64_t)time(NULL);
    w->st.state = s;
}

void tb_daemon_init(struct tb_daemon *d)
{
    pthread_mutex_init(&d->mu, NULL);
    pthread_cond_init(&d->cv, NULL);
    pthread_mutex_init(&d->metrics_mu, NULL);
    d->started = (int64_t)time(NULL);
}

static bool str_eq(const char *a, const char *b)
{
    return a == b || (a && b && strcmp(a, b) == 0);
}

static bool strv_eq(char **a, size_t na, char **b, size_t nb)
{
    if (na != nb)
        return false;
    for (size_t i = 0; i < na; i++)
        if (!str_eq(a[i], b[i]))
            return false;
    return true;
}

/* Every setting of an account (its name and source line aside: moving a section in the
 * file changes nothing a connection uses). A key added to struct tb_account or struct
 * tb_pair must be compared here or in pair_same, or a reload will not apply it. */
static bool account_eq(const struct tb_account *x, const struct tb_account *y)
{
    return x->type == y->type && str_eq(x->host, y->host) && x->port == y->port &&
           str_eq(x->user, y->user) && str_eq(x->password, y->password) &&
           str_eq(x->password_file, y->password_file) &&
           str_eq(x->password_command, y->password_command) &&
           str_eq(x->password_env, y->password_env) && x->starttls == y->starttls &&
           str_eq(x->tls_ca_file, y->tls_ca_file) &&
           strcmp(x->tls_fingerprint, y->tls_fingerprint) == 0 && x->tls_verify == y->tls_verify &&
           x->allow_plaintext_password == y->allow_plaintext_password &&
           x->compress == y->compress && x->compress_auto == y->compress_auto &&
           str_eq(x->command, y->command) && x->max_inflight == y->max_inflight &&
           x->timeout_s == y->timeout_s && x->xreplicate == y->xreplicate &&
           x->max_line == y->max_line && x->max_response_line == y->max_response_line &&
           x->max_message_size == y->max_message_size && x->auth == y->auth &&
           str_eq(x->auth_user, y->auth_user) &&
           str_eq(x->oauth_token_command, y->oauth_token_command) &&
           x->max_bytes_per_second == y->max_bytes_per_second &&
           x->max_messages_per_second == y->max_messages_per_second;
}

/* Whether pair p of cfg runs exactly as pair q of ncfg: its keys and both accounts. */
static bool pair_same(const struct tb_config *cfg, const struct tb_pair *p,
                      const struct tb_config *ncfg, const struct tb_pair *q)
{
    if (p->max_delete != q->max_delete || p->max_delete_value != q->max_delete_value ||
        !str_eq(p->a, q->a) || !str_eq(p->b, q->b) || !str_eq(p->state, q->state) ||
        p->replica != q->replica ||
        !strv_eq(p->mailboxes, p->n_mailboxes, q->mailboxes, q->n_mailboxes) ||
        !strv_eq(p->exclude, p->n_exclude, q->exclude, q->n_exclude) ||
        !strv_eq(p->watch_mailboxes, p->n_watch_mailboxes, q->watch_mailboxes,
                 q->n_watch_mailboxes))
        return false;
    return account_eq(tb_config_account(cfg, p->a), tb_config_account(ncfg, q->a)) &&
           account_eq(tb_config_account(cfg, p->b), tb_config_account(ncfg, q->b));
}

static bool wanted(const struct tb_daemon *d, const char *name)
{
    if (!d->only)
        return true;
    for (size_t i = 0; i < d->n_only; i++)
        if (strcmp(d->only[i], name) == 0)
            return true;
    return false;
}

static void unref(struct tb_cfg_ref *ref)
{
    if (--ref->refs == 0) {
        tb_config_free(ref->cfg);
        free(ref);
    }
}

/* Under d->mu: a new worker for pair p, first in the list, its thread running. */
static void start_worker(struct tb_daemon *d, struct tb_cfg_ref *ref, const struct tb_pair *p,
                         struct tb_worker *prev)
{
    struct tb_worker *w = tb_xcalloc(1, sizeof(*w));
    w->d = d;
    w->ref = ref;
    ref->refs++;
    w->pair = p;
    w->prev = prev;
    for (int k = 0; k < 2; k++) {
        const struct tb_account *a = tb_config_account(ref->cfg, k ? p->b : p->a);
        snprintf(w->hosts[k], sizeof(w->hosts[k]), "%s", a->host ? a->host : "");
    }
    w->st.state = TB_W_STARTING;
    w->st.since = (int64_t)time(NULL);
    w->next = d->workers;
    d->workers = w;
    if (pthread_create(&w->thread, NULL, tb_worker_main, w) == 0) {
        w->started = true;
    } else {
        tb_log_error("pair %s: cannot start a thread", p->name);
        w->st.state = TB_W_STOPPED;
        w->final_code = 1;
        atomic_store(&w->exited, true);
    }
}

static struct tb_worker *active_worker(struct tb_daemon *d, const char *name)
{
    for (struct tb_worker *w = d->workers; w; w = w->next)
        if (!w->retiring && strcmp(w->pair->name, name) == 0)
            return w;
    return NULL;
}

size_t tb_daemon_apply(struct tb_daemon *d, struct tb_config *cfg)
{
    struct tb_cfg_ref *ref = tb_xcalloc(1, sizeof(*ref));
    ref->cfg = cfg;
    ref->refs = 1; /* ours, until the end of this function */
    size_t served = 0;
    pthread_mutex_lock(&d->mu);
    for (struct tb_worker *w = d->workers; w; w = w->next) {
        if (w->retiring)
            continue;
        const struct tb_pair *q = tb_config_pair(cfg, w->pair->name);
        bool parked = w->st.state == TB_W_PARKED;
        if (q && wanted(d, q->name) && !parked && pair_same(w->ref->cfg, w->pair, cfg, q))
            continue; /* untouched: keeps its thread and connections */
        if (!q || !wanted(d, w->pair->name))
            tb_log_info("pair %s: removed from the configuration; stopping", w->pair->name);
        w->retiring = true;
        tb_worker_stop(w);
    }
    pthread_cond_broadcast(&d->cv);
    for (size_t i = 0; i < cfg->n_pairs; i++) {
        const struct tb_pair *p = cfg->pairs[i];
        if (!wanted(d, p->name))
            continue;
        served++;
        if (active_worker(d, p->name))
            continue;
        /* A replaced worker of the same name: the new one waits for it to end (it holds
         * the pair's state lock until then). */
        struct tb_worker *prev = NULL;
        for (struct tb_worker *w = d->workers; w && !prev; w = w->next)
            if (w->retiring && !atomic_load(&w->exited) && strcmp(w->pair->name, p->name) == 0)
                prev = w;
        start_worker(d, ref, p, prev);
    }
    unref(ref);
    pthread_mutex_unlock(&d->mu);
    return served;
}

void tb_daemon_stop_all(struct tb_daemon *d)
{
    pthread_mutex_lock(&d->mu);
    for (struct tb_worker *w = d->workers; w; w = w->next)
        tb_worker_stop(w);
    pthread_cond_broadcast(&d->cv);
    pthread_mutex_unlock(&d->mu);
}

/* Under d->mu: whether a worker still waits for w to end. */
static bool awaited(const struct tb_daemon *d, const struct tb_worker *w)
{
    for (const struct tb_worker *s = d->workers; s; s = s->next)
        if (s->prev == w)
            return true;
    return false;
}

size_t tb_daemon_reap(struct tb_daemon *d)
{
    size_t running = 0;
    pthread_mutex_lock(&d->mu);
    for (struct tb_worker **pp = &d->workers; *pp;) {
        struct tb_worker *w = *pp;
        bool ended = atomic_load(&w->exited);
        if (ended && w->started && !w->joined) {
            pthread_join(w->thread, NULL); /* it has returned or is returning */
            w->joined = true;
        }
        if (ended && w->retiring && !awaited(d, w)) {
            *pp = w->next;
            unref(w->ref);
            free(w);
            continue;
        }
        running += !ended && !w->retiring;
        pp = &w->next;
    }
    pthread_mutex_unlock(&d->mu);
    return running;
}

void tb_daemon_free(struct tb_daemon *d)
{
    tb_daemon_stop_all(d);
    for (;;) {
        pthread_mutex_lock(&d->mu);
        bool all = true;
        for (struct tb_worker *w = d->workers; w; w = w->next)
            all = all && atomic_load(&w->exited);
        pthread_mutex_unlock(&d->mu);
        if (all)
            break;
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    pthread_mutex_lock(&d->mu);
    for (struct tb_worker *w = d->workers; w; w = w->next)
        w->retiring = true;
    pthread_mutex_unlock(&d->mu);
    tb_daemon_reap(d);
    pthread_cond_destroy(&d->cv);
    pthread_mutex_destroy(&d->mu);
    pthread_mutex_destroy(&d->metrics_mu);
}
