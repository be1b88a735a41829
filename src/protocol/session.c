/* Session set-up: greeting, STARTTLS, authentication, COMPRESS, ENABLE/ID/NAMESPACE.
 * Each step that changes the byte stream (STARTTLS, COMPRESS) or the session state
 * (authentication) is a barrier; the last three are pipelined together. */
#include "protocol/imap_internal.h"

#include "twinbox/config.h"
#include "twinbox/log.h"

#include <ctype.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static void do_login(struct tb_imap *c);
static void post_login(struct tb_imap *c);
static void enable_and_friends(struct tb_imap *c, bool early);

static void set_caps_from_data(struct tb_buf *dst, struct mailimap_capability_data *cd)
{
    dst->len = 0;
    tb_buf_puts(dst, " ");
    if (!cd || !cd->cap_list)
        return;
    for (clistiter *it = clist_begin(cd->cap_list); it; it = clist_next(it)) {
        struct mailimap_capability *cap = clist_content(it);
        const char *name = cap->cap_type == MAILIMAP_CAPABILITY_AUTH_TYPE
                               ? cap->cap_data.cap_auth_type
                               : cap->cap_data.cap_name;
        if (cap->cap_type == MAILIMAP_CAPABILITY_AUTH_TYPE)
            tb_buf_puts(dst, "AUTH=");
        for (const char *q = name; q && *q; q++) {
            char ch = (char)toupper((unsigned char)*q);
            tb_buf_append(dst, &ch, 1);
        }
        tb_buf_puts(dst, " ");
    }
    tb_buf_cstr(dst);
}

static void caps_from_code(struct tb_imap *c, struct mailimap_resp_text_code *code)
{
    if (code && code->rc_type == MAILIMAP_RESP_TEXT_CODE_CAPABILITY_DATA)
        set_caps_from_data(&c->caps, code->rc_data.rc_cap_data);
}

static void namespace_others(struct tb_imap *c, struct mailimap_namespace_item *item,
                             struct tb_buf *out)
{
    (void)c;
    for (clistiter *it = item && item->ns_data_list ? clist_begin(item->ns_data_list) : NULL; it;
         it = clist_next(it)) {
        struct mailimap_namespace_info *info = clist_content(it);
        if (info->ns_prefix && info->ns_prefix[0] && !strchr(info->ns_prefix, '\n'))
            tb_buf_printf(out, "%s\n", info->ns_prefix);
    }
}

static void namespace_from(struct tb_imap *c, struct mailimap_namespace_data *ns)
{
    if (!ns)
        return;
    struct tb_buf others;
    tb_buf_init(&others);
    namespace_others(c, ns->ns_other, &others);
    namespace_others(c, ns->ns_shared, &others);
    free(c->ns_others);
    c->ns_others = tb_xstrdup(tb_buf_cstr(&others));
    tb_buf_free(&others);
    if (!ns->ns_personal || !ns->ns_personal->ns_data_list)
        return;
    clistiter *it = clist_begin(ns->ns_personal->ns_data_list);
    if (!it)
        return;
    struct mailimap_namespace_info *info = clist_content(it);
    free(c->ns_prefix);
    c->ns_prefix = tb_xstrdup(info->ns_prefix ? info->ns_prefix : "");
    c->separator = info->ns_delimiter;
}

/* Connection-level bookkeeping: sees every untagged response before anyone else. */
void tb_imap_observe(struct tb_imap *c, const struct tb_resp *r)
{
    struct mailimap_response_data *d = r->data;
    if (!d)
        return;
    switch (d->rsp_type) {
    case MAILIMAP_RESP_DATA_TYPE_CAPABILITY_DATA:
        set_caps_from_data(&c->caps, d->rsp_data.rsp_capability_data);
        break;
    case MAILIMAP_RESP_DATA_TYPE_COND_STATE:
        if (d->rsp_data.rsp_cond_state->rsp_text)
            caps_from_code(c, d->rsp_data.rsp_cond_state->rsp_text->rsp_code);
        break;
    case MAILIMAP_RESP_DATA_TYPE_COND_BYE: {
        struct mailimap_resp_text *t = d->rsp_data.rsp_bye->rsp_text;
        snprintf(c->bye, sizeof(c->bye), "BYE %s", t && t->rsp_text ? t->rsp_text : "");
        break;
    }
    case MAILIMAP_RESP_DATA_TYPE_EXTENSION_DATA: {
        struct mailimap_extension_data *e = d->rsp_data.rsp_extension_data;
        if (e->ext_extension->ext_id == MAILIMAP_EXTENSION_ENABLE) {
            struct tb_buf tmp;
            tb_buf_init(&tmp);
            set_caps_from_data(&tmp, e->ext_data);
            tb_buf_append(&c->enabled, tmp.data + 1, tmp.len - 1);
            tb_buf_cstr(&c->enabled);
            tb_buf_free(&tmp);
        } else if (e->ext_extension->ext_id == MAILIMAP_EXTENSION_NAMESPACE) {
            namespace_from(c, e->ext_data);
        }
        break;
    }
    default:
        break;
    }
}

static bool need_starttls(const struct tb_imap *c)
{
    return c->acct->type == TB_ACCOUNT_IMAP && c->acct->starttls;
}

static void tls_opts(const struct tb_imap *c, struct tb_tls_opts *o)
{
    o->host = c->acct->host;
    o->ca_file = c->acct->tls_ca_file;
    o->fingerprint = c->acct->tls_fingerprint;
    o->verify = c->acct->tls_verify;
    if (!o->verify && !o->fingerprint[0])
        tb_log_warn("%s: TLS certificate verification is off (tls-verify = no): the "
                    "connection can be intercepted",
                    tb_imap_account_name(c));
}

void tb_session_on_connected(struct tb_imap *c)
{
    if (c->acct->type == TB_ACCOUNT_IMAPS) {
        c->phase = PH_TLS;
        struct tb_tls_opts o;
        tls_opts(c, &o);
        tb_link_start_tls(c->link, &o);
    } else {
        c->phase = PH_GREETING;
    }
}

static void capability_then_login(struct tb_imap *c, const struct tb_imap_result *r, void *ud)
{
    (void)ud;
    if (r->status == TB_IMAP_ABORTED)
        return;
    if (r->status != TB_IMAP_OK) {
        tb_imap_fail(c, TB_ERR_PROTOCOL, "CAPABILITY failed: %s", r->text);
        return;
    }
    do_login(c);
}

void tb_session_on_tls_ready(struct tb_imap *c)
{
    if (c->phase == PH_TLS) {
        c->phase = PH_GREETING; /* implicit TLS: the greeting comes next */
        return;
    }
    /* After STARTTLS, capabilities seen in clear text cannot be trusted (RFC 3501 6.2.1). */
    c->caps.len = 0;
    tb_buf_puts(&c->caps, " ");
    tb_buf_cstr(&c->caps);
    c->phase = PH_LOGIN;
    tb_imap_submit_internal(c, tb_cmd_new("CAPABILITY"), TB_CMD_BARRIER, capability_then_login,
                            NULL);
}

static void starttls_done(struct tb_imap *c, const struct tb_imap_result *r, void *ud)
{
    (void)ud;
    if (r->status == TB_IMAP_ABORTED)
        return;
    if (r->status != TB_IMAP_OK) {
        tb_imap_fail(c, TB_ERR_TLS, "server refused STARTTLS: %s", r->text);
        return;
    }
    struct tb_tls_opts o;
    tls_opts(c, &o);
    c->restack = true;
    tb_link_start_tls(c->link, &o);
}

void tb_session_on_greeting(struct tb_imap *c, const struct tb_resp *r)
{
    struct mailimap_greeting *g = r->greeting;
    struct mailimap_resp_text *text = NULL;
    if (g->gr_type == MAILIMAP_GREETING_RESP_COND_BYE) {
        struct mailimap_resp_text *t = g->gr_data.gr_bye->rsp_text;
        tb_imap_fail(c, TB_ERR_TEMP, "server refused the connection: %s",
                     t && t->rsp_text ? t->rsp_text : "BYE");
        return;
    }
    if (g->gr_type == MAILIMAP_GREETING_RESP_COND_AUTH) {
        text = g->gr_data.gr_auth->rsp_text;
        c->preauth = g->gr_data.gr_auth->rsp_type == MAILIMAP_RESP_COND_AUTH_PREAUTH;
    }
    free(c->greeting);
    c->greeting = tb_xstrdup(text && text->rsp_text ? text->rsp_text : "");
    if (text)
        caps_from_code(c, text->rsp_code);
    if (need_starttls(c) && c->preauth) {
        /* PREAUTH in clear text skips the STARTTLS the account requires: whoever answered
         * could be anyone on the path. Nothing has been sent yet; send nothing. */
        tb_imap_fail(c, TB_ERR_TLS,
                     "server greeted with PREAUTH before STARTTLS; refusing an unencrypted "
                     "session on an account that requires TLS");
        return;
    }
    if (need_starttls(c)) {
        if (c->caps.len > 1 && !tb_imap_has_cap(c, "STARTTLS")) {
            tb_imap_fail(c, TB_ERR_TLS,
                         "server does not offer STARTTLS (set starttls = no only for a "
                         "trusted network)");
            return;
        }
        c->phase = PH_STARTTLS;
        tb_imap_submit_internal(c, tb_cmd_new("STARTTLS"), TB_CMD_BARRIER, starttls_done, NULL);
        return;
    }
    c->phase = PH_LOGIN;
    if (c->caps.len <= 1)
        tb_imap_submit_internal(c, tb_cmd_new("CAPABILITY"), TB_CMD_BARRIER, capability_then_login,
                                NULL);
    else
        do_login(c);
}

/* ---- authentication ----------------------------------------------------------------------
 * PLAIN (RFC 4616, optionally for another user), LOGIN, and the OAuth 2.0 bearer-token
 * mechanisms XOAUTH2 (Google's, also Microsoft's) and OAUTHBEARER (RFC 7628). Secrets live
 * in buffers sized once and wiped after use; traces show <redacted> (protocol/cmd.h). */

static void capability_then_post_login(struct tb_imap *c, const struct tb_imap_result *r, void *ud)
{
    (void)ud;
    if (r->status == TB_IMAP_ABORTED)
        return;
    post_login(c);
}

/* "ACCOUNT: cause" from the config layer, without the account (tb_imap_fail names it). */
static const char *without_account(const struct tb_imap *c, const char *msg)
{
    const char *name = tb_imap_account_name(c);
    size_t n = strlen(name);
    return strncmp(msg, name, n) == 0 && strncmp(msg + n, ": ", 2) == 0 ? msg + n + 2 : msg;
}

/* Whether the server's base64 JSON error challenge says the token is no longer valid:
 * "status" "401" (XOAUTH2, as Google and Microsoft send it) or "invalid_token" (RFC 7628
 * 3.2.2). A scan for that one member, not a JSON parser: nothing else in it is used. */
static bool challenge_says_expired(const char *b64)
{
    size_t n = b64 ? strlen(b64) : 0;
    if (n == 0)
        return false;
    unsigned char *json = tb_xmalloc(3 * (n / 4) + 4);
    int len = EVP_DecodeBlock(json, (const unsigned char *)b64, (int)n);
    bool expired = false;
    if (len > 0) {
        json[len] = 0;
        const char *p = strstr((const char *)json, "\"status\"");
        if (p) {
            p += strlen("\"status\"");
            while (*p == ' ' || *p == '\t' || *p == ':')
                p++;
            if (*p == '"')
                p++;
            expired = strncmp(p, "401", 3) == 0 || strncmp(p, "invalid_token", 13) == 0;
        }
    }
    free(json);
    return expired;
}

static bool says_expired(const char *t)
{
    return strcasestr(t, "expired") || (strcasestr(t, "invalid") && strcasestr(t, "token"));
}

/* Whether a refused OAuth login may succeed with a fresh token: the error challenge says so,
 * or the tagged NO carries [AUTHENTICATIONFAILED] (RFC 5530: what Gmail and Dovecot answer
 * for an expired token), or it or a BYE before it says "expired" / "invalid ... token". */
static bool token_expired(const struct tb_imap *c, const struct tb_imap_result *r)
{
    if (challenge_says_expired(c->sasl_challenge))
        return true;
    char code[64];
    if (strcmp(tb_imap_code_prefix(r, code, sizeof(code)), "[AUTHENTICATIONFAILED] ") == 0)
        return true;
    return says_expired(r->text ? r->text : "") || says_expired(c->bye);
}

static void do_authenticate(struct tb_imap *c);

/* Runs oauth-token-command once more and authenticates again on this connection (or, should
 * the server hang up meanwhile, on a new one: tb_session_reconnect_on_close). The command
 * runs synchronously, as it did before the connection: the session waits in its login
 * barrier either way, and a token helper answers from its cache or a quick refresh. */
static void retry_with_new_token(struct tb_imap *c)
{
    c->token_refreshed = true;
    char err[512];
    char *token = NULL;
    if (tb_account_password(c->acct, &token, err, sizeof(err)) < 0) {
        tb_imap_fail(c, TB_ERR_CONFIG, "the server refused the token and no new one came: %s",
                     without_account(c, err));
        return;
    }
    tb_log_debug(1, "%s: token refused; authenticating again with a new one",
                 tb_imap_account_name(c));
    tb_secret_free(&c->password);
    c->password = token;
    do_authenticate(c);
}

static void login_done(struct tb_imap *c, const struct tb_imap_result *r, void *ud)
{
    (void)ud;
    /* Aborted: the connection is gone. The secret stays for a reconnection (a retry with a
     * new token); tb_imap_fail and tb_imap_free wipe it otherwise. */
    if (r->status == TB_IMAP_ABORTED)
        return;
    tb_secret_free(&c->password);
    if (r->status != TB_IMAP_OK) {
        if (tb_account_uses_oauth(c->acct) && !c->token_refreshed && token_expired(c, r)) {
            retry_with_new_token(c);
            return;
        }
        char code[64];
        tb_imap_fail(c, TB_ERR_AUTH, "login failed: %s%s%s",
                     tb_imap_code_prefix(r, code, sizeof(code)), r->text,
                     c->token_refreshed ? " (again with a new token)" : "");
        return;
    }
    free(c->sasl_challenge);
    c->sasl_challenge = NULL;
    caps_from_code(c, r->code);
    if (c->caps.len <= 1)
        tb_imap_submit_internal(c, tb_cmd_new("CAPABILITY"), TB_CMD_BARRIER,
                                capability_then_post_login, NULL);
    else
        post_login(c);
}

bool tb_session_reconnect_on_close(struct tb_imap *c)
{
    if (c->phase != PH_LOGIN || !c->token_refreshed || c->auth_reconnected || !c->password)
        return false;
    c->auth_reconnected = true;
    return true;
}

/* The mechanism to use with this server (a static name), or NULL after failing the
 * connection. A mechanism the account asks for is required: falling back to another one
 * would send a different secret than the one configured. */
static const char *choose_mech(struct tb_imap *c)
{
    static const char *const names[] = {[TB_AUTH_PLAIN] = "PLAIN",
                                        [TB_AUTH_XOAUTH2] = "XOAUTH2",
                                        [TB_AUTH_OAUTHBEARER] = "OAUTHBEARER"};
    enum tb_auth auth = c->acct->auth;
    bool login_ok = !tb_imap_has_cap(c, "LOGINDISABLED");
    if (auth == TB_AUTH_DEFAULT) {
        if (tb_imap_has_cap(c, "AUTH=PLAIN"))
            return "PLAIN";
        if (login_ok)
            return "LOGIN";
        tb_imap_fail(c, TB_ERR_AUTH, "server offers neither AUTH=PLAIN nor LOGIN");
        return NULL;
    }
    if (auth == TB_AUTH_LOGIN) {
        if (login_ok)
            return "LOGIN";
        tb_imap_fail(c, TB_ERR_AUTH,
                     "server disables LOGIN (LOGINDISABLED), which the account's auth requires");
        return NULL;
    }
    char cap[32];
    snprintf(cap, sizeof(cap), "AUTH=%s", names[auth]);
    if (tb_imap_has_cap(c, cap))
        return names[auth];
    tb_imap_fail(c, TB_ERR_AUTH, "server does not offer %s, which the account's auth requires",
                 cap);
    return NULL;
}

/* GS2 saslname (RFC 5801): ',' and '=' escaped. */
static void put_saslname(struct tb_buf *b, const char *s)
{
    for (; *s; s++) {
        if (*s == ',')
            tb_buf_puts(b, "=2C");
        else if (*s == '=')
            tb_buf_puts(b, "=3D");
        else
            tb_buf_append(b, s, 1);
    }
}

/* The SASL response of MECH, base64. Built in one buffer reserved to its final size (a
 * growing buffer would leave copies of the secret in freed blocks), wiped after encoding. */
static char *sasl_response(const struct tb_imap *c, const char *mech)
{
    const struct tb_account *a = c->acct;
    const char *user = a->user ? a->user : "", *secret = c->password;
    const char *authc = a->auth_user ? a->auth_user : user;
    struct tb_buf raw;
    tb_buf_init(&raw);
    tb_buf_reserve(&raw, 3 * strlen(user) + strlen(authc) + strlen(secret) +
                             (a->host ? strlen(a->host) : 0) + 64);
    if (strcmp(mech, "PLAIN") == 0) {
        /* authzid NUL authcid NUL password; authzid only when logging in for another user. */
        tb_buf_puts(&raw, a->auth_user ? user : "");
        tb_buf_append(&raw, "", 1);
        tb_buf_puts(&raw, authc);
        tb_buf_append(&raw, "", 1);
    } else if (strcmp(mech, "XOAUTH2") == 0) {
        tb_buf_puts(&raw, "user=");
        tb_buf_puts(&raw, user);
        tb_buf_puts(&raw, "\001auth=Bearer ");
    } else { /* OAUTHBEARER: GS2 header naming the user, then key=value fields */
        tb_buf_puts(&raw, "n,a=");
        put_saslname(&raw, user);
        tb_buf_printf(&raw, ",\001host=%s\001port=%d\001auth=Bearer ", a->host ? a->host : "",
                      a->port);
    }
    tb_buf_puts(&raw, secret);
    if (strcmp(mech, "PLAIN") != 0)
        tb_buf_puts(&raw, "\001\001");
    char *b64 = tb_xmalloc(4 * ((raw.len + 2) / 3) + 1);
    EVP_EncodeBlock((unsigned char *)b64, (const unsigned char *)raw.data, (int)raw.len);
    explicit_bzero(raw.data, raw.cap);
    tb_buf_free(&raw);
    return b64;
}

static struct tb_cmd *authenticate_cmd(const struct tb_imap *c, const char *mech, const char *b64)
{
    struct tb_cmd *cmd = tb_cmd_new("AUTHENTICATE");
    tb_cmd_atom(cmd, mech);
    /* SASL-IR's initial response must be an atom on the command line (RFC 4959); the command
     * writer turns text over 1 KiB into a literal, so a longer response (Microsoft's tokens
     * run to 2-3 KiB) waits for the server's "+" instead. */
    if (tb_imap_has_cap(c, "SASL-IR") && strlen(b64) <= 1024)
        tb_cmd_secret(cmd, b64);
    else
        tb_cmd_continuation(cmd, b64);
    /* A refused token comes back as one more challenge (the JSON error), and the server
     * completes the command only once that is answered: with an empty line for XOAUTH2
     * (Google's protocol), %x01 for OAUTHBEARER (RFC 7628 3.2.3). Queued as a further
     * chunk, it is sent only if that "+" comes; a success completes the command without. */
    if (strcmp(mech, "XOAUTH2") == 0)
        tb_cmd_continuation(cmd, "");
    else if (strcmp(mech, "OAUTHBEARER") == 0)
        tb_cmd_continuation(cmd, "AQ==");
    return cmd;
}

/* Whether ENABLE, ID and NAMESPACE may follow the authentication in the same flight.
 * Dovecot's login process hands whatever the client sent after a successful
 * authentication to the imap process it starts (login-common passes the unread input
 * along), so the set-up costs no round trip of its own. A server whose login process
 * execs the session with its own read buffer (Courier's imaplogin) could lose them, so
 * this is for Dovecot only, recognized by its greeting (the default login_greeting);
 * another server, or a changed greeting, just takes one more round trip. Sent before the
 * post-login capabilities are known: ENABLE ignores names it does not know (RFC 5161).
 * Not with OAuth, whose expired-token retry authenticates again. */
static bool setup_rides_along(const struct tb_imap *c)
{
    return !tb_account_uses_oauth(c->acct) && c->greeting && strstr(c->greeting, "Dovecot") &&
           tb_imap_has_cap(c, "ENABLE") && tb_imap_has_cap(c, "ID");
}

/* Sends the login command of the account's mechanism with the secret in c->password. */
static void do_authenticate(struct tb_imap *c)
{
    const char *mech = choose_mech(c);
    if (!mech)
        return;
    struct tb_cmd *cmd;
    if (strcmp(mech, "LOGIN") == 0) {
        cmd = tb_cmd_new("LOGIN");
        tb_cmd_astring(cmd, c->acct->user ? c->acct->user : "");
        tb_cmd_secret(cmd, c->password);
    } else {
        char *b64 = sasl_response(c, mech);
        cmd = authenticate_cmd(c, mech, b64);
        explicit_bzero(b64, strlen(b64));
        free(b64);
    }
    c->auth_mech = mech;
    free(c->sasl_challenge);
    c->sasl_challenge = NULL;
    bool early = setup_rides_along(c);
    tb_imap_submit_internal(c, cmd, early ? 0 : TB_CMD_BARRIER, login_done, NULL);
    if (early) {
        enable_and_friends(c, true);
        if (c->ev->early)
            c->ev->early(c, c->ud);
    }
}

static void do_login(struct tb_imap *c)
{
    if (c->preauth) {
        c->auth_mech = "PREAUTH";
        post_login(c);
        return;
    }
    const char *what = tb_account_uses_oauth(c->acct) ? "access token" : "password";
    bool encrypted = tb_link_tls_active(c->link);
    if (!encrypted && !tb_link_is_loopback(c->link) && !tb_link_is_tunnel(c->link) &&
        !c->acct->allow_plaintext_password) {
        tb_imap_fail(c, TB_ERR_CONFIG,
                     "refusing to send the %s over an unencrypted connection to %s "
                     "(use imaps or starttls, or allow-plaintext-password = yes)",
                     what, c->acct->host);
        return;
    }
    if (!c->password) {
        tb_imap_fail(c, TB_ERR_CONFIG, "no %s available", what);
        return;
    }
    do_authenticate(c);
}

const char *tb_imap_auth_mechanism(const struct tb_imap *c)
{
    return c->auth_mech ? c->auth_mech : "";
}

static void setup_step_done(struct tb_imap *c, const struct tb_imap_result *r, void *ud)
{
    const char *what = ud;
    if (r->status == TB_IMAP_ABORTED)
        return;
    if (r->status != TB_IMAP_OK)
        tb_log_debug(1, "%s: %s failed: %s", tb_imap_account_name(c), what, r->text);
    if (--c->setup_outstanding == 0 && c->phase == PH_ENABLE) {
        c->phase = PH_READY;
        if (c->ev->ready)
            c->ev->ready(c, c->ud);
    }
}

/* Releases the hold enable_and_friends takes while it submits (and, early, until the
 * authentication succeeded): `ready` fires once the set-up commands are answered too. */
static void setup_release(struct tb_imap *c)
{
    struct tb_imap_result ok = {.status = TB_IMAP_OK, .text = ""};
    setup_step_done(c, &ok, "setup");
}

/* Early (in the flight of the authentication): the hold taken here is released by
 * post_login once the authentication succeeded, so `ready` never fires before it. */
static void enable_and_friends(struct tb_imap *c, bool early)
{
    if (!early)
        c->phase = PH_ENABLE;
    c->setup_early = early;
    c->setup_outstanding = 1; /* held until everything is submitted (early: and logged in) */
    bool qresync = early || tb_imap_has_cap(c, "QRESYNC");
    bool condstore = early || tb_imap_has_cap(c, "CONDSTORE");
    if (tb_imap_has_cap(c, "ENABLE") && (qresync || condstore)) {
        struct tb_cmd *cmd = tb_cmd_new("ENABLE");
        if (condstore)
            tb_cmd_atom(cmd, "CONDSTORE");
        if (qresync)
            tb_cmd_atom(cmd, "QRESYNC");
        c->setup_outstanding++;
        tb_imap_submit_internal(c, cmd, 0, setup_step_done, "ENABLE");
    }
    if (tb_imap_has_cap(c, "ID")) {
        struct tb_cmd *cmd = tb_cmd_new("ID");
        tb_cmd_printf(cmd, "(\"name\" \"twinbox\" \"version\" \"%s\")", TWINBOX_VERSION);
        c->setup_outstanding++;
        tb_imap_submit_internal(c, cmd, 0, setup_step_done, "ID");
    }
    if (early || tb_imap_has_cap(c, "NAMESPACE")) {
        c->setup_outstanding++;
        tb_imap_submit_internal(c, tb_cmd_new("NAMESPACE"), 0, setup_step_done, "NAMESPACE");
    }
    if (!early)
        setup_release(c);
}

static void compress_done(struct tb_imap *c, const struct tb_imap_result *r, void *ud)
{
    (void)ud;
    if (r->status == TB_IMAP_ABORTED)
        return;
    if (r->status == TB_IMAP_OK) {
        c->restack = true;
        tb_link_start_compress(c->link);
    } else {
        tb_log_debug(1, "%s: COMPRESS refused: %s", tb_imap_account_name(c), r->text);
    }
}

/* Commands of a run that finds nothing to do, and of set-up and bookkeeping: a handful of
 * short lines each, not worth the round trip COMPRESS costs. (XREPLICATE: its change feed
 * and the long-held WATCH are small too.) */
static bool moves_mail(const struct tb_cmd *cmd)
{
    static const char *const light[] = {
        "LIST", "LSUB",      "STATUS",      "LOGOUT", "NOOP",      "CAPABILITY",
        "ID",   "ENABLE",    "NAMESPACE",   "CREATE", "DELETE",    "RENAME",
        "IDLE", "SUBSCRIBE", "UNSUBSCRIBE", "NOTIFY", "XREPLICATE"};
    const char *verb = tb_cmd_verb(cmd);
    for (size_t i = 0; i < sizeof(light) / sizeof(light[0]); i++)
        if (strcasecmp(verb, light[i]) == 0)
            return false;
    return true;
}

void tb_imap_compress_now(struct tb_imap *c)
{
    if (!c->compress_deferred || c->phase != PH_READY)
        return;
    c->compress_deferred = false;
    struct tb_cmd *cmd = tb_cmd_new("COMPRESS");
    tb_cmd_atom(cmd, "DEFLATE");
    /* A barrier: waits for what is in flight, and what follows is written compressed. */
    tb_imap_submit_internal(c, cmd, TB_CMD_BARRIER, compress_done, NULL);
}

void tb_session_before_submit(struct tb_imap *c, const struct tb_cmd *cmd)
{
    /* Once COMPRESS runs or was ruled out, nothing to decide: no probe (a system call
     * each) for every command that follows. */
    if (!c->compress_deferred || !moves_mail(cmd))
        return;
    if (c->acct->compress_auto && !tb_session_auto_compress(c))
        return;
    tb_imap_compress_now(c);
}

static void post_login(struct tb_imap *c)
{
    c->compress_deferred = c->acct->compress && tb_imap_has_cap(c, "COMPRESS=DEFLATE") &&
                           !tb_link_compress_active(c->link);
    if (!c->setup_early) {
        enable_and_friends(c, false);
        return;
    }
    c->phase = PH_ENABLE;
    setup_release(c);
}
