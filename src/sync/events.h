/* What the sync engine reports while it runs. The engine never prints: every line a person
 * may see (a mailbox's plan, a mailbox created, deleted or renamed, progress, a warning)
 * reaches the caller as one event through the callback in struct tb_sync_opts (or the one
 * given to tb_watch_wait or tb_verify_pair). cli/events.c renders them for a terminal exactly as
 * twinbox has always printed them; a daemon may log them, count them or send them as JSON instead.
 *
 * Ownership: an event and every string in it are borrowed for the duration of the call
 * only; a callback that keeps something copies it. Callbacks run on the engine's thread,
 * inside its loop, and must not call back into the engine. */
#ifndef TWINBOX_SYNC_EVENTS_H
#define TWINBOX_SYNC_EVENTS_H

#include <stdarg.h>
#include <stdint.h>

struct tb_sync_stats;

enum tb_sync_event_kind {
    TB_SYNC_EV_PLAN,          /* a mailbox pass's plan: copies, flag stores, expunges (stdout) */
    TB_SYNC_EV_ESTIMATE,      /* dry run: a mailbox to create; copies = all its messages (stdout) */
    TB_SYNC_EV_CREATE,        /* dry run: the mailbox would be created on `side` (stdout) */
    TB_SYNC_EV_SUBSCRIBE,     /* dry run: its subscription would change on `side` (stdout) */
    TB_SYNC_EV_DELETE,        /* deleted on the other side, being deleted on `side` (stdout) */
    TB_SYNC_EV_RENAME,        /* renamed to `to`, being renamed on `side` (stdout) */
    TB_SYNC_EV_REPLICA_RESET, /* dry run: UIDVALIDITY and GUID would be reset on `side` */
    TB_SYNC_EV_REPLICA_REBUILD, /* replica-init: rebuilding on `side` from the other one */
    TB_SYNC_EV_PROGRESS,        /* a mailbox done: see stats and elapsed (no text) */
    TB_SYNC_EV_PROGRESS_END,    /* the mailboxes are done: a progress display ends (no text) */
    TB_SYNC_EV_WARNING,         /* something left alone or skipped; text says what (stderr) */
    TB_SYNC_EV_DEBUG,           /* a trace for -v; level is the verbosity it needs */
    TB_SYNC_EV_DIFFERENCE,      /* verify: one difference between the accounts (stdout) */
};

struct tb_sync_event {
    enum tb_sync_event_kind kind;
    const char *pair;    /* the pair's name */
    const char *mailbox; /* the mailbox's name for people (UTF-8, '/' separated), or NULL */
    const char *to;      /* RENAME: the new name (UTF-8), else NULL */
    /* The line for people, exactly as twinbox prints it (no newline); NULL for PROGRESS and
     * PROGRESS_END. */
    const char *text;
    int side;  /* 0 a, 1 b: where the reported action happens; -1 none */
    int level; /* DEBUG: the verbosity the trace needs (1 = -v) */
    /* PLAN and ESTIMATE, indexed by the side written: copies[1] is a->b, copies[0] b->a */
    uint64_t copies[2], stores[2], expunges[2];
    uint64_t renumbered; /* PLAN, replica mode: messages given new UIDs on both sides */
    /* PROGRESS: the run's counters so far (mailboxes_done/_total, copied, bytes) and the
     * seconds since the first mailbox began */
    const struct tb_sync_stats *stats;
    double elapsed;
};

typedef void tb_sync_event_fn(void *ud, const struct tb_sync_event *ev);

/* Formats ev->text from fmt and calls fn (nothing when fn is NULL). */
void tb_sync_emitf(tb_sync_event_fn *fn, void *ud, struct tb_sync_event *ev, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void tb_sync_vemitf(tb_sync_event_fn *fn, void *ud, struct tb_sync_event *ev, const char *fmt,
                    va_list ap);

#endif
