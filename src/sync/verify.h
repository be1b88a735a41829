/* `twinbox verify`: a complete comparison of a pair's two accounts (see verify.c). */
#ifndef TWINBOX_SYNC_VERIFY_H
#define TWINBOX_SYNC_VERIFY_H

#include "sync/events.h"
#include "twinbox/error.h"

#include <stdint.h>
#include <uv.h>

struct tb_pair;
struct tb_account;

struct tb_verify_report {
    uint64_t mailboxes;       /* compared on both sides */
    uint64_t compared;        /* messages present on both sides */
    uint64_t missing[2];      /* messages missing on side k */
    uint64_t duplicates[2];   /* extra copies of one message on side k */
    uint64_t flag_diffs;      /* messages whose flags differ (what both sides can keep) */
    uint64_t only_mailbox[2]; /* mailboxes only on side k */
    uint64_t unreadable;      /* mailboxes that could not be listed completely */
};

/* Lists both accounts and compares them by message identity; writes nothing anywhere.
 * Returns 0 (identical), TB_EXIT_CONFLICT (differences, each reported through on_event as
 * one TB_SYNC_EV_DIFFERENCE whose text is "PAIR: what differs"), or the exit code of the
 * error in *err. */
int tb_verify_pair(uv_loop_t *loop, const struct tb_pair *pair, const struct tb_account *acct[2],
                   const char *password[2], struct tb_verify_report *rep,
                   tb_sync_event_fn *on_event, void *event_ud, struct tb_error *err);

#endif
