/* fuzz_response: the bytes a server sends, as twinbox's connection reads them.
 *
 * Feeds the input to the framer (tb_framer_feed / tb_framer_next, with the limits imap.c
 * uses) four ways: in one piece, one byte at a time, and in two runs of chunk sizes drawn
 * from a generator seeded by the input's hash (1..16 and 1..600 bytes). The responses framed
 * from the single piece then go through tb_parse_response exactly as imap.c's link_data
 * hands them over (the first as the greeting; a parse error ends the connection), and
 * through what reads parsed data downstream: tb_resp_untagged_keyword, the tagged status and
 * text, tb_xrep_of / tb_xrep_unreadable, FETCH data through tb_fetch_to_info with a body
 * (copy.c) and without (store.c), LIST and STATUS through tb_list_status_collect into one
 * listing (a LIST-STATUS), a MODIFIED code's set collected into a tb_uidset as store.c does,
 * APPENDUID's first UID as copy.c reads it; then tb_resp_clear.
 *
 * Invariants checked (besides ASan, UBSan and leak reports):
 * - each framed response is the next slice of the input and ends in LF; every chunking
 *   yields the same responses and the same end (an error, or the same bytes pending);
 * - a response that parses has the kind its first bytes announce, raw/raw_len are the
 *   framed bytes, a tagged one's tag is the text before its first space;
 * - the untagged keyword is at most its buffer, upper-case letters, digits, '-' and '.';
 * - an X-REPLICATE value only on an XREPLICATE line, with the ranges xrep.h documents;
 * - a FETCH's flags are canonical (tb_flags_canon leaves them unchanged); its body and
 *   header identity can be read to their end;
 * - listed mailboxes have names, special-use values start with a backslash. */
#include "fuzz.h"

#include "protocol/framer.h"
#include "store/fetch.h"
#include "util/flags.h"
#include "util/buf.h"

#include <ctype.h>

/* As in tb_imap_new(): a line up to 64 MiB, literals up to 4 GiB. */
#define MAX_LINE    (64u << 20)
#define MAX_LITERAL ((uint64_t)4 << 30)

struct framing {
    size_t done;    /* input bytes returned as responses */
    int error;      /* the framer reported a protocol error */
    size_t pending; /* tb_framer_pending() at the end */
};

/* 64-bit FNV-1a of the input: the chunk sizes depend on the input only. */
static uint64_t hash(const uint8_t *p, size_t n)
{
    uint64_t h = 1469598103934665603u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 1099511628211u;
    return h;
}

static size_t next_chunk(uint64_t *state, size_t max)
{
    *state = *state * 6364136223846793005u + 1442695040888963407u;
    return (size_t)((*state >> 33) % max) + 1;
}

/* Frames the whole input, chunk sizes from `chunk` (0: all at once), checking each response
 * against the input; on_resp (may be NULL) sees each one and returns false to stop. */
static struct framing frame(const uint8_t *data, size_t size, size_t chunk, uint64_t seed,
                            bool (*on_resp)(const char *, size_t, void *), void *ud)
{
    struct tb_framer f;
    struct framing out = {0, 0, 0};
    tb_framer_init(&f, MAX_LINE, MAX_LITERAL);
    size_t fed = 0;
    bool stop = false;
    while (fed < size && !stop && !out.error) {
        size_t n = chunk == 0 ? size : chunk == 1 ? 1 : next_chunk(&seed, chunk);
        if (n > size - fed)
            n = size - fed;
        tb_framer_feed(&f, (const char *)data + fed, n);
        fed += n;
        for (;;) {
            const char *p;
            size_t len;
            int r = tb_framer_next(&f, &p, &len);
            if (r < 0) {
                FUZZ_ASSERT(f.error[0] && memchr(f.error, 0, sizeof(f.error)), "error is said");
                out.error = 1;
                break;
            }
            if (r == 0)
                break;
            FUZZ_ASSERT(len > 0 && len <= size - out.done, "a response within the input");
            FUZZ_ASSERT(memcmp(p, data + out.done, len) == 0, "the next slice of the input");
            FUZZ_ASSERT(p[len - 1] == '\n', "a response ends in LF");
            out.done += len;
            if (on_resp && !on_resp(p, len, ud)) {
                stop = true;
                break;
            }
        }
    }
    out.pending = tb_framer_pending(&f);
    if (!out.error && !stop)
        FUZZ_ASSERT(out.pending == size - out.done, "pending bytes are the unframed rest");
    tb_framer_free(&f);
    return out;
}

static void check_fetch(struct mailimap_msg_att *att);

/* The framing imap.c does (tb_framer_detach_bodies): every response, then its detached body,
 * as "len:bytes|len:body|" into out. Each response is parsed with its body attached when
 * parse is set (as link_data does); the input bytes framed (responses and bodies) and
 * whether it ended in an error are returned in *done and *error. */
static void frame_detached(const uint8_t *data, size_t size, size_t chunk, uint64_t seed,
                           bool parse, struct tb_buf *out, size_t *done, int *error)
{
    struct tb_framer f;
    tb_framer_init(&f, MAX_LINE, MAX_LITERAL);
    tb_framer_detach_bodies(&f);
    size_t fed = 0;
    *done = 0;
    *error = 0;
    while (fed < size && !*error) {
        size_t n = chunk == 0 ? size : chunk == 1 ? 1 : next_chunk(&seed, chunk);
        if (n > size - fed)
            n = size - fed;
        tb_framer_feed(&f, (const char *)data + fed, n);
        fed += n;
        const char *p;
        size_t len;
        int r;
        while ((r = tb_framer_next(&f, &p, &len)) == 1) {
            FUZZ_ASSERT(len > 0 && p[len - 1] == '\n', "a detached response ends in LF");
            struct tb_blob *body = tb_framer_take_body(&f);
            tb_buf_printf(out, "%zu:", len);
            tb_buf_append(out, p, len);
            tb_buf_printf(out, "|%zu:", body ? body->len : 0);
            if (body)
                tb_buf_append(out, body->data, body->len);
            tb_buf_puts(out, "|");
            *done += len + (body ? body->len : 0);
            struct tb_resp resp;
            char err[160];
            /* As link_data: the first is the greeting, a parse error ends the connection. */
            if (parse && tb_parse_response(p, len, *done == len + (body ? body->len : 0), &resp,
                                           err, sizeof(err)) < 0) {
                parse = false;
            } else if (parse) {
                resp.body = body ? tb_blob_ref(body) : NULL;
                if (resp.data && resp.data->rsp_type == MAILIMAP_RESP_DATA_TYPE_MESSAGE_DATA &&
                    resp.data->rsp_data.rsp_message_data->mdt_type == MAILIMAP_MESSAGE_DATA_FETCH)
                    check_fetch(resp.data->rsp_data.rsp_message_data->mdt_msg_att);
                tb_resp_clear(&resp);
            }
            tb_blob_unref(body);
        }
        if (r < 0)
            *error = 1;
    }
    tb_framer_free(&f);
}

/* What one connection's downstream collects over the whole stream. */
struct session {
    bool got_greeting;
    struct tb_mbox_info *boxes;
    size_t n_boxes;
};

static void check_fetch(struct mailimap_msg_att *att)
{
    struct tb_msg_info m;
    const char *body = NULL;
    size_t body_len = 0;
    tb_fetch_to_info(att, &m, &body, &body_len);
    if (body)
        fuzz_touch(body, body_len);
    fuzz_touch_str(m.ident);
    if (m.flags) {
        char *again = tb_flags_canon(m.flags);
        FUZZ_ASSERT(strcmp(again, m.flags) == 0, "FETCH flags are canonical");
        free(again);
    }
    tb_msg_info_clear(&m);
    tb_fetch_to_info(att, &m, NULL, NULL); /* store.c's delta: no body wanted */
    tb_msg_info_clear(&m);
}

static void check_untagged(struct session *s, const struct tb_resp *r)
{
    char kw[24];
    tb_resp_untagged_keyword(r, kw, sizeof(kw));
    FUZZ_ASSERT(memchr(kw, 0, sizeof(kw)) != NULL, "keyword NUL-terminated");
    for (const char *k = kw; *k; k++)
        FUZZ_ASSERT(isupper((unsigned char)*k) || isdigit((unsigned char)*k) || *k == '-' ||
                        *k == '.',
                    "keyword upper-case");
    const struct tb_xrep *x = tb_xrep_of(r);
    if (x)
        fuzz_check_xrep(r, x);
    else
        (void)tb_xrep_unreadable(r);
    struct mailimap_response_data *d = r->data;
    if (!d)
        return;
    if (d->rsp_type == MAILIMAP_RESP_DATA_TYPE_MESSAGE_DATA &&
        d->rsp_data.rsp_message_data->mdt_type == MAILIMAP_MESSAGE_DATA_FETCH)
        check_fetch(d->rsp_data.rsp_message_data->mdt_msg_att);
    size_t before = s->n_boxes;
    if (tb_list_status_collect(d, &s->boxes, &s->n_boxes)) {
        FUZZ_ASSERT(s->n_boxes == before || s->n_boxes == before + 1, "one LIST, one mailbox");
        for (size_t i = before; i < s->n_boxes; i++) {
            FUZZ_ASSERT(s->boxes[i].name != NULL, "a listed mailbox has a name");
            fuzz_touch_str(s->boxes[i].name);
            FUZZ_ASSERT(!s->boxes[i].special_use || s->boxes[i].special_use[0] == '\\',
                        "special-use starts with a backslash");
        }
    }
}

/* The response code parts of a tagged completion that store.c and copy.c read. */
static void check_tagged(const struct tb_resp *r)
{
    int st = tb_resp_tagged_status(r);
    FUZZ_ASSERT(st == MAILIMAP_RESP_COND_STATE_OK || st == MAILIMAP_RESP_COND_STATE_NO ||
                    st == MAILIMAP_RESP_COND_STATE_BAD,
                "tagged status is OK, NO or BAD");
    struct mailimap_resp_text *t = tb_resp_tagged_text(r);
    if (!t)
        return;
    fuzz_touch_str(t->rsp_text);
    struct mailimap_resp_text_code *code = t->rsp_code;
    if (!code || code->rc_type != MAILIMAP_RESP_TEXT_CODE_EXTENSION)
        return;
    struct mailimap_extension_data *e = code->rc_data.rc_ext_data;
    if (e->ext_extension->ext_id == MAILIMAP_EXTENSION_CONDSTORE) {
        struct mailimap_condstore_resptextcode *cs = e->ext_data;
        if (cs->cs_type != MAILIMAP_CONDSTORE_RESPTEXTCODE_MODIFIED)
            return;
        /* As store.c collects it: every item added as a range. '*' comes as 0 from libetpan
         * (then "5:*" is taken as 0:5; only sets without '*' are checked). */
        struct tb_uidset set;
        tb_uidset_init(&set);
        uint64_t count = 0;
        bool star = false;
        for (clistiter *it = clist_begin(cs->cs_data.cs_modified_set->set_list); it;
             it = clist_next(it)) {
            struct mailimap_set_item *si = clist_content(it);
            tb_uidset_add_range(&set, si->set_first, si->set_last);
            count += (si->set_first > si->set_last ? si->set_first - si->set_last
                                                   : si->set_last - si->set_first) +
                     1;
            star |= si->set_first == 0 || si->set_last == 0;
        }
        FUZZ_ASSERT(tb_uidset_count(&set) <= count, "no more UIDs than the MODIFIED set names");
        FUZZ_ASSERT(star || !tb_uidset_has(&set, 0), "no UID 0 from a set without '*'");
        tb_uidset_free(&set);
    } else if (e->ext_extension->ext_id == MAILIMAP_EXTENSION_UIDPLUS &&
               e->ext_type == MAILIMAP_UIDPLUS_RESP_CODE_APND) {
        struct mailimap_uidplus_resp_code_apnd *a = e->ext_data;
        if (a->uid_set && clist_begin(a->uid_set->set_list)) {
            struct mailimap_set_item *si = clist_content(clist_begin(a->uid_set->set_list));
            fuzz_touch(&si->set_first, sizeof(si->set_first));
        }
    }
}

/* link_data's loop body for one framed response; false ends the connection. */
static bool on_response(const char *p, size_t len, void *ud)
{
    struct session *s = ud;
    struct tb_resp resp;
    char err[160];
    if (tb_parse_response(p, len, !s->got_greeting, &resp, err, sizeof(err)) < 0) {
        FUZZ_ASSERT(memchr(err, 0, sizeof(err)) && err[0], "a parse error is said");
        FUZZ_ASSERT(!resp.data && !resp.tagged && !resp.greeting, "nothing kept on error");
        return false;
    }
    FUZZ_ASSERT(resp.raw == p && resp.raw_len == len, "raw is the framed response");
    switch (resp.kind) {
    case TB_RESP_GREETING:
        FUZZ_ASSERT(!s->got_greeting && resp.greeting, "the first response is the greeting");
        s->got_greeting = true;
        break;
    case TB_RESP_CONT:
        FUZZ_ASSERT(p[0] == '+', "a continuation starts with +");
        break;
    case TB_RESP_UNTAGGED:
        FUZZ_ASSERT(p[0] == '*' && p[1] == ' ', "untagged starts with \"* \"");
        check_untagged(s, &resp);
        break;
    case TB_RESP_TAGGED: {
        size_t tl = strlen(resp.tag);
        FUZZ_ASSERT(tl > 0 && tl < len && memcmp(p, resp.tag, tl) == 0 && p[tl] == ' ',
                    "the tag is the text before the first space");
        FUZZ_ASSERT(resp.tagged != NULL, "a tagged response keeps its parse");
        check_tagged(&resp);
        break;
    }
    default:
        FUZZ_ASSERT(0, "a known kind");
    }
    tb_resp_clear(&resp);
    FUZZ_ASSERT(!resp.data && !resp.tagged && !resp.greeting, "cleared");
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* The framer reads through a buffer of its own: hand it an exact-size copy. */
    uint8_t *in = malloc(size ? size : 1);
    if (!in)
        abort();
    memcpy(in, data, size);

    struct session s = {false, NULL, 0};
    struct framing whole = frame(in, size, 0, 0, NULL, NULL);
    struct framing parsed = frame(in, size, 0, 0, on_response, &s);
    tb_mbox_infos_free(s.boxes, s.n_boxes);
    FUZZ_ASSERT(parsed.done <= whole.done, "parsing stops, never adds");

    uint64_t seed = hash(in, size);
    const size_t chunks[] = {1, 16, 600};
    for (size_t i = 0; i < sizeof(chunks) / sizeof(*chunks); i++) {
        struct framing c = frame(in, size, chunks[i], seed + i, NULL, NULL);
        FUZZ_ASSERT(c.done == whole.done, "the same responses whatever the chunking");
        FUZZ_ASSERT(c.error == whole.error, "the same error whatever the chunking");
        FUZZ_ASSERT(c.error || c.pending == whole.pending,
                    "the same bytes pending whatever the chunking");
    }

    /* Detached bodies: the same bytes framed as without, whatever the chunking. */
    struct tb_buf d0;
    tb_buf_init(&d0);
    size_t d0_done;
    int d0_error;
    frame_detached(in, size, 0, 0, true, &d0, &d0_done, &d0_error);
    FUZZ_ASSERT(d0_error == whole.error, "detached: the same error");
    FUZZ_ASSERT(d0_done == whole.done, "detached: the same bytes framed");
    for (size_t i = 0; i < sizeof(chunks) / sizeof(*chunks); i++) {
        struct tb_buf d;
        tb_buf_init(&d);
        size_t d_done;
        int d_error;
        frame_detached(in, size, chunks[i], seed + 7 + i, false, &d, &d_done, &d_error);
        FUZZ_ASSERT(d.len == d0.len && (d.len == 0 || memcmp(d.data, d0.data, d.len) == 0),
                    "detached: the same responses and bodies whatever the chunking");
        tb_buf_free(&d);
    }
    tb_buf_free(&d0);
    free(in);
    return 0;
}
