/* One IMAP connection: transport, framing, pipelining and session set-up.
 *
 * Usage: tb_imap_new(), tb_imap_start(); `ready` fires once the session is authenticated,
 * compressed and ENABLEd; then tb_imap_submit() any number of commands. Each completes
 * through its own callback with its tagged status; untagged data is offered first to the
 * in-flight commands' filters (by content: mailbox name, UID, ESEARCH tag...), then to the
 * connection handlers, because servers complete pipelined commands out of order.
 *
 * Ownership: the connection owns submitted commands. Every submitted command's callback is
 * called exactly once, with TB_IMAP_ABORTED if the connection failed first. After `error`
 * the connection accepts no more work; free it with tb_imap_free (not from a callback). */
#ifndef TWINBOX_IMAP_H
#define TWINBOX_IMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "twinbox/error.h"

struct tb_imap;
struct tb_account;
struct tb_cmd;
struct tb_resp;
struct mailimap_resp_text_code;

enum tb_imap_status { TB_IMAP_OK, TB_IMAP_NO, TB_IMAP_BAD, TB_IMAP_ABORTED };

struct tb_imap_result {
    enum tb_imap_status status;
    const char *text;                     /* resp-text, or the connection error */
    struct mailimap_resp_text_code *code; /* NULL when the response had no code */
    const struct tb_resp *resp;           /* the tagged response; NULL when aborted */
    /* The code held a number out of range and was dropped (code is then NULL): a command
     * that needs it must fail rather than act as if there had been none. */
    bool code_unreadable;
};

/* "[NAME] " for the result's response code (an atom's name, or the known code's), "" when
 * there is none: for messages that quote the server. Returns buf. */
const char *tb_imap_code_prefix(const struct tb_imap_result *r, char *buf, size_t len);
/* A NO that asks to come back later rather than refusing the command for good: the codes
 * THROTTLED (Gmail), UNAVAILABLE, INUSE, SERVERBUG (RFC 5530), or Microsoft 365's
 * "Suggested Backoff Time" (kept in the text the error quotes, where migrate reads the
 * delay). */
bool tb_imap_result_throttled(const struct tb_imap_result *r);

typedef void tb_imap_done_fn(struct tb_imap *c, const struct tb_imap_result *r, void *ud);
/* Returns true to claim the response. */
typedef bool tb_imap_untagged_fn(struct tb_imap *c, const struct tb_resp *r, void *ud);

struct tb_imap_events {
    void (*ready)(struct tb_imap *c, void *ud);
    /* Fatal; e->msg is one line "ACCOUNT: STEP: cause", e->kind what failed. */
    void (*error)(struct tb_imap *c, const struct tb_error *e, void *ud);
    /* Optional (may be NULL). The authentication went out with the session set-up in one
     * flight (a Dovecot, see session.c): commands submitted from this callback join that
     * flight and run once logged in; a failed login aborts them. Only the greeting's
     * capabilities are known here, not the session's. */
    void (*early)(struct tb_imap *c, void *ud);
};

/* Must not be pipelined with anything: waits for all in-flight commands and holds every
 * later one until it completes (STARTTLS, COMPRESS, authentication, SELECT ordering). */
#define TB_CMD_BARRIER 1u
/* Waits for all in-flight commands, but later ones may follow it at once (SELECT: what
 * follows runs in the new mailbox, which the server orders for us; what precedes must not
 * run in it). */
#define TB_CMD_FENCE 2u

/* IDLE-like: the command's last continuation chunk (e.g. "DONE", added with
 * tb_cmd_continuation) is not sent on the server's "+" but held until tb_imap_release();
 * meanwhile the server streams untagged data and no response timeout applies. */
#define TB_CMD_HOLD 4u

struct tb_imap *tb_imap_new(uv_loop_t *loop, const struct tb_account *acct,
                            const struct tb_imap_events *ev, void *ud);
/* The password (the access token for auth = xoauth2 | oauthbearer) is copied and wiped once
 * authentication completed. An OAuth token the server refuses as expired is replaced once
 * by running the account's oauth-token-command again (tb_account_password). */
void tb_imap_set_password(struct tb_imap *c, const char *password);
int tb_imap_start(struct tb_imap *c);
void tb_imap_submit(struct tb_imap *c, struct tb_cmd *cmd, unsigned flags, tb_imap_done_fn *done,
                    tb_imap_untagged_fn *untagged, void *ud);
/* Called once the command's last byte is handed to the link: its literals (message bodies)
 * are then the link's, which frees each as the socket takes it, and the command keeps
 * none. Not called for a command aborted before it was sent. */
typedef void tb_imap_sent_fn(void *ud);
/* tb_imap_submit, with `sent` (called before `done`, with the same ud). */
void tb_imap_submit_sent(struct tb_imap *c, struct tb_cmd *cmd, unsigned flags,
                         tb_imap_done_fn *done, tb_imap_sent_fn *sent, void *ud);
/* Sends the held last chunk of the TB_CMD_HOLD command in flight (at once, or on its "+"
 * if that has not come yet). */
void tb_imap_release(struct tb_imap *c);
/* A mark after every command submitted so far, and whether all of those have completed
 * (answered or aborted), whatever was submitted since: lets a caller wait for one group of
 * commands while the next group is already in flight. */
uint64_t tb_imap_mark(const struct tb_imap *c);
/* Bytes of sent commands the link still holds (written from where they are, or copied by
 * COMPRESS, TLS or pacing) until the socket takes them: memory a sender's window counts. */
size_t tb_imap_unwritten(const struct tb_imap *c);
bool tb_imap_done_through(const struct tb_imap *c, uint64_t mark);
/* A command submitted and not yet answered: an answer may still come. */
bool tb_imap_busy(const struct tb_imap *c);
void tb_imap_add_handler(struct tb_imap *c, tb_imap_untagged_fn *fn, void *ud);
/* LOGOUT then close; `done` (may be NULL) fires when the LOGOUT completed or failed. */
void tb_imap_logout(struct tb_imap *c, tb_imap_done_fn *done, void *ud);
void tb_imap_free(struct tb_imap *c);

const char *tb_imap_account_name(const struct tb_imap *c);
/* Why the connection failed; TB_ERR_NONE while it works. */
enum tb_err_kind tb_imap_error_kind(const struct tb_imap *c);
bool tb_imap_has_cap(const struct tb_imap *c, const char *cap);
/* The server's APPENDLIMIT=N (RFC 7889), 0 when it announced none. */
uint64_t tb_imap_appendlimit(const struct tb_imap *c);
/* Whether compress = auto is still measuring this far link, mail moving uncompressed: a
 * copy keeps less in flight meanwhile (what is in flight when COMPRESS starts arrives
 * uncompressed). */
bool tb_imap_probing(const struct tb_imap *c);
/* Whether the account's max-messages-per-second paces APPENDs (one token per command). */
bool tb_imap_paces_appends(const struct tb_imap *c);
/* Space-separated capability list as last announced. */
const char *tb_imap_caps(const struct tb_imap *c);
const char *tb_imap_enabled(const struct tb_imap *c);
const char *tb_imap_greeting(const struct tb_imap *c);
bool tb_imap_tls_active(const struct tb_imap *c);
const char *tb_imap_tls_description(const struct tb_imap *c);
bool tb_imap_compress_active(const struct tb_imap *c);
/* COMPRESS is deferred until the first command that moves mail (and, with compress = auto,
 * left out on a fast link). This starts it now when the account allows it and the server
 * offers it, whatever the link (probe shows whether it works). */
void tb_imap_compress_now(struct tb_imap *c);
bool tb_imap_preauth(const struct tb_imap *c);
/* How the session authenticated: "PLAIN", "LOGIN", "XOAUTH2", "OAUTHBEARER", or "PREAUTH"
 * (the greeting did); "" before authentication. A static string. */
const char *tb_imap_auth_mechanism(const struct tb_imap *c);
char tb_imap_separator(const struct tb_imap *c); /* personal namespace; 0 if unknown */
const char *tb_imap_namespace_prefix(const struct tb_imap *c);
/* Other users' and shared namespace prefixes, '\n'-separated ("" when none). */
const char *tb_imap_namespace_others(const struct tb_imap *c);
/* Wire statistics of the link: round trips (sends that follow received data) and bytes. */
uint64_t tb_imap_turns(const struct tb_imap *c);
uint64_t tb_imap_bytes_in(const struct tb_imap *c);
uint64_t tb_imap_bytes_out(const struct tb_imap *c);

#endif
