/* Private state shared by the pipeline (imap.c) and the session set-up (session.c). */
#ifndef TWINBOX_PROTOCOL_IMAP_INTERNAL_H
#define TWINBOX_PROTOCOL_IMAP_INTERNAL_H

#include "protocol/cmd.h"
#include "protocol/framer.h"
#include "protocol/parse.h"
#include "transport/link.h"
#include "twinbox/error.h"
#include "twinbox/imap.h"

struct pending {
    struct tb_cmd *cmd;
    unsigned flags;
    tb_imap_done_fn *done;
    tb_imap_untagged_fn *untagged;
    tb_imap_sent_fn *sent;
    void *ud;
    uint32_t seq;
    uint64_t order;   /* tb_imap_mark: the connection's count of submissions, this one included */
    uint64_t sent_ns; /* uv_hrtime() when written, for the round-trip estimate */
    char tag[16];
    size_t n_chunks, next_chunk;
};

struct handler {
    tb_imap_untagged_fn *fn;
    void *ud;
};

enum phase {
    PH_NEW,
    PH_CONNECT,
    PH_TLS,
    PH_GREETING,
    PH_STARTTLS,
    PH_LOGIN,
    PH_ENABLE,
    PH_READY,
    PH_FAILED,
};

struct tb_imap {
    uv_loop_t *loop;
    const struct tb_account *acct;
    const struct tb_imap_events *ev;
    void *ud;
    struct tb_link *link;
    struct tb_framer framer;
    enum phase phase;
    char *password;
    bool got_greeting, preauth;
    char *greeting;
    struct tb_buf caps;    /* " CAP1 CAP2 " upper-case, padded for whole-word search */
    struct tb_buf enabled; /* same form */
    char separator;
    char *ns_prefix;
    char *ns_others; /* other users' and shared prefixes, '\n'-separated */
    /* pipeline */
    struct pending **waiting; /* FIFO not yet sent */
    size_t n_waiting, waiting_head, cap_waiting;
    struct pending **inflight; /* sorted by seq */
    size_t n_inflight, cap_inflight;
    struct pending *blocked; /* waits for "+" before its next chunk */
    struct pending *held;    /* TB_CMD_HOLD: got its "+", last chunk waits for release */
    bool release_early;      /* tb_imap_release() came before the "+" */
    struct pending *barrier; /* in flight; nothing else may be sent */
    uint32_t next_seq;
    uint64_t submitted; /* commands submitted (pending.order of the last) */
    struct handler *handlers;
    size_t n_handlers;
    struct tb_buf out; /* bytes gathered by one pump, written at once */
    bool out_secret;   /* out holds a secret: wiped once handed to the link */
    bool pumping;
    bool logout_written; /* LOGOUT completed on being written (imap.c logout_written) */
    int max_inflight;
    uv_timer_t idle;
    bool idle_init;
    /* Submissions are written when the loop is about to block, so everything queued in one
     * loop iteration leaves in one write (one turn, one deflate flush). */
    uv_prepare_t flush;
    int open_handles; /* idle + flush, closed by tb_imap_free */
    char bye[256];
    enum tb_err_kind err_kind; /* why the connection failed (TB_ERR_NONE while it works) */
    /* Snapshot of the link taken when it is closed, so accessors keep answering. */
    char tls_desc[128];
    bool tls_was_active, compress_was_active;
    struct tb_link_stats last_stats;
    bool restack;          /* a filter just started: bytes after this response need it */
    int setup_outstanding; /* ENABLE/ID/NAMESPACE still running */
    bool setup_early;      /* they were sent with the authentication (session.c) */
    /* COMPRESS waits for the first command that moves mail (session.c), so a run that finds
     * nothing to do spends no round trip on it. */
    bool compress_deferred;
    uint64_t min_rtt_ns; /* fastest command answer so far (0: none yet) */
    /* compress = auto's measure of the link (compress_auto.c): where the current stretch
     * of bytes started (time, tb_link_moved), and how many stretches were slow. */
    uint64_t probe_ns, probe_moved;
    int probe_slow;
    /* authentication (session.c) */
    const char *auth_mech; /* static: "PLAIN", "XOAUTH2"..., "PREAUTH"; NULL before login */
    char *sasl_challenge;  /* text of the last "+" during login (base64), for error JSON */
    bool token_refreshed;  /* the OAuth token was fetched again: the next refusal is final */
    bool auth_reconnected; /* the retry with the new token already needed a new connection */
};

/* pipeline (imap.c) */
void tb_imap_fail(struct tb_imap *c, enum tb_err_kind kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void tb_imap_submit_internal(struct tb_imap *c, struct tb_cmd *cmd, unsigned flags,
                             tb_imap_done_fn *done, void *ud);
const char *tb_imap_phase_name(enum phase p);
void tb_imap_observe(struct tb_imap *c, const struct tb_resp *r);

/* session (session.c) */
void tb_session_on_connected(struct tb_imap *c);
void tb_session_on_tls_ready(struct tb_imap *c);
void tb_session_on_greeting(struct tb_imap *c, const struct tb_resp *r);
/* Whether a connection lost now should be replaced rather than reported (the server hung
 * up after refusing an expired token, before the retry with the new one completed). */
bool tb_session_reconnect_on_close(struct tb_imap *c);
/* Called for every command submitted once ready: starts a deferred COMPRESS ahead of the
 * first one that moves mail. */
void tb_session_before_submit(struct tb_imap *c, const struct tb_cmd *cmd);
/* compress = auto, before a command that moves mail: true when COMPRESS should start now;
 * clears compress_deferred once it never should (compress_auto.c). */
bool tb_session_auto_compress(struct tb_imap *c);

#endif
