/* `twinbox probe ACCOUNT`: connect, set up the session, list every mailbox with its
 * UIDVALIDITY/UIDNEXT/HIGHESTMODSEQ in one LIST-STATUS (or LIST plus pipelined STATUS),
 * and report what was negotiated and how many round trips it took. */
#include "cli/cli.h"

#include "protocol/cmd.h"
#include "protocol/parse.h"
#include "store/store.h"
#include "twinbox/config.h"
#include "twinbox/exit.h"
#include "twinbox/imap.h"
#include "twinbox/log.h"
#include "util/buf.h"
#include "util/mutf7.h"

#include <libetpan/libetpan.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct probe {
    struct tb_store s; /* the same discovery as sync: LIST-STATUS, else LIST+LSUB+STATUS */
    struct tb_imap *c;
    struct tb_mbox_info *boxes;
    size_t n_boxes;
    uint64_t turns;
};

/* How each personal mailbox maps to a canonical name (what the other side of a pair sees). */
static void print_mapping(const struct tb_ns *ns, const char *wire)
{
    const char *why = NULL;
    char *canon = tb_mbox_canon(ns, wire, &why);
    char *show = canon ? tb_mutf7_to_utf8(canon) : NULL;
    if (show)
        printf(" -> %s", show);
    else
        printf(" (left out: %s)", why);
    free(show);
    free(canon);
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
    printf("auth: %s\n", tb_imap_auth_mechanism(c));
    const struct tb_ns *ns = tb_store_ns(&p->s);
    printf("namespace: \"%s\" separator \"%c\"%s%s\n", ns->prefix, ns->sep ? ns->sep : '?',
           ns->others && ns->others[0] ? " (left out: other namespaces " : "",
           ns->others && ns->others[0] ? "listed by NAMESPACE)" : "");
    printf("strategy: %s\n", tb_strategy_name(tb_store_strategy(&p->s)));
    printf("discovery: %s\n",
           tb_imap_has_cap(c, "LIST-STATUS") ? "LIST-STATUS" : "LIST, LSUB and STATUS");
    printf("uidplus: %s\n", tb_imap_has_cap(c, "UIDPLUS")
                                ? "yes"
                                : "no (copies are found by identity after APPEND)");
    printf("mailboxes: %zu\n", p->n_boxes);
    for (size_t i = 0; i < p->n_boxes; i++) {
        struct tb_mbox_info *b = &p->boxes[i];
        if (b->noselect)
            printf("  %s (not selectable)", b->name);
        else if (!b->have_status)
            printf("  %s (no STATUS)", b->name);
        else
            printf("  %s uidvalidity=%u uidnext=%u highestmodseq=%llu messages=%u", b->name,
                   b->uidvalidity, b->uidnext, (unsigned long long)b->highestmodseq, b->messages);
        print_mapping(ns, b->name);
        printf("\n");
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
    printf(", \"auth\": \"%s\"", tb_imap_auth_mechanism(c)); /* a static mechanism name */
    printf(", \"compress\": %s, \"namespace\": ", tb_imap_compress_active(c) ? "true" : "false");
    tb_json_string(stdout, tb_imap_namespace_prefix(c));
    char sep[2] = {tb_store_ns(&p->s)->sep, 0};
    printf(", \"separator\": ");
    tb_json_string(stdout, sep);
    printf(", \"strategy\": ");
    tb_json_string(stdout, tb_strategy_name(tb_store_strategy(&p->s)));
    printf(", \"mailboxes\": [");
    for (size_t i = 0; i < p->n_boxes; i++) {
        struct tb_mbox_info *b = &p->boxes[i];
        printf("%s{\"name\": ", i ? ", " : "");
        tb_json_string(stdout, b->name);
        char *canon = tb_mbox_canon(tb_store_ns(&p->s), b->name, NULL);
        printf(", \"canonical\": ");
        if (canon)
            tb_json_string(stdout, canon);
        else
            printf("null");
        free(canon);
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
    struct probe p = {0};
    tb_store_init(&p.s, &loop, a.acct, a.password);
    struct tb_store *one[1] = {&p.s};
    if (tb_store_wait(one, 1) == 0) {
        tb_imap_compress_now(p.s.c);
        tb_store_list_start(&p.s);
        tb_store_wait(one, 1);
    }
    if (p.s.failed) {
        tb_log_error("%s", p.s.err.msg);
        rc = tb_error_exit(p.s.err.kind);
    } else {
        p.c = p.s.c;
        p.boxes = p.s.boxes;
        p.n_boxes = p.s.n_boxes;
        p.turns = tb_imap_turns(p.c);
        if (cli->json)
            print_json(&p);
        else
            print_text(&p);
    }
    tb_store_logout(one, 1);
    tb_store_free(&p.s);
    uv_run(&loop, UV_RUN_DEFAULT); /* let the handles close */
    uv_loop_close(&loop);
    tb_cli_account_free(&a);
    return rc;
}
