/* The sync engine: one account pair, both servers worked at once, state in SQLite.
 * The contract it implements is in ../shared/DESIGN.md and man/twinbox.1 (SYNC RULES). */
#ifndef TWINBOX_SYNC_ENGINE_H
#define TWINBOX_SYNC_ENGINE_H

#include "sync/events.h"

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct tb_account;
struct tb_pair;
struct tb_state;
struct tb_error;
struct tb_sync_map;

/* The verdict of a migration on one folder, from a complete listing of both sides after
 * the run: every source message is paired with its copy (per the state), left out by the
 * filters, skipped (a reason is recorded), or missing. */
struct tb_folder_verdict {
    const char *name; /* canonical destination name */
    uint64_t on_source, on_destination, copied_ever, filtered, skipped, missing;
    bool unreadable; /* a listing could not be used: nothing is claimed */
};
typedef void tb_folder_verdict_fn(void *ud, const struct tb_folder_verdict *v);

struct tb_sync_opts {
    bool dry_run;
    bool force;         /* proceed past the mass-change guard */
    bool retry_skipped; /* retry every skipped message now */
    bool full_resync;   /* verify --repair: no stored number is trusted; every mailbox is
                           listed on both sides and matched again by identity */
    char **only;        /* --mailbox names (canonical, '/' separated); NULL = all */
    size_t n_only;
    /* migrate: side `source` is only read (EXAMINE, BODY.PEEK, never a write); its new
     * messages that pass the filters and its flag changes go to the other side; expunges
     * and deleted mailboxes only with `mirror` (--delete). */
    bool one_way;
    int source;
    bool mirror;
    int64_t since, before;         /* INTERNALDATE window, seconds since the epoch; 0 = open */
    uint64_t max_size;             /* 0 = any */
    const struct tb_sync_map *map; /* one-way: source names to destination names, or NULL */
    tb_folder_verdict_fn *verdict; /* one-way: called per folder after the run, or NULL */
    void *verdict_ud;
    /* replica-init (pair in replica mode): the other side's mailboxes are rebuilt with the
     * reference side's (0 a, 1 b) identity and UIDs before the run (sync/replica_init.c) */
    bool replica_init;
    int reference;
    /* Everything the run reports (sync/events.h); NULL: nothing is reported. The engine
     * never prints. */
    tb_sync_event_fn *on_event;
    void *event_ud;
    /* Non-NULL: read before each mailbox; once it is non-zero the run ends there with a
     * TEMP error ("stopped after N of M mailboxes"). The mailboxes done are recorded; the
     * X-REPLICATE positions are not, so the next run does the rest. twinbox watch sets it
     * on SIGTERM and when a reload removes the pair. */
    volatile sig_atomic_t *stop;
};

/* How a migration names the source's mailboxes on the destination (sync/mapping.c), in
 * this order: Gmail's \All and \Important are left out unless include_all; an explicit
 * --map (a mailbox and its children); the special-use folders (Sent, Drafts, Trash, Junk,
 * Archive) to the destination's folder of that use, by attribute or well-known name;
 * --rename's regular expression; then --into puts the whole tree under a folder. Names
 * are canonical ('/' separated, relative to the personal namespace). */
struct tb_sync_map {
    const char **from, **to; /* --map FROM=TO */
    size_t n;
    const char *rename_re, *rename_to; /* --rename s/RE/TO/ (POSIX extended, \1..\9) */
    const char *into;                  /* --into PREFIX */
    bool include_all;                  /* keep \All and \Important */
    bool no_special;                   /* no automatic special-use mapping */
    bool subscribed_only;              /* only the source's subscribed folders */
};

struct tb_sync_stats {
    uint64_t copied[2]; /* [0]: b -> a, [1]: a -> b (index = destination side) */
    uint64_t flag_updates, expunges, created, deleted, renamed, conflicts, bytes;
    uint64_t mailboxes_total, mailboxes_done;
    uint64_t turns[2];
    bool xr[2];                    /* side used X-REPLICATE for discovery */
    uint64_t xr_deltas;            /* mailbox sides whose first pass took X-REPLICATE's delta */
    uint64_t skipped_messages;     /* copies skipped for good this run (each had a warning) */
    uint64_t retry_messages;       /* copies the source did not deliver, retried next run */
    uint64_t skipped_mailboxes;    /* mailboxes left alone this run (each one had a warning) */
    uint64_t unsyncable_mailboxes; /* names the other side cannot hold: a person must rename */
    uint64_t flags_unstorable;     /* messages written with fewer flags: PERMANENTFLAGS */
    uint64_t matched;              /* new on both sides and the same message: paired, not copied */
    uint64_t renumbered;           /* replica mode: messages given a new UID on both sides */
    uint64_t filtered, kept;       /* one-way: see struct tb_plan (filtered, kept) */
    /* The mass-change guard (max-delete): per side, what the run would remove (expunges
     * plus the messages of mailboxes it would delete) out of what the side holds. */
    struct {
        bool checked, tripped;
        uint64_t remove[2], total[2];
        char **lines; /* one per mailbox with removals: "NAME: ..." (owned) */
        size_t n_lines;
    } guard;
};

/* Frees what a run left in stats (the guard's lines). */
void tb_sync_stats_free(struct tb_sync_stats *s);

/* Returns an exit code (twinbox/exit.h), derived from err->kind; err holds the kind and one
 * line when it is not 0. */
int tb_sync_pair(uv_loop_t *loop, const struct tb_pair *pair, const struct tb_account *acct[2],
                 const char *password[2], struct tb_state *st, const struct tb_sync_opts *o,
                 struct tb_sync_stats *stats, struct tb_error *err);

#endif
