/* The terminal rendering of the engine's events (sync/events.h), byte for byte what twinbox
 * printed before the engine reported through events: plans and mailbox actions one line
 * each on stdout, warnings and -v traces through the log on stderr, and the progress line
 * rewritten in place on stderr only when stderr is a terminal (never in a log or journal). */
#include "cli/cli.h"

#include "sync/engine.h"
#include "sync/events.h"
#include "twinbox/log.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <unistd.h>

/* One terminal line, rewritten in place: mailboxes, messages and bytes, rate, ETA. The
 * ETA extrapolates from the share of mailboxes done: rough, but needs no pre-scan. */
static void progress(const struct tb_sync_event *ev)
{
    const struct tb_sync_stats *st = ev->stats;
    double dt = ev->elapsed, mb = (double)st->bytes / 1e6;
    double eta = st->mailboxes_done ? dt * (double)(st->mailboxes_total - st->mailboxes_done) /
                                          (double)st->mailboxes_done
                                    : 0;
    fprintf(stderr, "\r%s: %llu/%llu mailboxes, %llu messages, %.1f MB, %.1f MB/s, ETA %.0fs\033[K",
            ev->pair, (unsigned long long)st->mailboxes_done,
            (unsigned long long)st->mailboxes_total,
            (unsigned long long)(st->copied[0] + st->copied[1]), mb, dt > 0 ? mb / dt : 0, eta);
}

/* Asked once: a progress event comes per mailbox, and isatty is a system call (1% of a
 * no-op's CPU at 1,000 mailboxes). Atomic: daemon workers report from their threads. */
static bool stderr_is_tty(void)
{
    static atomic_int tty = -1;
    int t = atomic_load_explicit(&tty, memory_order_relaxed);
    if (t < 0) {
        t = isatty(2);
        atomic_store_explicit(&tty, t, memory_order_relaxed);
    }
    return t;
}

void tb_cli_on_event(void *ud, const struct tb_sync_event *ev)
{
    (void)ud;
    switch (ev->kind) {
    case TB_SYNC_EV_PROGRESS:
        if (stderr_is_tty())
            progress(ev);
        break;
    case TB_SYNC_EV_PROGRESS_END:
        if (stderr_is_tty())
            fprintf(stderr, "\r\033[K");
        break;
    case TB_SYNC_EV_WARNING:
        tb_log_warn("%s", ev->text);
        break;
    case TB_SYNC_EV_DEBUG:
        tb_log_debug(ev->level, "%s", ev->text);
        break;
    default:
        printf("%s\n", ev->text);
        break;
    }
}
