/* The daemon's status as one JSON document (control socket "status"):
 *   {"pid": N, "started": T, "config": "...", "interval": S,
 *    "pairs": [{"name", "state", "since", "last_run", "last_result": {"code", "text"},
 *               "last_error", "last_success", "runs", "runs_failed", "messages_copied",
 *               "bytes", "next_run", "change_pending"}, ...]}
 * Times are unix seconds, 0 for never or unknown. next_run is the latest time the next run
 * starts (the interval's end while waiting, the retry while backing off; a change seen by
 * a watch starts it sooner); change_pending says a wake-up saw a change that the running
 * or next run carries. Strings come from the configuration and from servers: escaped, and
 * bytes that are not UTF-8 replaced by U+FFFD, so the document is always valid JSON. */
#include "cli/cli.h"
#include "cli/daemon.h"

#include "twinbox/config.h"
#include "util/buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void pair_json(FILE *f, const char *name, const struct tb_pair_stats *s)
{
    fputs("{\"name\": ", f);
    tb_json_string(f, name);
    fputs(", \"state\": ", f);
    tb_json_string(f, tb_worker_state_name(s->state));
    fprintf(f, ", \"since\": %lld, \"last_run\": %lld, \"last_result\": ", (long long)s->since,
            (long long)s->last_run);
    if (s->runs) {
        fprintf(f, "{\"code\": %d, \"text\": ", s->last_code);
        tb_json_string(f, s->last_text);
        fputc('}', f);
    } else {
        fputs("null", f);
    }
    fputs(", \"last_error\": ", f);
    if (s->last_error[0])
        tb_json_string(f, s->last_error);
    else
        fputs("null", f);
    fprintf(f,
            ", \"last_success\": %lld, \"runs\": %llu, \"runs_failed\": %llu, "
            "\"messages_copied\": %llu, \"bytes\": %llu, \"next_run\": %lld, "
            "\"change_pending\": %s}",
            (long long)s->last_success, (unsigned long long)s->runs,
            (unsigned long long)s->runs_failed, (unsigned long long)s->copied,
            (unsigned long long)s->bytes, (long long)s->next_run,
            s->change_pending ? "true" : "false");
}

char *tb_daemon_status_json(struct tb_daemon *d)
{
    char *doc = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&doc, &len);
    if (!f)
        return tb_xstrdup("{\"error\": \"out of memory\"}");
    fprintf(f, "{\"pid\": %d, \"started\": %lld, \"config\": ", (int)getpid(),
            (long long)d->started);
    tb_json_string(f, d->config_path);
    fprintf(f, ", \"interval\": %g, \"pairs\": [", d->interval);
    pthread_mutex_lock(&d->mu);
    /* The list is newest first; pairs are shown oldest first, retiring ones left out. */
    size_t n = 0;
    for (struct tb_worker *w = d->workers; w; w = w->next)
        n++;
    const struct tb_worker **v = tb_xcalloc(n + 1, sizeof(*v));
    size_t k = n;
    for (struct tb_worker *w = d->workers; w; w = w->next)
        v[--k] = w;
    bool first = true;
    for (size_t i = 0; i < n; i++) {
        if (v[i]->retiring)
            continue;
        fputs(first ? "\n  " : ",\n  ", f);
        first = false;
        pair_json(f, v[i]->pair->name, &v[i]->st);
    }
    pthread_mutex_unlock(&d->mu);
    free(v);
    fputs("]}", f);
    fclose(f);
    return doc;
}
