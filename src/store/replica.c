/* Replica mode's server commands (capability X-REPLICATE-REPLICA; grammar in
 * man/twinbox-xreplicate.7): a mailbox created, or reset while empty, with the other server's
 * UIDVALIDITY and GUID, and its UIDNEXT and HIGHESTMODSEQ raised to the other's. The UIDs of
 * appended messages are set by tb_copy_add_at (copy.c), which sends XREPLICATE UIDS before
 * each APPEND.
 *
 * A refusal (NO, BAD) is reported in the caller's tb_replica_result, not as a store failure:
 * the engine decides what a mailbox it cannot align means (left alone, with one line). */
#include "protocol/cmd.h"
#include "store/store_internal.h"
#include "store/store.h"
#include "twinbox/imap.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct replica_op {
    struct tb_store *s;
    struct tb_replica_result *out;
};

static void replica_done(struct tb_imap *c, const struct tb_imap_result *r, void *ud)
{
    (void)c;
    struct replica_op *o = ud;
    struct tb_store *s = o->s;
    s->pending--;
    if (r->status == TB_IMAP_ABORTED) {
        /* the connection is gone: the store failed already */
        o->out->refused = true;
        snprintf(o->out->why, sizeof(o->out->why), "connection lost");
    } else if (r->status != TB_IMAP_OK) {
        char code[64];
        o->out->refused = true;
        tb_imap_code_prefix(r, code, sizeof(code));
        snprintf(o->out->code, sizeof(o->out->code), "%s", code);
        /* Server text goes into one log line: printable ASCII only. */
        snprintf(o->out->why, sizeof(o->out->why), "%s %s%.160s",
                 r->status == TB_IMAP_NO ? "NO" : "BAD", code, r->text ? r->text : "");
        for (char *q = o->out->why; *q; q++)
            if ((unsigned char)*q < 0x20 || (unsigned char)*q >= 0x7f)
                *q = '?';
    }
    free(o);
}

/* "XREPLICATE SUB mailbox", or NULL (out refused) for a read-only store: a migration's
 * source is never written. out is cleared either way. */
static struct tb_cmd *begin(struct tb_store *s, const char *sub, const char *mailbox,
                            struct tb_replica_result *out)
{
    memset(out, 0, sizeof(*out));
    if (!tb_store_writable(s, sub)) {
        out->refused = true;
        snprintf(out->why, sizeof(out->why), "read-only account");
        return NULL;
    }
    struct tb_cmd *cmd = tb_cmd_new("XREPLICATE");
    tb_cmd_atom(cmd, sub);
    tb_cmd_astring(cmd, mailbox);
    return cmd;
}

static void submit(struct tb_store *s, struct tb_cmd *cmd, struct tb_replica_result *out)
{
    struct replica_op *o = tb_xcalloc(1, sizeof(*o));
    o->s = s;
    o->out = out;
    s->pending++;
    tb_imap_submit(s->c, cmd, 0, replica_done, NULL, o);
}

static void identity_cmd(struct tb_store *s, const char *sub, const char *mailbox,
                         uint32_t uidvalidity, const char *guid, struct tb_replica_result *out)
{
    if (strcmp(sub, "RESET") == 0 && !s->read_only)
        tb_store_leave(s, mailbox); /* Dovecot refuses it on the session's own selection */
    struct tb_cmd *cmd = begin(s, sub, mailbox, out);
    if (!cmd)
        return;
    tb_cmd_printf(cmd, "%" PRIu32 " %.32s", uidvalidity, guid);
    submit(s, cmd, out);
}

void tb_store_replica_create(struct tb_store *s, const char *mailbox, uint32_t uidvalidity,
                             const char *guid, struct tb_replica_result *out)
{
    identity_cmd(s, "CREATE", mailbox, uidvalidity, guid, out);
}

void tb_store_replica_reset(struct tb_store *s, const char *mailbox, uint32_t uidvalidity,
                            const char *guid, struct tb_replica_result *out)
{
    identity_cmd(s, "RESET", mailbox, uidvalidity, guid, out);
}

void tb_store_replica_raise(struct tb_store *s, const char *mailbox, uint32_t uidnext,
                            uint64_t highestmodseq, struct tb_replica_result *out)
{
    struct tb_cmd *cmd = begin(s, "RAISE", mailbox, out);
    if (!cmd)
        return;
    tb_cmd_printf(cmd, "%" PRIu32 " %" PRIu64, uidnext, highestmodseq);
    submit(s, cmd, out);
}

bool tb_store_replica_capable(struct tb_store *s)
{
    return tb_imap_has_cap(s->c, "X-REPLICATE-REPLICA");
}
