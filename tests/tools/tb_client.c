/* tb-client: drives one twinbox IMAP connection for the integration tests, so the
 * pipeline, literals, compression and error paths are exercised against real Dovecot
 * without a sync engine. Usage: tb-client URL OP [ARGS]
 *   noop N                  N NOOPs issued back to back
 *   fetch-many MBOX N       SELECT, then N UID FETCH commands (UIDs 1..N), each its own tag
 *   status-literal MBOX N   N STATUS commands whose mailbox is sent as a literal
 *   fetch MBOX UID SECTION  SELECT, UID FETCH BODY.PEEK[SECTION]; prints size and sha256
 * Prints "ok ..." and "turns N" (client-side count) on success; exit codes as twinbox. */
#include "protocol/cmd.h"
#include "protocol/parse.h"
#include "twinbox/config.h"
#include "twinbox/exit.h"
#include "twinbox/imap.h"
#include "twinbox/log.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct run {
    char **argv;
    int argc;
    int outstanding, ok, failed, untagged;
    int exit_code;
    bool done;
    size_t body_len;
    unsigned char sha[32];
    bool got_body;
};

static void finish(struct tb_imap *c, struct run *r)
{
    if (r->done)
        return;
    r->done = true;
    printf("turns %llu\n", (unsigned long long)tb_imap_turns(c));
    tb_imap_logout(c, NULL, NULL);
}

static void counted(struct tb_imap *c, const struct tb_imap_result *res, void *ud)
{
    struct run *r = ud;
    if (res->status == TB_IMAP_ABORTED)
        return;
    if (res->status == TB_IMAP_OK)
        r->ok++;
    else
        r->failed++;
    if (--r->outstanding == 0) {
        printf("ok %d failed %d untagged %d\n", r->ok, r->failed, r->untagged);
        finish(c, r);
    }
}

static bool count_untagged(struct tb_imap *c, const struct tb_resp *resp, void *ud)
{
    (void)c;
    struct run *r = ud;
    if (!resp->data)
        return false;
    r->untagged++;
    return true;
}

static bool body_untagged(struct tb_imap *c, const struct tb_resp *resp, void *ud)
{
    (void)c;
    struct run *r = ud;
    if (!resp->data || resp->data->rsp_type != MAILIMAP_RESP_DATA_TYPE_MESSAGE_DATA)
        return false;
    struct mailimap_msg_att *att = resp->data->rsp_data.rsp_message_data->mdt_msg_att;
    for (clistiter *it = clist_begin(att->att_list); it; it = clist_next(it)) {
        struct mailimap_msg_att_item *item = clist_content(it);
        if (item->att_type != MAILIMAP_MSG_ATT_ITEM_STATIC ||
            item->att_data.att_static->att_type != MAILIMAP_MSG_ATT_BODY_SECTION)
            continue;
        struct mailimap_msg_att_body_section *bs =
            item->att_data.att_static->att_data.att_body_section;
        /* A whole message's literal comes detached from the response (protocol/framer.h). */
        const char *body = resp->body ? resp->body->data : bs->sec_body_part;
        r->body_len = resp->body ? resp->body->len : bs->sec_body_part ? bs->sec_length : 0;
        unsigned int n = 0;
        EVP_Digest(body ? body : "", r->body_len, r->sha, &n, EVP_sha256(), NULL);
        r->got_body = true;
    }
    return true;
}

static void fetch_done(struct tb_imap *c, const struct tb_imap_result *res, void *ud)
{
    struct run *r = ud;
    if (res->status == TB_IMAP_ABORTED)
        return;
    if (res->status != TB_IMAP_OK || !r->got_body) {
        fprintf(stderr, "tb-client: FETCH failed: %s\n", res->text);
        r->exit_code = TB_EXIT_TEMPFAIL;
    } else {
        printf("size %zu sha256 ", r->body_len);
        for (int i = 0; i < 32; i++)
            printf("%02x", r->sha[i]);
        printf("\n");
    }
    finish(c, r);
}

static void select_mbox(struct tb_imap *c, const char *mbox)
{
    struct tb_cmd *cmd = tb_cmd_new("SELECT");
    tb_cmd_astring(cmd, mbox);
    tb_imap_submit(c, cmd, TB_CMD_BARRIER, NULL, NULL, NULL);
}

static void on_ready(struct tb_imap *c, void *ud)
{
    struct run *r = ud;
    const char *op = r->argv[0];
    if (strcmp(op, "noop") == 0 && r->argc == 2) {
        int n = atoi(r->argv[1]);
        r->outstanding = n;
        for (int i = 0; i < n; i++)
            tb_imap_submit(c, tb_cmd_new("NOOP"), 0, counted, NULL, r);
        if (n == 0) {
            printf("ok 0 failed 0 untagged 0\n");
            finish(c, r);
        }
    } else if (strcmp(op, "fetch-many") == 0 && r->argc == 3) {
        int n = atoi(r->argv[2]);
        select_mbox(c, r->argv[1]);
        r->outstanding = n;
        for (int i = 1; i <= n; i++) {
            struct tb_cmd *cmd = tb_cmd_new("UID FETCH");
            tb_cmd_printf(cmd, "%d (UID FLAGS)", i);
            tb_imap_submit(c, cmd, 0, counted, count_untagged, r);
        }
    } else if (strcmp(op, "status-literal") == 0 && r->argc == 3) {
        int n = atoi(r->argv[2]);
        r->outstanding = n;
        for (int i = 0; i < n; i++) {
            struct tb_cmd *cmd = tb_cmd_new("STATUS");
            tb_cmd_literal(cmd, r->argv[1], strlen(r->argv[1]));
            tb_cmd_atom(cmd, "(MESSAGES)");
            tb_imap_submit(c, cmd, 0, counted, count_untagged, r);
        }
    } else if (strcmp(op, "fetch") == 0 && r->argc == 4) {
        select_mbox(c, r->argv[1]);
        struct tb_cmd *cmd = tb_cmd_new("UID FETCH");
        tb_cmd_printf(cmd, "%s (BODY.PEEK[%s])", r->argv[2], r->argv[3]);
        tb_imap_submit(c, cmd, 0, fetch_done, body_untagged, r);
    } else {
        fprintf(stderr, "tb-client: bad operation\n");
        r->exit_code = TB_EXIT_USAGE;
        finish(c, r);
    }
}

static void on_error(struct tb_imap *c, const struct tb_error *e, void *ud)
{
    (void)c;
    struct run *r = ud;
    if (r->done)
        return;
    fprintf(stderr, "tb-client: %s\n", e->msg);
    r->exit_code = tb_error_exit(e->kind);
    r->done = true;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: tb-client URL OP [ARGS]\n");
        return TB_EXIT_USAGE;
    }
    if (getenv("TB_CLIENT_VERBOSE"))
        tb_verbosity = atoi(getenv("TB_CLIENT_VERBOSE"));
    char err[512];
    struct tb_account *acct;
    if (tb_account_from_url(argv[1], &acct, err, sizeof(err)) < 0) {
        fprintf(stderr, "tb-client: %s\n", err);
        return TB_EXIT_CONFIG;
    }
    char *pw = NULL;
    if (tb_account_needs_password(acct) && tb_account_password(acct, &pw, err, sizeof(err)) < 0) {
        fprintf(stderr, "tb-client: %s\n", err);
        tb_account_free(acct);
        return TB_EXIT_CONFIG;
    }
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct run r = {.argv = argv + 2, .argc = argc - 2};
    static const struct tb_imap_events ev = {on_ready, on_error, NULL};
    struct tb_imap *c = tb_imap_new(&loop, acct, &ev, &r);
    tb_imap_set_password(c, pw);
    tb_imap_start(c);
    uv_run(&loop, UV_RUN_DEFAULT);
    tb_imap_free(c);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    if (pw)
        tb_password_free(pw);
    tb_account_free(acct);
    return r.exit_code;
}
