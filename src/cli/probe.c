/* `twinbox probe ACCOUNT`: connect, set up the session, list every mailbox with its
 * UIDVALIDITY/UIDNEXT/HIGHESTMODSEQ in one LIST-STATUS (or LIST plus pipelined STATUS),
 * and report what was negotiated and how many round trips it took. */
#include "cli/cli.h"

#include "protocol/cmd.h"
#include "protocol/parse.h"
#include "store/fetch.h"
#include "twinbox/config.h"
#include "twinbox/exit.h"
#include "twinbox/imap.h"
#include "twinbox/log.h"
#include "util/buf.h"

#include <libetpan/libetpan.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct probe {
    const struct tb_cli *cli;
    struct tb_imap *c;
    struct tb_mbox_info *boxes;
    size_t n_boxes;
    size_t outstanding;
    int exit_code;
    uint64_t turns;
    bool done;
};

/* Claims LIST and STATUS data for the probe's commands (routing by content). */
static bool on_untagged(struct tb_imap *c, const struct tb_resp *r, void *ud)
{
    (void)c;
    struct probe *p = ud;
    return tb_list_status_collect(r->data, &p->boxes, &p->n_boxes);
}

static void finish(struct probe *p)
{
    if (p->done)
        return;
    p->done = true;
    p->turns = tb_imap_turns(p->c);
    tb_imap_logout(p->c, NULL, NULL);
}

static const char *status_items(struct tb_imap *c)
{
    return tb_imap_has_cap(c, "CONDSTORE") ? "(MESSAGES UIDNEXT UIDVALIDITY HIGHESTMODSEQ)"
                                           : "(MESSAGES UIDNEXT UIDVALIDITY)";
}

static void step_done(struct tb_imap *c, const struct tb_imap_result *r, void *ud)
{
    struct probe *p = ud;
    if (r->status == TB_IMAP_ABORTED)
        return;
    if (r->status != TB_IMAP_OK)
        tb_log_warn("%s: command failed: %s", tb_imap_account_name(c), r->text);
    if (--p->outstanding == 0)
        finish(p);
}

static void list_done(struct tb_imap *c, const struct tb_imap_result *r, void *ud)
{
    struct probe *p = ud;
    if (r->status == TB_IMAP_ABORTED)
        return;
    if (r->status != TB_IMAP_OK) {
        tb_log_error("%s: LIST failed: %s", tb_imap_account_name(c), r->text);
        p->exit_code = TB_EXIT_TEMPFAIL;
        finish(p);
        return;
    }
    if (tb_imap_has_cap(c, "LIST-STATUS")) {
        finish(p);
        return;
    }
    /* No LIST-STATUS: one STATUS per selectable mailbox, all pipelined. */
    p->outstanding = 1;
    for (size_t i = 0; i < p->n_boxes; i++) {
        if (p->boxes[i].noselect)
            continue;
        struct tb_cmd *cmd = tb_cmd_new("STATUS");
        tb_cmd_astring(cmd, p->boxes[i].name);
        tb_cmd_atom(cmd, status_items(c));
        p->outstanding++;
        tb_imap_submit(c, cmd, 0, step_done, on_untagged, p);
    }
    struct tb_imap_result ok = {.status = TB_IMAP_OK, .text = ""};
    step_done(c, &ok, p);
}

static void on_ready(struct tb_imap *c, void *ud)
{
    struct probe *p = ud;
    struct tb_cmd *cmd = tb_cmd_new("LIST");
    tb_cmd_string(cmd, "");
    tb_cmd_string(cmd, "*");
    if (tb_imap_has_cap(c, "LIST-STATUS"))
        tb_cmd_printf(cmd, "RETURN (STATUS %s)", status_items(c));
    tb_imap_submit(c, cmd, 0, list_done, on_untagged, p);
}

static void on_error(struct tb_imap *c, const struct tb_error *e, void *ud)
{
    (void)c;
    struct probe *p = ud;
    if (p->done)
        return; /* the server closing after LOGOUT */
    tb_log_error("%s", e->msg);
    p->exit_code = tb_error_exit(e->kind);
    p->done = true;
}

static void print_text(struct probe *p)
{
    struct tb_imap *c = p->c;
    printf("account: %s\n", tb_imap_account_name(c));
    printf("greeting: %s%s\n", tb_imap_preauth(c) ? "PREAUTH " : "", tb_imap_greeting(c));
    printf("capabilities: %s\n", tb_imap_caps(c));
    printf("enabled: %s\n", tb_imap_enabled(c)[0] ? tb_imap_enabled(c) : "(none)");
    printf("tls: %s\n", tb_imap_tls_active(c) ? tb_imap_tls_description(c) : "no");
    printf("compress: %s\n", tb_imap_compress_active(c) ? "DEFLATE" : "no");
    char sep = tb_imap_separator(c);
    printf("namespace: \"%s\" separator \"%c\"\n", tb_imap_namespace_prefix(c), sep ? sep : '?');
    printf("mailboxes: %zu\n", p->n_boxes);
    for (size_t i = 0; i < p->n_boxes; i++) {
        struct tb_mbox_info *b = &p->boxes[i];
        if (!b->have_status) {
            printf("  %s (not selectable)\n", b->name);
            continue;
        }
        printf("  %s uidvalidity=%u uidnext=%u highestmodseq=%llu messages=%u\n", b->name,
               b->uidvalidity, b->uidnext, (unsigned long long)b->highestmodseq, b->messages);
    }
    printf("round trips: %llu\n", (unsigned long long)p->turns);
}

static void print_json(struct probe *p)
{
    struct tb_imap *c = p->c;
    printf("{\"account\": ");
    tb_json_string(stdout, tb_imap_account_name(c));
    printf(", \"preauth\": %s, \"greeting\": ", tb_imap_preauth(c) ? "true" : "false");
    tb_json_string(stdout, tb_imap_greeting(c));
    printf(", \"capabilities\": ");
    tb_json_string(stdout, tb_imap_caps(c));
    printf(", \"enabled\": ");
    tb_json_string(stdout, tb_imap_enabled(c));
    printf(", \"tls\": ");
    if (tb_imap_tls_active(c))
        tb_json_string(stdout, tb_imap_tls_description(c));
    else
        printf("null");
    printf(", \"compress\": %s, \"namespace\": ", tb_imap_compress_active(c) ? "true" : "false");
    tb_json_string(stdout, tb_imap_namespace_prefix(c));
    char sep[2] = {tb_imap_separator(c), 0};
    printf(", \"separator\": ");
    tb_json_string(stdout, sep);
    printf(", \"mailboxes\": [");
    for (size_t i = 0; i < p->n_boxes; i++) {
        struct tb_mbox_info *b = &p->boxes[i];
        printf("%s{\"name\": ", i ? ", " : "");
        tb_json_string(stdout, b->name);
        if (b->have_status)
            printf(", \"uidvalidity\": %u, \"uidnext\": %u, \"highestmodseq\": %llu, "
                   "\"messages\": %u}",
                   b->uidvalidity, b->uidnext, (unsigned long long)b->highestmodseq, b->messages);
        else
            printf(", \"selectable\": false}");
    }
    printf("], \"round_trips\": %llu}\n", (unsigned long long)p->turns);
}

int tb_cmd_probe(const struct tb_cli *cli, int argc, char **argv)
{
    if (argc != 1) {
        tb_log_error("usage: twinbox [-c FILE] probe [--json] ACCOUNT");
        return TB_EXIT_USAGE;
    }
    struct tb_cli_account a;
    int rc = tb_cli_account_load(cli, argv[0], &a);
    if (rc != TB_EXIT_OK)
        return rc;
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct probe p = {.cli = cli};
    static const struct tb_imap_events ev = {on_ready, on_error};
    p.c = tb_imap_new(&loop, a.acct, &ev, &p);
    tb_imap_set_password(p.c, a.password);
    tb_imap_start(p.c);
    uv_run(&loop, UV_RUN_DEFAULT);
    if (p.exit_code == TB_EXIT_OK) {
        if (cli->json)
            print_json(&p);
        else
            print_text(&p);
    }
    tb_imap_free(p.c);
    uv_run(&loop, UV_RUN_DEFAULT); /* let the handles close */
    uv_loop_close(&loop);
    tb_mbox_infos_free(p.boxes, p.n_boxes);
    tb_cli_account_free(&a);
    return p.exit_code;
}
