#include "protocol/parse.h"

#include "protocol/etpan_private.h"
#include "protocol/strict.h"
#include "protocol/xrep.h"
#include "util/buf.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

/* A parser context zeroed by hand: libetpan's constructor needs a live session object. One
 * per thread (migrate --jobs parses in several). */
static struct mailimap_parser_context *ctx(void)
{
    static _Thread_local struct mailimap_parser_context c;
    return &c;
}

static int is_tag_char(unsigned char c)
{
    /* RFC 3501 tag: ASTRING-CHAR except "+"; we also refuse controls and 8-bit. */
    return c > 0x20 && c < 0x7f && c != '+' && c != '(' && c != ')' && c != '{' && c != '%' &&
           c != '*' && c != '"' && c != '\\' && c != ']';
}

/* The tagged response p without its response code, into s (libetpan's input): the command
 * still completes, with its status and text, and code_unreadable says what was lost. */
static bool code_free(MMAPString *s, const char *p, size_t len)
{
    size_t start, end;
    if (!tb_code_span(p, len, &start, &end) || start == end)
        return false;
    size_t tail = end < len ? end + 1 : len; /* after the ']' */
    mmap_string_truncate(s, 0);
    mmap_string_append_len(s, p, start - 1); /* up to the '[' */
    if (tail < len)
        mmap_string_append_len(s, p + tail, len - tail);
    else
        mmap_string_append(s, "response code unreadable\r\n");
    return true;
}

int tb_parse_response(const char *p, size_t len, int greeting, struct tb_resp *out, char *err,
                      size_t errlen)
{
    tb_xrep_register(); /* libetpan only tries extensions registered before the parse */
    memset(out, 0, sizeof(*out));
    out->raw = p;
    out->raw_len = len;
    if (len < 3 || p[len - 1] != '\n') {
        snprintf(err, errlen, "truncated response");
        return -1;
    }
    MMAPString *s = mmap_string_new_len(p, len);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    size_t idx = 0;
    int r, rc = -1;
    if (greeting) {
        out->kind = TB_RESP_GREETING;
        char why[96];
        if (!tb_numbers_ok(p, len, why, sizeof(why)) || !tb_etpan_safe(p, len, why, sizeof(why)))
            snprintf(err, errlen, "greeting: %s", why);
        else if ((r = mailimap_greeting_parse(NULL, s, ctx(), &idx, &out->greeting, 0, NULL)) !=
                 MAILIMAP_NO_ERROR)
            snprintf(err, errlen, "malformed greeting");
        else
            rc = 0;
    } else if (p[0] == '+') {
        out->kind = TB_RESP_CONT;
        rc = 0; /* the text of a continuation request is never needed */
    } else if (p[0] == '*' && p[1] == ' ') {
        out->kind = TB_RESP_UNTAGGED;
        char why[96];
        if (!tb_numbers_ok(p, len, why, sizeof(why)) || !tb_etpan_safe(p, len, why, sizeof(why)))
            r = MAILIMAP_ERROR_PARSE; /* kept from libetpan: it would wrap, or crash */
        else
            r = mailimap_response_data_parse(NULL, s, ctx(), &idx, &out->data, 0, NULL);
        if (r != MAILIMAP_NO_ERROR || idx != len) {
            if (out->data)
                mailimap_response_data_free(out->data);
            out->data = NULL;
        }
        /* "* " must at least be followed by an atom or a number to be a response. */
        if (out->data || isalnum((unsigned char)p[2]))
            rc = 0;
        else
            snprintf(err, errlen, "malformed untagged response");
    } else {
        out->kind = TB_RESP_TAGGED;
        size_t i = 0;
        while (i < len && i + 1 < sizeof(out->tag) && is_tag_char((unsigned char)p[i]))
            i++;
        if (i == 0 || i >= len || p[i] != ' ') {
            snprintf(err, errlen, "malformed response (no tag)");
        } else {
            memcpy(out->tag, p, i);
            out->tag[i] = 0;
            char why[96];
            bool safe = tb_etpan_safe(p, len, why, sizeof(why));
            if (!safe && code_free(s, p, len))
                out->code_unreadable = true;
            else if (!safe)
                /* No code to take out (tb_code_span found none), so the unsafe part is
                 * elsewhere: libetpan never sees it (found by tests/fuzz). */
                r = MAILIMAP_ERROR_PARSE;
            if (safe || out->code_unreadable)
                r = mailimap_response_parse(NULL, s, ctx(), &idx, &out->tagged, 0, NULL);
            if (r != MAILIMAP_NO_ERROR || !out->tagged || !out->tagged->rsp_resp_done ||
                out->tagged->rsp_resp_done->rsp_type != MAILIMAP_RESP_DONE_TYPE_TAGGED) {
                snprintf(err, errlen, "malformed tagged response");
            } else {
                rc = 0;
                struct mailimap_resp_text *t = tb_resp_tagged_text(out);
                if (t && t->rsp_code && !tb_numbers_ok(p, len, why, sizeof(why))) {
                    mailimap_resp_text_code_free(t->rsp_code);
                    t->rsp_code = NULL;
                    out->code_unreadable = true;
                }
            }
        }
    }
    mmap_string_free(s);
    if (rc != 0)
        tb_resp_clear(out);
    return rc;
}

void tb_resp_clear(struct tb_resp *r)
{
    if (r->data)
        mailimap_response_data_free(r->data);
    if (r->tagged)
        mailimap_response_free(r->tagged);
    if (r->greeting)
        mailimap_greeting_free(r->greeting);
    tb_blob_unref(r->body);
    r->data = NULL;
    r->tagged = NULL;
    r->greeting = NULL;
    r->body = NULL;
}

static struct mailimap_resp_cond_state *cond(const struct tb_resp *r)
{
    if (!r->tagged)
        return NULL;
    return r->tagged->rsp_resp_done->rsp_data.rsp_tagged->rsp_cond_state;
}

int tb_resp_tagged_status(const struct tb_resp *r)
{
    struct mailimap_resp_cond_state *c = cond(r);
    return c ? c->rsp_type : MAILIMAP_RESP_COND_STATE_BAD;
}

struct mailimap_resp_text *tb_resp_tagged_text(const struct tb_resp *r)
{
    struct mailimap_resp_cond_state *c = cond(r);
    return c ? c->rsp_text : NULL;
}

void tb_resp_untagged_keyword(const struct tb_resp *r, char *buf, size_t len)
{
    size_t i = 2, o = 0;
    if (len == 0)
        return;
    /* Blanks skipped as libetpan skips them, so that a line it parsed as some response is
     * recognised as that response here too (found by tests/fuzz: "* \tXREPLICATE ..."). */
    while (i < r->raw_len && (r->raw[i] == ' ' || r->raw[i] == '\t'))
        i++;
    size_t digits = i;
    while (i < r->raw_len && isdigit((unsigned char)r->raw[i]))
        i++;
    if (i > digits)
        while (i < r->raw_len && (r->raw[i] == ' ' || r->raw[i] == '\t'))
            i++;
    while (i < r->raw_len && o + 1 < len &&
           (isalnum((unsigned char)r->raw[i]) || r->raw[i] == '-' || r->raw[i] == '.'))
        buf[o++] = (char)toupper((unsigned char)r->raw[i++]);
    buf[o] = 0;
}
