/* `watch --metrics FILE`: the daemon's counters in Prometheus text format (version 0.0.4),
 * rewritten after every run, for node_exporter's textfile collector or any scraper that
 * reads a file. Written to FILE.tmp.PID and renamed over FILE, so a reader sees the old
 * or the new file, never half of one. Counters start at 0 when a pair's worker starts
 * (daemon start, or a reload that changed the pair): Prometheus treats that as a reset.
 *
 *   twinbox_runs_total{pair,result="ok"|"failed"}   runs ended
 *   twinbox_messages_copied_total{pair}            messages copied, both directions
 *   twinbox_bytes_total{pair}                      bytes of the messages copied
 *   twinbox_errors_total{pair}                     failed runs
 *   twinbox_last_success_timestamp_seconds{pair}   end of the last good run (0 never)
 *   twinbox_pair_up{pair}                          1 when the last run succeeded
 *   twinbox_propagation_seconds{pair} (histogram)  from the wake-up that saw a change
 *                                                  to the end of the run that carried it */
#include "cli/cli.h"
#include "cli/daemon.h"

#include "twinbox/config.h"
#include "twinbox/log.h"
#include "util/buf.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const double tb_prop_bounds[TB_PROP_BUCKETS] = {0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300};

struct snap {
    char *name;
    struct tb_pair_stats st;
};

/* A label value: backslash, double quote and newline escaped as the format says; bytes
 * that are not UTF-8 become '?'. */
static void label(FILE *f, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        size_t n = tb_utf8_seq_len(p);
        if (n == 0) {
            fputc('?', f);
            p++;
        } else if (*p == '\\' || *p == '"') {
            fprintf(f, "\\%c", *p++);
        } else if (*p == '\n') {
            fputs("\\n", f);
            p++;
        } else {
            fwrite(p, 1, n, f);
            p += n;
        }
    }
}

/* One sample line: NAME{pair="P"EXTRA} VALUE */
static void sample(FILE *f, const char *metric, const char *pair, const char *extra, double v)
{
    fprintf(f, "%s{pair=\"", metric);
    label(f, pair);
    fprintf(f, "\"%s} %.17g\n", extra, v);
}

static void head(FILE *f, const char *metric, const char *type, const char *help)
{
    fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", metric, help, metric, type);
}

static void histogram(FILE *f, const struct snap *s, size_t n)
{
    head(f, "twinbox_propagation_seconds", "histogram",
         "Seconds from the wake-up that saw a change to the end of the run that carried it.");
    for (size_t i = 0; i < n; i++) {
        for (int b = 0; b < TB_PROP_BUCKETS; b++) {
            char le[48];
            snprintf(le, sizeof(le), ",le=\"%g\"", tb_prop_bounds[b]);
            sample(f, "twinbox_propagation_seconds_bucket", s[i].name, le,
                   (double)s[i].st.prop_buckets[b]);
        }
        sample(f, "twinbox_propagation_seconds_bucket", s[i].name, ",le=\"+Inf\"",
               (double)s[i].st.prop_count);
        sample(f, "twinbox_propagation_seconds_sum", s[i].name, "", s[i].st.prop_sum);
        sample(f, "twinbox_propagation_seconds_count", s[i].name, "", (double)s[i].st.prop_count);
    }
}

static void render(FILE *f, const struct snap *s, size_t n)
{
    head(f, "twinbox_runs_total", "counter", "Sync runs ended, by result.");
    for (size_t i = 0; i < n; i++) {
        sample(f, "twinbox_runs_total", s[i].name, ",result=\"ok\"", (double)s[i].st.runs_ok);
        sample(f, "twinbox_runs_total", s[i].name, ",result=\"failed\"",
               (double)s[i].st.runs_failed);
    }
    static const struct {
        const char *metric, *type, *help;
        size_t off;
    } plain[] = {
        {"twinbox_messages_copied_total", "counter", "Messages copied, both directions.",
         offsetof(struct tb_pair_stats, copied)},
        {"twinbox_bytes_total", "counter", "Bytes of the messages copied.",
         offsetof(struct tb_pair_stats, bytes)},
        {"twinbox_errors_total", "counter", "Failed runs.", offsetof(struct tb_pair_stats, errors)},
    };
    for (size_t m = 0; m < sizeof(plain) / sizeof(plain[0]); m++) {
        head(f, plain[m].metric, plain[m].type, plain[m].help);
        for (size_t i = 0; i < n; i++) {
            uint64_t v;
            memcpy(&v, (const char *)&s[i].st + plain[m].off, sizeof(v));
            sample(f, plain[m].metric, s[i].name, "", (double)v);
        }
    }
    head(f, "twinbox_last_success_timestamp_seconds", "gauge",
         "Unix time the last good run ended (0: none yet).");
    for (size_t i = 0; i < n; i++)
        sample(f, "twinbox_last_success_timestamp_seconds", s[i].name, "",
               (double)s[i].st.last_success);
    head(f, "twinbox_pair_up", "gauge", "1 when the pair's last run succeeded.");
    for (size_t i = 0; i < n; i++)
        sample(f, "twinbox_pair_up", s[i].name, "", s[i].st.runs && s[i].st.last_code == 0 ? 1 : 0);
    histogram(f, s, n);
}

/* Under metrics_mu. */
static int write_file(const char *path, const char *text, size_t len, char *err, size_t errlen)
{
    char tmp[4200];
    if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid()) >= sizeof(tmp)) {
        snprintf(err, errlen, "path too long");
        return -1;
    }
    FILE *f = fopen(tmp, "w");
    if (!f) {
        snprintf(err, errlen, "%s: %s", tmp, strerror(errno));
        return -1;
    }
    bool ok = fwrite(text, 1, len, f) == len;
    ok = fclose(f) == 0 && ok;
    if (!ok || rename(tmp, path) < 0) {
        snprintf(err, errlen, "%s: %s", ok ? path : tmp, strerror(errno));
        unlink(tmp);
        return -1;
    }
    return 0;
}

void tb_metrics_write(struct tb_daemon *d)
{
    if (!d->metrics_path)
        return;
    pthread_mutex_lock(&d->metrics_mu);
    pthread_mutex_lock(&d->mu);
    size_t n = 0;
    for (struct tb_worker *w = d->workers; w; w = w->next)
        n += !w->retiring;
    struct snap *s = tb_xcalloc(n + 1, sizeof(*s));
    size_t k = n;
    for (struct tb_worker *w = d->workers; w; w = w->next) {
        if (w->retiring)
            continue;
        k--; /* oldest first */
        s[k].name = tb_xstrdup(w->pair->name);
        s[k].st = w->st;
    }
    pthread_mutex_unlock(&d->mu);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    static bool failed; /* under metrics_mu: one error line per failing streak */
    char err[4400] = "out of memory";
    if (f) {
        render(f, s, n);
        fclose(f);
    }
    if (f && write_file(d->metrics_path, text, len, err, sizeof(err)) == 0) {
        if (failed)
            tb_log_info("metrics: %s written again", d->metrics_path);
        failed = false;
    } else if (!failed) {
        tb_log_error("metrics: cannot write %s: %s", d->metrics_path, err);
        failed = true;
    }
    free(text);
    for (size_t i = 0; i < n; i++)
        free(s[i].name);
    free(s);
    pthread_mutex_unlock(&d->metrics_mu);
}
