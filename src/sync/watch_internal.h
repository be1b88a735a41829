/* Shared by watch.c (the wait, X-REPLICATE WATCH) and watch_push.c (NOTIFY and IDLE). */
#ifndef TWINBOX_SYNC_WATCH_INTERNAL_H
#define TWINBOX_SYNC_WATCH_INTERNAL_H

#include "store/store.h"
#include "sync/events.h"
#include "twinbox/config.h"

#include <signal.h>
#include <stdbool.h>
#include <uv.h>

struct tb_state_mailbox;
struct tb_watcher;

/* How a side is watched. */
enum tb_wmode {
    TB_WMODE_NONE,   /* not at all: the interval alone */
    TB_WMODE_XREP,   /* XREPLICATE WATCH from the stored position */
    TB_WMODE_NOTIFY, /* NOTIFY SET (RFC 5465) on the first connection */
    TB_WMODE_IDLE,   /* one connection per watch-mailboxes name, EXAMINE and IDLE */
};

/* One connection of a side. Connection 0 also lists (push) or watches (X-REPLICATE). */
struct tb_wconn {
    struct tb_watcher *w;
    int k;
    struct tb_store s;
    bool started;   /* s initialised (tb_store_init), so freed at the end */
    char *box;      /* IDLE: the mailbox's wire name (malloc'd); NULL otherwise */
    bool armed;     /* what it reports from now on is a change (after EXAMINE / NOTIFY SET) */
    bool held;      /* IDLE or XREPLICATE WATCH in flight */
    bool refresh;   /* DONE sent by us to start IDLE again before the server's limit */
    int restarts;   /* IDLEs the server ended by itself: bounded, see watch_push.c */
    bool reported;  /* X-REPLICATE: its first report (up to the first POSITION) is in */
    size_t matched; /* X-REPLICATE: state mailboxes its first report showed unchanged */
};

struct tb_wside {
    enum tb_wmode mode;
    struct tb_wconn conn[TB_WATCH_MAILBOXES_MAX];
    int n; /* connections in use */
};

struct tb_watcher {
    const struct tb_pair *pair;
    struct tb_wside side[2];
    struct tb_state_mailbox *smb; /* the state's mailboxes: what "unchanged" means */
    size_t n_smb;
    bool changed, released;
    volatile sig_atomic_t *stop;
    uv_timer_t tick;
    double left_ms;    /* until the interval ends */
    double refresh_ms; /* until the next IDLE restart / NOOP (RFC 2177: under 29 min) */
    double refresh_every_ms;
    tb_sync_event_fn *on_event;
    void *event_ud;
};

/* Ends every held command (DONE), so the wait can finish; idempotent. */
void tb_watch_release_all(struct tb_watcher *w);
/* The state's record of a canonical name, or NULL. */
const struct tb_state_mailbox *tb_watch_state_box(const struct tb_watcher *w, const char *canon);
/* A warning event for side k, "ACCOUNT: text". */
void tb_watch_warn(struct tb_watcher *w, int k, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* watch_push.c. Phase by phase (the caller runs the loop between them):
 * notify_start: NOTIFY SET on connection 0 where offered (a refusal turns the side to IDLE);
 * idle_open: the side's other connections (one per watched mailbox);
 * idle_examine: EXAMINE of each watched mailbox, arming its connection;
 * list_start / listed: a listing of the side compared with the state, which covers changes
 *   from the end of the last run until now (the server reports later ones);
 * hold: IDLE on every armed connection. tb_push_refresh restarts them (and NOOPs a NOTIFY
 * connection) before the server's inactivity limit. */
void tb_push_notify_start(struct tb_watcher *w, int k);
void tb_push_idle_open(struct tb_watcher *w, int k, uv_loop_t *loop, const struct tb_account *acct,
                       const char *password);
void tb_push_idle_examine(struct tb_watcher *w, int k);
void tb_push_list_start(struct tb_watcher *w, int k);
void tb_push_listed(struct tb_watcher *w, int k);
void tb_push_hold(struct tb_watcher *w, int k);
void tb_push_refresh(struct tb_watcher *w);

#endif
