/* The bound on concurrent runs per server host (watch --max-per-host, default 8): 500
 * pairs on one server do not open 1,000 connections at once after a restart or an outage;
 * they queue for a slot. A run takes one slot on each of its two hosts (one when both
 * sides are on the same host); tunnel accounts have no host and take none. The waits
 * between runs (XREPLICATE WATCH, one idle connection per watched side) take no slot:
 * they are idle, and they are what makes a change arrive quickly. */
#include "cli/daemon.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

/* Under mu: the counter of host, or NULL for no host (tunnel) or a full table. */
static unsigned *slot(struct tb_daemon *d, const char *host)
{
    if (!host[0])
        return NULL;
    for (size_t i = 0; i < d->n_hosts; i++)
        if (strcmp(d->hosts[i].host, host) == 0)
            return &d->hosts[i].n;
    if (d->n_hosts == sizeof(d->hosts) / sizeof(d->hosts[0]))
        return NULL;
    snprintf(d->hosts[d->n_hosts].host, sizeof(d->hosts[0].host), "%s", host);
    d->hosts[d->n_hosts].n = 0;
    return &d->hosts[d->n_hosts++].n;
}

static void both(struct tb_worker *w, unsigned **a, unsigned **b)
{
    *a = slot(w->d, w->hosts[0]);
    *b = slot(w->d, w->hosts[1]);
    if (*b == *a)
        *b = NULL;
}

bool tb_hosts_take(struct tb_worker *w)
{
    struct tb_daemon *d = w->d;
    unsigned limit = d->max_per_host;
    pthread_mutex_lock(&d->mu);
    for (;;) {
        if (tb_worker_stopping(w)) {
            pthread_mutex_unlock(&d->mu);
            return false;
        }
        unsigned *a, *b;
        both(w, &a, &b);
        if (!limit || ((!a || *a < limit) && (!b || *b < limit))) {
            if (limit && a)
                (*a)++;
            if (limit && b)
                (*b)++;
            break;
        }
        /* Timed, so a stop flag set without a broadcast is still seen. */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 200 * 1000 * 1000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&d->cv, &d->mu, &ts);
    }
    pthread_mutex_unlock(&d->mu);
    return true;
}

void tb_hosts_release(struct tb_worker *w)
{
    struct tb_daemon *d = w->d;
    pthread_mutex_lock(&d->mu);
    unsigned *a, *b;
    both(w, &a, &b);
    if (d->max_per_host && a && *a)
        (*a)--;
    if (d->max_per_host && b && *b)
        (*b)--;
    pthread_cond_broadcast(&d->cv);
    pthread_mutex_unlock(&d->mu);
}
