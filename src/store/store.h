/* Store layer: one account seen as mailboxes and messages, over one pipelined connection.
 *
 * Calls are split in *_start (submit commands; results land in caller-owned structs) and
 * tb_store_wait (run the shared event loop until every given store is idle), so the sync
 * engine reads as sequential phases while both servers work concurrently.
 * Capability fallbacks live here: QRESYNC deltas when the state allows, else a full
 * UID/FLAGS listing that the engine diffs against its state. */
#ifndef TWINBOX_STORE_STORE_H
#define TWINBOX_STORE_STORE_H

#include "protocol/mboxname.h"
#include "twinbox/error.h"
#include "util/buf.h"
#include "util/strpool.h"
#include "util/uidmap.h"
#include "util/uidset.h"

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

struct tb_account;
struct tb_imap;
struct tb_store_perm;
struct tb_store;

struct tb_mbox_info {
    char *name; /* as on the wire (modified UTF-7), server separator */
    char sep;
    char *special_use; /* e.g. "\\Sent", or NULL */
    bool noselect, subscribed, have_status;
    uint32_t uidvalidity, uidnext, messages;
    uint64_t highestmodseq;
    char guid[33]; /* Dovecot's mailbox GUID, lower-case hex, when known (else "") */
};

/* One message as a listing saw it. 48 bytes, in this order (no padding): a 100,000-message
 * listing holds one per message. */
struct tb_msg_info {
    uint32_t uid;
    uint32_t size;
    uint64_t modseq;
    int64_t internaldate; /* seconds since the epoch, UTC */
    char *flags;          /* canonical, or NULL when not fetched */
    char *ident;          /* identity: the identity header fields (fetch.c), or NULL */
    int tz_minutes;       /* the INTERNALDATE's zone, kept for APPEND */
    /* flags and ident belong to the pool of the delta holding the record (struct
     * tb_strpool), not to the record: tb_msg_info_clear leaves them alone, and a copy of
     * the record is valid as long as that delta is. Otherwise they are the record's own. */
    bool pooled;
};

struct tb_delta {
    bool full; /* msgs lists every message (no usable QRESYNC base) */
    uint32_t uidvalidity, uidnext;
    uint64_t highestmodseq;
    struct tb_msg_info *msgs; /* full: all; else changed since modseq plus new ones */
    size_t n_msgs, cap_msgs;
    struct tb_uidset vanished; /* expunged since the base (QRESYNC only) */
    bool by_name; /* the extra UIDs given to the delta were fetched: absent ones are gone */
    /* The mailbox's size as the server last announced it (EXISTS, less later EXPUNGEs): a
     * full listing proves absences only when it lists exactly that many messages. */
    uint32_t exists;
    bool have_exists;
    /* Messages EXISTS announced in all: its first value plus every rise. No listing names
     * more distinct messages; records beyond it (with a margin) are not kept. */
    uint64_t announced;
    /* Set when a response for this delta could not be used (unparsable line, a number out
     * of range, a set beyond UIDNEXT): the delta is not a complete picture and the
     * mailbox's pass must be skipped. Holds the first bytes of the cause. */
    char *unreadable;
    /* Without QRESYNC (CONDSTORE alone, or neither): the known messages' UIDs below
     * base_uidnext that still exist, from UID SEARCH or the UID FLAGS listing; the
     * completion turns what is missing into `vanished`. */
    bool by_listing;
    uint32_t base_uidnext;
    struct tb_uidset present;
    /* On those rungs, new UIDs asked for by name (a settling pass's own copies): the ones
     * the FETCH did not answer are expunged, into `vanished` at completion as well. */
    struct tb_uidset asked;
    /* The SELECT's PERMANENTFLAGS (canonical, without "\\*"), when it sent them. */
    bool perm_known, perm_keywords;
    char *perm;
    /* UID -> index into msgs, for a FETCH of a UID at or below the last one recorded (a
     * server answering out of UID order, or the same UID twice): msgs[0..n_indexed) are
     * in it, each UID at its first index. Built only when needed (delta.c); owned by the
     * delta, freed by tb_delta_clear. */
    struct tb_uidmap by_uid;
    size_t n_indexed;
    /* The merge's shortcut for a server sending the same UIDs again in order (QRESYNC's
     * changes, then the FETCH of everything), which spares by_uid: the record after the
     * one merged last is tried first. It is the UID's first record as long as no UID is
     * there twice: n_unique == n_msgs, every record appended by the merge with a UID it
     * did not hold (top_uid: the largest of them). */
    size_t next_merge, n_unique;
    uint32_t top_uid;
    /* the strings of the records with `pooled` set: identities stored, flag lists
     * interned (a mailbox holds a few distinct ones) */
    struct tb_strpool pool;
};

/* One FETCH's record merged into the delta: into the record of its UID when the delta has
 * one (fields the FETCH carries replace that record's; the first record of the UID when
 * there are several), else appended. Takes m's strings (into the delta's pool, the
 * record's own ones freed); m is left cleared. */
void tb_delta_merge(struct tb_delta *d, struct tb_msg_info *m);

/* How a store reads a mailbox's changes since the state's numbers, from its capabilities. */
enum tb_strategy {
    TB_STRATEGY_QRESYNC,   /* SELECT (QRESYNC): changed flags and VANISHED in one answer */
    TB_STRATEGY_CONDSTORE, /* flags by CHANGEDSINCE, expunges by UID SEARCH of known UIDs */
    TB_STRATEGY_LISTING,   /* neither: UID FLAGS of every known message, diffed */
};
enum tb_strategy tb_store_strategy(const struct tb_store *s);
const char *tb_strategy_name(enum tb_strategy st);

struct tb_store {
    const char *label; /* account name, for messages */
    struct tb_imap *c;
    uv_loop_t *loop;
    int pending;
    bool ready, failed;
    size_t max_line;           /* the account's max-line: longer commands are split */
    bool read_only;            /* a migration's source: EXAMINE, and every write refused */
    uint64_t max_message_size; /* the account's max-message-size */
    struct tb_error err;       /* why it failed (kind and one line), once failed */
    char sep;
    struct tb_ns ns; /* the personal namespace, once ready (tb_store_ns) */
    /* collection targets of the command(s) in flight */
    struct tb_mbox_info *boxes;
    size_t n_boxes;
    /* The last listing had a line nobody could read: a name missing from it may exist. */
    bool list_incomplete;
    char list_bad[128];
    char *selected;
    bool selected_ro; /* it was EXAMINEd on a store that writes: select it again to write */
    /* A +FLAGS \Deleted went out after the last fenced UID EXPUNGE: the next UID EXPUNGE
     * must wait for it (tb_store_expunge_marked). */
    bool deleted_unfenced;
    /* PERMANENTFLAGS seen per mailbox (perm.c) */
    struct tb_store_perm *perm;
    size_t n_perm;
    uint64_t flags_dropped; /* messages sent with fewer flags than they have (PERMANENTFLAGS) */
    bool want_guid;         /* listings ask STATUS X-GUID too (replica mode) */
    enum {
        TB_LIST_EARLY_NO,
        TB_LIST_EARLY_WANTED,
        TB_LIST_EARLY_SENT,
        TB_LIST_EARLY_DONE
    } list_early;
    /* Message data held by the copies reading from this store, from each FETCH sent until
     * its APPEND is answered (copy.c): one window for all of them, so a write batch may run
     * the copies of many mailboxes at once in the memory of one. copy_starved: the copy that
     * last stopped for want of room, pumped when another copy's message frees some. */
    size_t copy_held;
    struct tb_copy *copy_starved;
};

void tb_store_init(struct tb_store *s, uv_loop_t *loop, const struct tb_account *acct,
                   const char *password);
/* LOGOUT on every ready, idle store at once, waiting for the answers. */
void tb_store_logout(struct tb_store **stores, int n);
void tb_store_free(struct tb_store *s);
/* The personal namespace: NAMESPACE's prefix and separator, else "" and LIST's separator. */
const struct tb_ns *tb_store_ns(struct tb_store *s);
/* Marks the store failed (the first failure wins); the message gets the account name. */
void tb_store_fail(struct tb_store *s, enum tb_err_kind kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Runs the loop until all stores are idle or one failed; -1 if any failed. */
int tb_store_wait(struct tb_store **stores, int n);
/* Runs the loop until done(ud) is true or a store failed (-1); the stores are what may make
 * progress meanwhile. */
int tb_store_wait_for(struct tb_store **stores, int n, bool (*done)(void *ud), void *ud);
/* marks[i]: tb_store_mark of stores[i]. Runs the loop until every command submitted to
 * each store before its mark completed, later ones may still run; -1 if a store failed. */
uint64_t tb_store_mark(const struct tb_store *s);
int tb_store_wait_marks(struct tb_store **stores, int n, const uint64_t *marks);

void tb_store_list_start(struct tb_store *s);
/* Call right after tb_store_init: where the login can carry more commands in its flight
 * (tb_imap_events.early), the listing goes with it, built for the capabilities Dovecot
 * has (LIST-STATUS, SPECIAL-USE, CONDSTORE), and the next tb_store_list_start takes its
 * result instead of asking again. A server that refuses it is simply asked again then. */
void tb_store_list_early(struct tb_store *s);
/* SELECT (with QRESYNC when base_modseq > 0 and base_uidvalidity matches) and the UID FETCH
 * of new messages from base_uidnext on, or of everything when no usable base; with QRESYNC
 * also of the UIDs in extra (may be NULL). A NO or BAD to these commands, like anything
 * unreadable in their answers, leaves out->unreadable set instead of failing the store. */
void tb_store_delta_start(struct tb_store *s, const char *mailbox, uint32_t base_uidvalidity,
                          uint64_t base_modseq, uint32_t base_uidnext, struct tb_uidset *extra,
                          struct tb_delta *out);
/* tb_store_delta_start for a pass after writes: known (may be NULL or empty) as in
 * tb_store_delta_examine_queue. */
void tb_store_delta_start_known(struct tb_store *s, const char *mailbox, uint32_t base_uidvalidity,
                                uint64_t base_modseq, uint32_t base_uidnext,
                                struct tb_uidset *known, struct tb_delta *out);
/* The same without waiting for the commands in flight: several mailboxes' deltas go out
 * in one write. Only when nothing but other deltas is in flight (no write may run in a
 * mailbox the SELECT leaves). */
void tb_store_delta_queue(struct tb_store *s, const char *mailbox, uint32_t base_uidvalidity,
                          uint64_t base_modseq, uint32_t base_uidnext, struct tb_uidset *extra,
                          struct tb_delta *out);
/* tb_store_delta_queue with EXAMINE: a pass that only reads (the settling pass after
 * writes). A SELECT takes \Recent, which Dovecot writes into the mailbox's index after
 * its list index recorded the mailbox, so every later LIST-STATUS opened the mailbox
 * (measured: 297 of 300 folders filled by a write batch). The next write selects it
 * again (selected_ro). known (may be NULL or empty): new UIDs whose messages the caller
 * knows (its copies, paired): their records carry flags only, no identity. */
void tb_store_delta_examine_queue(struct tb_store *s, const char *mailbox,
                                  uint32_t base_uidvalidity, uint64_t base_modseq,
                                  uint32_t base_uidnext, struct tb_uidset *known,
                                  struct tb_delta *out);
/* Every message's UID, INTERNALDATE and size (no identity): a cheap complete listing,
 * queued like tb_store_delta_queue. */
void tb_store_list_uids_queue(struct tb_store *s, const char *mailbox, struct tb_delta *out);
void tb_delta_clear(struct tb_delta *d);
/* Marks d unusable (first cause kept): why, then the first bytes of the raw line. */
void tb_delta_unreadable(struct tb_delta *d, const char *why, const char *raw, size_t len);
void tb_mbox_infos_free(struct tb_mbox_info *v, size_t n);

/* ---- X-REPLICATE (store/xrep.c) ---- */

/* One FLAGS line: the same change for a set of UIDs. */
struct tb_xrep_flagchg {
    struct tb_uidset uids;
    uint64_t modseq;
    char *add, *remove; /* flags as the server sent them, space-separated */
};

/* What one mailbox reported: a RESYNC reason, or its exact delta since the position. */
struct tb_xrep_section {
    char guid[33];
    char *name;  /* from its STATUS line (wire form) */
    bool closed; /* its STATUS line arrived */
    uint32_t uidvalidity, uidnext;
    uint64_t highestmodseq;
    char *resync; /* EXPIRED, UIDVALIDITY, RECREATED, ERROR, ...: no delta; or NULL */
    /* Kept as ranges (a 60-byte line can name four billion UIDs); every UID is checked
     * against the section's UIDNEXT when its STATUS line closes it. */
    struct tb_uidset expunged, appended;
    struct tb_xrep_flagchg *flags; /* one per FLAGS line */
    size_t n_flags;
};

struct tb_xrep_reply {
    bool refused;   /* NO/BAD: nothing below is usable */
    bool badtoken;  /* ... with [XREPLICATE-BADTOKEN] */
    bool malformed; /* a line could not be parsed: treated as refused */
    char reason[300];
    char *position; /* the new token */
    struct tb_xrep_section *sec;
    size_t n_sec, cap_sec;
    struct {
        int event; /* enum tb_xrep_event */
        char *name, *new_name;
    } * ev;
    size_t n_ev;
};

/* Positions longer than this are never sent (refused at once) nor stored: Dovecot's default
 * limit for a command argument is 64 KiB, and a position it refuses closes the connection. */
#define TB_XREP_TOKEN_MAX 49152

/* XREPLICATE CHANGES token (POSITION when token is NULL or empty); the listing replaces
 * s->boxes, like tb_store_list_start. A token over TB_XREP_TOKEN_MAX is refused here. */
void tb_store_xrep_start(struct tb_store *s, const char *token, struct tb_xrep_reply *out);
void tb_xrep_reply_clear(struct tb_xrep_reply *r);
/* SELECT without collecting anything, unless the mailbox is selected already: for writes
 * to a mailbox whose delta came from X-REPLICATE. */
void tb_store_select(struct tb_store *s, const char *mailbox);
/* SELECT (EXAMINE on a read-only store) always, its data (UIDVALIDITY, EXISTS...) into out,
 * nothing fetched: a copy selects its source again to fetch what a refused MULTIAPPEND
 * held, and checks that the mailbox is still the one it read. */
void tb_store_select_into(struct tb_store *s, const char *mailbox, struct tb_delta *out);
/* tb_store_select without waiting for the commands before it: the server runs them first, in the
 * mailbox they were sent for (a write batch; see sync/batch.c). */
void tb_store_select_queued(struct tb_store *s, const char *mailbox);

void tb_store_create(struct tb_store *s, const char *mailbox, const char *special_use);
void tb_store_delete(struct tb_store *s, const char *mailbox);
/* Whether one name exists (STATUS and an exact LIST, pipelined). Absence needs positive
 * evidence: NO [NONEXISTENT] (RFC 5530) to STATUS, or a plain NO (no response code) to
 * STATUS with a complete LIST that does not show the name. Any other answer, or none, is
 * UNKNOWN (why says what came back). */
enum tb_exists_state { TB_EXISTS_UNKNOWN, TB_EXISTS_YES, TB_EXISTS_NO };
struct tb_exists {
    enum tb_exists_state state;
    char why[240];
};
void tb_store_exists(struct tb_store *s, const char *mailbox, struct tb_exists *out);
void tb_store_rename(struct tb_store *s, const char *from, const char *to);
void tb_store_subscribe(struct tb_store *s, const char *mailbox, bool on);

/* op '+', '-' or '=' (FLAGS replace) on a UID set, UNCHANGEDSINCE when modseq > 0; as many
 * commands as it takes to keep every line within the account's max-line.
 * *modified (may be NULL) receives the UIDs the server refused as MODIFIED. */
void tb_store_flags(struct tb_store *s, struct tb_uidset *uids, char op, const char *flags,
                    uint64_t unchangedsince, struct tb_uidset *modified);
/* +FLAGS \Deleted, then UID EXPUNGE. *kept (may be NULL) receives the UIDs of the set the
 * server did not report expunged (VANISHED): another client cleared \Deleted in between, so
 * the message is still there. Only known with QRESYNC enabled; without it nothing is added. */
void tb_store_expunge(struct tb_store *s, struct tb_uidset *uids, struct tb_uidset *kept);
/* UID EXPUNGE of messages whose +FLAGS \Deleted an earlier tb_store_flags submitted, on the
 * mailbox selected now. The first such expunge after a \Deleted waits for every command
 * before it (the server may run a pipelined EXPUNGE ahead of a STORE); later ones do not,
 * and nothing waits for them: a write batch selects each mailbox and expunges it in one
 * flight. Without UIDPLUS, as tb_store_expunge. *kept as there. */
void tb_store_expunge_marked(struct tb_store *s, struct tb_uidset *uids, struct tb_uidset *kept);

/* ---- replica mode (store/replica.c): X-REPLICATE-REPLICA commands ---- */

/* A refused command: refused set, `code` the "[CODE] " prefix of the answer (or ""), why one
 * printable line quoting it. Untouched fields are zero. */
struct tb_replica_result {
    bool refused;
    char code[64];
    char why[240];
};
bool tb_store_replica_capable(struct tb_store *s);
/* XREPLICATE CREATE / RESET (an existing empty mailbox): the mailbox gets this UIDVALIDITY
 * and GUID (32 lower-case hex digits). */
void tb_store_replica_create(struct tb_store *s, const char *mailbox, uint32_t uidvalidity,
                             const char *guid, struct tb_replica_result *out);
void tb_store_replica_reset(struct tb_store *s, const char *mailbox, uint32_t uidvalidity,
                            const char *guid, struct tb_replica_result *out);
/* XREPLICATE RAISE: UIDNEXT and HIGHESTMODSEQ at least these (0: leave it). */
void tb_store_replica_raise(struct tb_store *s, const char *mailbox, uint32_t uidnext,
                            uint64_t highestmodseq, struct tb_replica_result *out);

/* A bounded pipe of message copies from src (mailbox selected there) to dst. */
struct tb_copy;
typedef void tb_copied_fn(void *ud, uint32_t src_uid, uint32_t dst_uid, const char *flags);
/* A message that was not copied; the others go on. permanent: the destination refused it,
 * or it is larger than allowed; otherwise the source did not deliver it. reason is one
 * printable line naming the server's answer. */
typedef void tb_copy_skipped_fn(void *ud, const struct tb_msg_info *m, const char *reason,
                                bool permanent);
struct tb_copy *tb_copy_new(struct tb_store *src, struct tb_store *dst, const char *dst_mailbox,
                            tb_copied_fn *done, tb_copy_skipped_fn *skipped, void *ud);
/* m is borrowed, with its strings (flags, ident): it must stay valid and unchanged until
 * tb_copy_finish returns (at 100,000 messages a copy would double the memory of the list
 * it comes from). A job copies its message's record when it starts. */
void tb_copy_add(struct tb_copy *cp, const struct tb_msg_info *m);
/* Replica mode: the copy must get UID `target` on the destination (XREPLICATE UIDS before
 * its APPEND). m itself is copied (it may be a temporary), its strings are borrowed as
 * tb_copy_add's. Targets of one pipe must be added in ascending order. A copy the server
 * placed under another UID (Dovecot renumbers at commit when a concurrent APPEND took it) is
 * expunged there when the pipe finishes; one refused for its UID (below UIDNEXT) is not
 * stored. Neither is reported done or skipped: the source UID goes into *displaced
 * (tb_copy_set_displaced), so the caller keeps it in view and plans it again. */
void tb_copy_add_at(struct tb_copy *cp, const struct tb_msg_info *m, uint32_t target);
void tb_copy_set_displaced(struct tb_copy *cp, struct tb_uidset *displaced);
/* The destination's UIDNEXT before the copies (at most): where a server without UIDPLUS
 * is searched for them. */
void tb_copy_set_uid_floor(struct tb_copy *cp, uint32_t uid);
/* The source's mailbox (selected there when the copy was made) and its UIDVALIDITY as the
 * caller read it. Messages of a batch the destination refused as a whole are fetched
 * again (their bodies are not kept once written) once the rest is done, after selecting
 * that mailbox again, and only while it still has this UIDVALIDITY; without it (0), or
 * after a change, they are skipped for now and the next run copies them. */
void tb_copy_set_source(struct tb_copy *cp, const char *mailbox, uint32_t uidvalidity);
/* Runs the loop until every added message's FETCH is submitted (none waits for room in the
 * copy window): until then the source must stay on this copy's mailbox, as a later FETCH
 * goes to the mailbox selected when it is sent. -1 when a store failed. */
int tb_copy_fetch_all(struct tb_copy *cp);
/* Runs until every added message is copied or skipped; bytes moved are added to *bytes.
 * -1 only when a store failed. */
int tb_copy_finish(struct tb_copy *cp, uint64_t *bytes);
/* tb_copy_finish without waiting for the stores' other commands (those of a next batch of
 * mailboxes may already be in flight); still waits for them when it has to select the
 * destination's mailbox (copies without a known UID, or misplaced ones). */
int tb_copy_finish_own(struct tb_copy *cp, uint64_t *bytes);

#endif
