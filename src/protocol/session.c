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

static void do_login(struct tb_imap *c);
static void post_login(struct tb_imap *c);

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

static void capability_then_post_login(struct tb_imap *c, const struct tb_imap_result *r, void *ud)
{
    (void)ud;
    if (r->status == TB_IMAP_ABORTED)
        return;
    post_login(c);
}

static void login_done(struct tb_imap *c, const struct tb_imap_result *r, void *ud)
{
    (void)ud;
    tb_secret_free(&c->password);
    if (r->status == TB_IMAP_ABORTED)
        return;
    if (r->status != TB_IMAP_OK) {
        char code[64] = "";
        if (r->code && r->code->rc_type == MAILIMAP_RESP_TEXT_CODE_OTHER &&
            r->code->rc_data.rc_atom.atom_name)
            snprintf(code, sizeof(code), "[%s] ", r->code->rc_data.rc_atom.atom_name);
        tb_imap_fail(c, TB_ERR_AUTH, "login failed: %s%s", code, r->text);
        return;
    }
    caps_from_code(c, r->code);
    if (c->caps.len <= 1)
        tb_imap_submit_internal(c, tb_cmd_new("CAPABILITY"), TB_CMD_BARRIER,
                                capability_then_post_login, NULL);
    else
        post_login(c);
}

static void do_login(struct tb_imap *c)
{
    if (c->preauth) {
        post_login(c);
        return;
    }
    bool encrypted = tb_link_tls_active(c->link);
    if (!encrypted && !tb_link_is_loopback(c->link) && !tb_link_is_tunnel(c->link) &&
        !c->acct->allow_plaintext_password) {
        tb_imap_fail(c, TB_ERR_CONFIG,
                     "refusing to send the password over an unencrypted connection to %s "
                     "(use imaps or starttls, or allow-plaintext-password = yes)",
                     c->acct->host);
        return;
    }
    if (!c->password) {
        tb_imap_fail(c, TB_ERR_CONFIG, "no password available");
        return;
    }
    const char *user = c->acct->user ? c->acct->user : "";
    struct tb_cmd *cmd;
    if (tb_imap_has_cap(c, "AUTH=PLAIN")) {
        /* PLAIN: authzid NUL authcid NUL password, base64 (RFC 4616). */
        size_t ul = strlen(user), pl = strlen(c->password);
        size_t raw_len = ul + pl + 2;
        unsigned char *raw = tb_xmalloc(raw_len);
        raw[0] = 0;
        memcpy(raw + 1, user, ul);
        raw[1 + ul] = 0;
        memcpy(raw + 2 + ul, c->password, pl);
        char *b64 = tb_xmalloc(4 * ((raw_len + 2) / 3) + 1);
        EVP_EncodeBlock((unsigned char *)b64, raw, (int)raw_len);
        cmd = tb_cmd_new("AUTHENTICATE PLAIN");
        if (tb_imap_has_cap(c, "SASL-IR"))
            tb_cmd_secret(cmd, b64);
        else
            tb_cmd_continuation(cmd, b64);
        explicit_bzero(raw, raw_len);
        explicit_bzero(b64, strlen(b64));
        free(raw);
        free(b64);
    } else if (!tb_imap_has_cap(c, "LOGINDISABLED")) {
        cmd = tb_cmd_new("LOGIN");
        tb_cmd_astring(cmd, user);
        tb_cmd_secret(cmd, c->password);
    } else {
        tb_imap_fail(c, TB_ERR_AUTH, "server offers neither AUTH=PLAIN nor LOGIN");
        return;
    }
    tb_imap_submit_internal(c, cmd, TB_CMD_BARRIER, login_done, NULL);
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

static void enable_and_friends(struct tb_imap *c)
{
    c->phase = PH_ENABLE;
    c->setup_outstanding = 1; /* held until everything is submitted */
    if (tb_imap_has_cap(c, "ENABLE") &&
        (tb_imap_has_cap(c, "QRESYNC") || tb_imap_has_cap(c, "CONDSTORE"))) {
        struct tb_cmd *cmd = tb_cmd_new("ENABLE");
        if (tb_imap_has_cap(c, "CONDSTORE"))
            tb_cmd_atom(cmd, "CONDSTORE");
        if (tb_imap_has_cap(c, "QRESYNC"))
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
    if (tb_imap_has_cap(c, "NAMESPACE")) {
        c->setup_outstanding++;
        tb_imap_submit_internal(c, tb_cmd_new("NAMESPACE"), 0, setup_step_done, "NAMESPACE");
    }
    struct tb_imap_result ok = {.status = TB_IMAP_OK, .text = ""};
    setup_step_done(c, &ok, "setup");
}

static void compress_done(struct tb_imap *c, const struct tb_imap_result *r, void *ud)
{
    (void)ud;
    if (r->status == TB_IMAP_ABORTED)
        return;
    if (r->status == TB_IMAP_OK) {
        c->restack = true;
        if (tb_link_start_compress(c->link) < 0)
            return;
    } else {
        tb_log_debug(1, "%s: COMPRESS refused: %s", tb_imap_account_name(c), r->text);
    }
    enable_and_friends(c);
}

static void post_login(struct tb_imap *c)
{
    if (c->acct->compress && tb_imap_has_cap(c, "COMPRESS=DEFLATE") &&
        !tb_link_compress_active(c->link)) {
        c->phase = PH_COMPRESS;
        struct tb_cmd *cmd = tb_cmd_new("COMPRESS");
        tb_cmd_atom(cmd, "DEFLATE");
        tb_imap_submit_internal(c, cmd, TB_CMD_BARRIER, compress_done, NULL);
        return;
    }
    enable_and_friends(c);
}
