/* What a session knows and reports: capabilities, namespace, TLS and COMPRESS state,
 * counters, and the response-code helper. Read-only views of struct tb_imap (imap.c runs
 * the pipeline). */
#include "protocol/imap_internal.h"

#include "twinbox/config.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *tb_imap_code_prefix(const struct tb_imap_result *r, char *buf, size_t len)
{
    static const char *const names[] = {
        [MAILIMAP_RESP_TEXT_CODE_ALERT] = "ALERT",
        [MAILIMAP_RESP_TEXT_CODE_BADCHARSET] = "BADCHARSET",
        [MAILIMAP_RESP_TEXT_CODE_CAPABILITY_DATA] = "CAPABILITY",
        [MAILIMAP_RESP_TEXT_CODE_PARSE] = "PARSE",
        [MAILIMAP_RESP_TEXT_CODE_PERMANENTFLAGS] = "PERMANENTFLAGS",
        [MAILIMAP_RESP_TEXT_CODE_READ_ONLY] = "READ-ONLY",
        [MAILIMAP_RESP_TEXT_CODE_READ_WRITE] = "READ-WRITE",
        [MAILIMAP_RESP_TEXT_CODE_TRY_CREATE] = "TRYCREATE",
        [MAILIMAP_RESP_TEXT_CODE_UIDNEXT] = "UIDNEXT",
        [MAILIMAP_RESP_TEXT_CODE_UIDVALIDITY] = "UIDVALIDITY",
        [MAILIMAP_RESP_TEXT_CODE_UNSEEN] = "UNSEEN",
    };
    const char *name = NULL;
    if (r->code && r->code->rc_type == MAILIMAP_RESP_TEXT_CODE_OTHER)
        name = r->code->rc_data.rc_atom.atom_name;
    else if (r->code && (size_t)r->code->rc_type < sizeof(names) / sizeof(*names))
        name = names[r->code->rc_type];
    if (name)
        snprintf(buf, len, "[%.40s] ", name);
    else if (len)
        buf[0] = 0;
    return buf;
}

const char *tb_imap_account_name(const struct tb_imap *c)
{
    return c->acct->name ? c->acct->name : "account";
}

static bool has_word(const struct tb_buf *b, const char *word)
{
    char pat[128];
    snprintf(pat, sizeof(pat), " %s ", word);
    for (char *q = pat; *q; q++)
        *q = (char)toupper((unsigned char)*q);
    return b->data && memmem(b->data, b->len, pat, strlen(pat)) != NULL;
}

enum tb_err_kind tb_imap_error_kind(const struct tb_imap *c)
{
    return c->err_kind;
}

bool tb_imap_has_cap(const struct tb_imap *c, const char *cap)
{
    return has_word(&c->caps, cap);
}

bool tb_imap_paces_appends(const struct tb_imap *c)
{
    return c->acct->max_messages_per_second != 0;
}

uint64_t tb_imap_appendlimit(const struct tb_imap *c)
{
    const char *p = c->caps.data ? strstr(c->caps.data, " APPENDLIMIT=") : NULL;
    if (!p)
        return 0;
    uint64_t v = 0;
    for (p += 13; *p >= '0' && *p <= '9'; p++) {
        if (v > UINT64_MAX / 10 - 10)
            return 0; /* absurd: treat as no limit */
        v = v * 10 + (uint64_t)(*p - '0');
    }
    return *p == ' ' ? v : 0;
}

const char *tb_imap_caps(const struct tb_imap *c)
{
    return c->caps.len > 1 ? c->caps.data + 1 : "";
}

const char *tb_imap_enabled(const struct tb_imap *c)
{
    return c->enabled.len > 1 ? c->enabled.data + 1 : "";
}

const char *tb_imap_greeting(const struct tb_imap *c)
{
    return c->greeting ? c->greeting : "";
}

bool tb_imap_tls_active(const struct tb_imap *c)
{
    return c->link ? tb_link_tls_active(c->link) : c->tls_was_active;
}

const char *tb_imap_tls_description(const struct tb_imap *c)
{
    return c->link ? tb_link_tls_description(c->link) : c->tls_desc;
}

bool tb_imap_compress_active(const struct tb_imap *c)
{
    return c->link ? tb_link_compress_active(c->link) : c->compress_was_active;
}

bool tb_imap_preauth(const struct tb_imap *c)
{
    return c->preauth;
}

char tb_imap_separator(const struct tb_imap *c)
{
    return c->separator;
}

const char *tb_imap_namespace_prefix(const struct tb_imap *c)
{
    return c->ns_prefix ? c->ns_prefix : "";
}

const char *tb_imap_namespace_others(const struct tb_imap *c)
{
    return c->ns_others ? c->ns_others : "";
}

static const struct tb_link_stats *stats(const struct tb_imap *c)
{
    return c->link ? tb_link_stats(c->link) : &c->last_stats;
}

uint64_t tb_imap_turns(const struct tb_imap *c)
{
    return stats(c)->turns;
}

uint64_t tb_imap_bytes_in(const struct tb_imap *c)
{
    return stats(c)->raw_in;
}

uint64_t tb_imap_bytes_out(const struct tb_imap *c)
{
    return stats(c)->raw_out;
}

size_t tb_imap_unwritten(const struct tb_imap *c)
{
    return c->link ? tb_link_write_pending(c->link) : 0;
}

uint64_t tb_imap_mark(const struct tb_imap *c)
{
    return c->submitted;
}

bool tb_imap_done_through(const struct tb_imap *c, uint64_t mark)
{
    /* Commands leave in the order submitted and the in-flight list is sorted by tag: the
     * oldest outstanding command is the first in flight, else the first waiting. */
    if (c->n_inflight)
        return c->inflight[0]->order > mark;
    if (c->waiting_head < c->n_waiting)
        return c->waiting[c->waiting_head]->order > mark;
    return true;
}

bool tb_imap_busy(const struct tb_imap *c)
{
    return c->n_inflight > 0 || c->waiting_head < c->n_waiting;
}
