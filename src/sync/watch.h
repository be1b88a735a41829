/* Waiting between sync runs for a change on either side of a pair (twinbox watch).
 *
 * A side that offers X-REPLICATE and has a stored position gets XREPLICATE WATCH from that
 * position; its first report is compared with the state (our own last writes are no
 * change), later batches wake the caller at once. Other sides get push where the server
 * has it (watch_push.c): NOTIFY for every mailbox on one connection, else IDLE on the
 * pair's watch-mailboxes (INBOX by default, one connection each), after a listing compared
 * with the state in the same way. Mailboxes nothing watches, and sides with neither, are
 * covered by the caller's interval. */
#ifndef TWINBOX_SYNC_WATCH_H
#define TWINBOX_SYNC_WATCH_H

#include "sync/events.h"

#include <signal.h>
#include <uv.h>

struct tb_account;
struct tb_pair;
struct tb_state;

/* 1: a change was reported; 0: max_wait_s passed or *stop became non-zero (checked a few
 * times a second, also while connecting); -1: a connection failed (err holds one line
 * naming the account); then the caller should sync anyway. *watched receives how many
 * sides were watched (by X-REPLICATE, NOTIFY or IDLE). Warnings go to on_event
 * (sync/events.h; NULL: dropped). Both sides are connected for the wait, plus one
 * connection per further watched mailbox of an IDLE side. */
int tb_watch_wait(uv_loop_t *loop, const struct tb_pair *pair, const struct tb_account *acct[2],
                  const char *password[2], struct tb_state *st, double max_wait_s,
                  volatile sig_atomic_t *stop, tb_sync_event_fn *on_event, void *event_ud,
                  int *watched, char *err, size_t errlen);

#endif
