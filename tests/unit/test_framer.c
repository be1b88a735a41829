/* Framer and parser: split-anywhere equivalence, huge and empty literals, fuzzing. */
#include "protocol/framer.h"
#include "protocol/parse.h"
#include "tap.h"

#include <stdint.h>
#include <stdlib.h>

static const char stream[] =
    "* OK [CAPABILITY IMAP4rev1 LITERAL+] ready\r\n"
    "* 3 EXISTS\r\n"
    "* 1 FETCH (UID 7 BODY[] {5}\r\nhe}\r\n)\r\n"
    "* 2 FETCH (UID 8 BODY[] {0}\r\n)\r\n"
    "* 3 FETCH (UID 9 BODY[HEADER] {3}\r\nabc BODY[TEXT] {4+}\r\nd\r\ne)\r\n"
    "+ go ahead\r\n"
    "* LIST (\\HasNoChildren) \"/\" {4}\r\nA{1}\r\n"
    "T1 OK [APPENDUID 5 7] done\r\n";

/* Collects the responses as "len:bytes|" so two runs can be compared exactly. */
static int run(const char *data, size_t len, const size_t *cuts, size_t ncuts, struct tb_buf *out)
{
    struct tb_framer f;
    tb_framer_init(&f, 1 << 20, (uint64_t)1 << 32);
    size_t pos = 0;
    int rc = 0;
    for (size_t k = 0; k <= ncuts && rc == 0; k++) {
        size_t end = k < ncuts ? cuts[k] : len;
        tb_framer_feed(&f, data + pos, end - pos);
        pos = end;
        const char *r;
        size_t n;
        int x;
        while ((x = tb_framer_next(&f, &r, &n)) == 1) {
            tb_buf_printf(out, "%zu:", n);
            tb_buf_append(out, r, n);
            tb_buf_puts(out, "|");
        }
        if (x < 0)
            rc = -1;
    }
    if (tb_framer_pending(&f))
        tb_buf_puts(out, "PENDING");
    tb_framer_free(&f);
    return rc;
}

typedef int runner(const char *data, size_t len, const size_t *cuts, size_t ncuts,
                   struct tb_buf *out);

/* Fed one byte at a time, the run gives what it gave from the whole stream. */
static bool byte_by_byte(runner *fn, const char *data, size_t len, const struct tb_buf *whole)
{
    size_t *all = malloc(len * sizeof(size_t));
    for (size_t i = 0; i < len - 1; i++)
        all[i] = i + 1;
    struct tb_buf b;
    tb_buf_init(&b);
    fn(data, len, all, len - 1, &b);
    bool same = b.len == whole->len && memcmp(b.data, whole->data, b.len) == 0;
    tb_buf_free(&b);
    free(all);
    return same;
}

static void test_splits(void)
{
    size_t len = sizeof(stream) - 1;
    struct tb_buf whole;
    tb_buf_init(&whole);
    CHECK(run(stream, len, NULL, 0, &whole) == 0, "whole stream frames");
    CHECK(memmem(whole.data, whole.len, "PENDING", 7) == NULL, "nothing left over");
    int same = 1;
    for (size_t cut = 1; cut < len; cut++) {
        struct tb_buf b;
        tb_buf_init(&b);
        size_t cuts[1] = {cut};
        run(stream, len, cuts, 1, &b);
        if (b.len != whole.len || memcmp(b.data, whole.data, b.len) != 0)
            same = 0;
        tb_buf_free(&b);
    }
    CHECK(same, "split at every byte boundary gives the same responses");
    CHECK(byte_by_byte(run, stream, len, &whole), "byte by byte");
    /* Every response of the sample also parses. */
    struct tb_framer f;
    tb_framer_init(&f, 1 << 20, 1 << 30);
    tb_framer_feed(&f, stream, len);
    const char *r;
    size_t n;
    int count = 0, parsed = 0;
    while (tb_framer_next(&f, &r, &n) == 1) {
        struct tb_resp resp;
        char err[160];
        count++;
        if (tb_parse_response(r, n, count == 1, &resp, err, sizeof(err)) == 0) {
            parsed++;
            tb_resp_clear(&resp);
        }
    }
    CHECK(count == 8, "eight responses (got %d)", count);
    CHECK(parsed == 8, "all eight parse (got %d)", parsed);
    tb_framer_free(&f);
    tb_buf_free(&whole);
}

static void test_big_literal(void)
{
    const size_t big = 50u << 20;
    char head[128];
    int hl = snprintf(head, sizeof(head), "* 1 FETCH (UID 1 BODY[] {%zu}\r\n", big);
    char *body = malloc(big);
    for (size_t i = 0; i < big; i++)
        body[i] = (char)('a' + (i * 7) % 26);
    struct tb_framer f;
    tb_framer_init(&f, 1 << 20, (uint64_t)1 << 32);
    tb_framer_feed(&f, head, (size_t)hl);
    const char *r;
    size_t n;
    int got = 0;
    for (size_t off = 0; off < big; off += 65536) {
        size_t chunk = big - off < 65536 ? big - off : 65536;
        tb_framer_feed(&f, body + off, chunk);
        if (tb_framer_next(&f, &r, &n) != 0)
            got = -1;
    }
    tb_framer_feed(&f, ")\r\n", 3);
    got = tb_framer_next(&f, &r, &n);
    CHECK(got == 1 && n == (size_t)hl + big + 3, "50 MB literal framed as one response");
    struct tb_resp resp;
    char err[160];
    int pr = tb_parse_response(r, n, 0, &resp, err, sizeof(err));
    CHECK(pr == 0 && resp.data && resp.data->rsp_type == MAILIMAP_RESP_DATA_TYPE_MESSAGE_DATA,
          "50 MB FETCH parses");
    int intact = 0;
    if (pr == 0 && resp.data) {
        struct mailimap_msg_att *att = resp.data->rsp_data.rsp_message_data->mdt_msg_att;
        for (clistiter *it = clist_begin(att->att_list); it; it = clist_next(it)) {
            struct mailimap_msg_att_item *item = clist_content(it);
            if (item->att_type == MAILIMAP_MSG_ATT_ITEM_STATIC &&
                item->att_data.att_static->att_type == MAILIMAP_MSG_ATT_BODY_SECTION) {
                struct mailimap_msg_att_body_section *bs =
                    item->att_data.att_static->att_data.att_body_section;
                intact = bs->sec_length == big && memcmp(bs->sec_body_part, body, big) == 0;
            }
        }
        tb_resp_clear(&resp);
    }
    CHECK(intact, "50 MB body arrives intact");
    tb_framer_free(&f);
    free(body);

    const char zero[] = "* 2 FETCH (UID 2 BODY[] {0}\r\n)\r\n";
    tb_framer_init(&f, 1 << 20, 1 << 30);
    tb_framer_feed(&f, zero, sizeof(zero) - 1);
    got = tb_framer_next(&f, &r, &n);
    pr = got == 1 ? tb_parse_response(r, n, 0, &resp, err, sizeof(err)) : -1;
    CHECK(pr == 0 && resp.data != NULL, "0-byte literal parses");
    if (pr == 0)
        tb_resp_clear(&resp);
    tb_framer_free(&f);
}

static uint32_t rng = 12345;
static uint32_t rnd(void)
{
    rng = rng * 1103515245u + 12345u;
    return rng >> 8;
}

static void test_fuzz(void)
{
    static const char *seeds[] = {
        "* 1 FETCH (UID 5 FLAGS (\\Seen $Junk) MODSEQ (77) BODY[] {3}\r\nabc)\r\n",
        "* STATUS \"a b\" (MESSAGES 3 UIDNEXT 4 UIDVALIDITY 1 HIGHESTMODSEQ 9)\r\n",
        "* LIST (\\HasNoChildren \\Sent) \"/\" \"Sent Items\"\r\n",
        "* VANISHED (EARLIER) 1:3,5\r\n",
        "T12 NO [ALERT] no way\r\n",
        "* OK [HIGHESTMODSEQ 100] x\r\n",
        "* ENABLED CONDSTORE QRESYNC\r\n",
        "T3 OK [COPYUID 9 1:2 5:6] moved\r\n",
    };
    int cases = 0, errors = 0, responses = 0;
    for (int iter = 0; iter < 6000; iter++) {
        struct tb_buf in;
        tb_buf_init(&in);
        int kind = (int)(rnd() % 3);
        if (kind == 0) { /* pure garbage */
            size_t n = rnd() % 200;
            for (size_t i = 0; i < n; i++) {
                char ch = (char)(rnd() % 256);
                tb_buf_append(&in, &ch, 1);
            }
        } else { /* mutated or truncated valid responses */
            const char *s = seeds[rnd() % (sizeof(seeds) / sizeof(*seeds))];
            tb_buf_puts(&in, s);
            if (kind == 1) {
                for (int m = 0, nm = 1 + (int)(rnd() % 4); m < nm; m++)
                    in.data[rnd() % in.len] = (char)(rnd() % 256);
            } else {
                in.len = rnd() % in.len;
            }
        }
        struct tb_framer f;
        tb_framer_init(&f, 4096, 1 << 20);
        tb_framer_feed(&f, in.data, in.len);
        const char *r;
        size_t n;
        int x;
        int first = (rnd() % 8) == 0;
        while ((x = tb_framer_next(&f, &r, &n)) == 1) {
            struct tb_resp resp;
            char err[160];
            responses++;
            if (tb_parse_response(r, n, first, &resp, err, sizeof(err)) == 0)
                tb_resp_clear(&resp);
            else
                errors++;
            first = 0;
        }
        if (x < 0)
            errors++;
        tb_framer_free(&f);
        tb_buf_free(&in);
        cases++;
    }
    CHECK(cases == 6000, "6000 fuzz cases ran without crashing");
    CHECK(errors > 100, "garbage is reported as protocol errors (%d errors, %d responses)", errors,
          responses);
}

static void test_errors(void)
{
    struct tb_framer f;
    const char *r;
    size_t n;
    tb_framer_init(&f, 64, 1000);
    tb_framer_feed(&f, "* 1 FETCH (BODY[] {1001}\r\n", 26);
    CHECK(tb_framer_next(&f, &r, &n) == -1 && strstr(f.error, "limit"), "oversized literal: %s",
          f.error);
    tb_framer_free(&f);
    tb_framer_init(&f, 64, 1000);
    char line[100];
    memset(line, 'x', sizeof(line));
    tb_framer_feed(&f, line, sizeof(line));
    CHECK(tb_framer_next(&f, &r, &n) == -1, "overlong line refused");
    tb_framer_free(&f);
    tb_framer_init(&f, 64, 1000);
    tb_framer_feed(&f, "* 1 FETCH (BODY[] {99999999999999999999}\r\n", 42);
    CHECK(tb_framer_next(&f, &r, &n) == -1, "absurd literal size refused");
    tb_framer_free(&f);

    struct tb_resp resp;
    char err[160];
    CHECK(tb_parse_response("hello world\r\n", 13, 0, &resp, err, sizeof(err)) == -1,
          "garbage line is a protocol error (%s)", err);
    CHECK(tb_parse_response("* \x01\x02\r\n", 6, 0, &resp, err, sizeof(err)) == -1,
          "garbage untagged is a protocol error");
    CHECK(tb_parse_response("* XFOO bar baz\r\n", 16, 0, &resp, err, sizeof(err)) == 0 &&
              resp.data == NULL,
          "unknown untagged response is passed on unparsed");
    CHECK(tb_parse_response("T1 OK [APPENDUID 5 7] done\r\n", 28, 0, &resp, err, sizeof(err)) ==
                  0 &&
              tb_resp_tagged_status(&resp) == MAILIMAP_RESP_COND_STATE_OK &&
              strcmp(resp.tag, "T1") == 0,
          "tagged OK with APPENDUID");
    tb_resp_clear(&resp);
}

/* A response nested 100,000 deep would exhaust libetpan's recursive parser: the framer
 * refuses it first. Depth counts only outside quoted strings and literals, and across the
 * lines of one response. */
static void test_depth(void)
{
    struct tb_framer f;
    const char *p;
    size_t n;
    struct tb_buf b;
    tb_buf_init(&b);
    tb_buf_puts(&b, "* 1 FETCH ");
    for (int i = 0; i < 100000; i++)
        tb_buf_puts(&b, "(");
    tb_buf_puts(&b, "\r\n");
    tb_framer_init(&f, 1 << 20, 1 << 20);
    tb_framer_feed(&f, b.data, b.len);
    CHECK(tb_framer_next(&f, &p, &n) == -1 && strstr(f.error, "nested"),
          "100,000 parentheses: refused (%s)", f.error);
    tb_framer_free(&f);

    b.len = 0;
    tb_buf_puts(&b, "* 1 FETCH (BODY[] {3}\r\n(((");
    for (int i = 0; i < 99; i++)
        tb_buf_puts(&b, "(");
    tb_buf_puts(&b, " \"((((\"");
    for (int i = 0; i < 100; i++)
        tb_buf_puts(&b, ")");
    tb_buf_puts(&b, "\r\n* OK (x)\r\n");
    tb_framer_init(&f, 1 << 20, 1 << 20);
    tb_framer_feed(&f, b.data, b.len);
    CHECK(tb_framer_next(&f, &p, &n) == 1, "depth 100 with parentheses in a literal and a quoted "
                                           "string: accepted");
    CHECK(tb_framer_next(&f, &p, &n) == 1 && n == 10, "depth starts again at the next response");
    tb_framer_free(&f);
    tb_buf_free(&b);
}

/* Detached bodies: the same responses and bodies however the stream is cut. */
static const char dstream[] = "* 1 FETCH (UID 7 BODY[] {5}\r\nhe}\r\n)\r\n"
                              "* 2 FETCH (UID 8 BODY[HEADER] {3}\r\nabc BODY[] {12}\r\n"
                              "0123456789\r\n FLAGS (\\Seen))\r\n"
                              "* 3 FETCH (UID 9 BODY[] {0}\r\n)\r\n"
                              "* 4 FETCH (body[] {2}\r\nab BODY[] {1}\r\nc)\r\n"
                              "T1 OK done\r\n";

static int run_detached(const char *data, size_t len, const size_t *cuts, size_t ncuts,
                        struct tb_buf *out)
{
    struct tb_framer f;
    tb_framer_init(&f, 1 << 20, 1 << 20);
    tb_framer_detach_bodies(&f);
    size_t pos = 0;
    for (size_t k = 0; k <= ncuts; k++) {
        size_t end = k < ncuts ? cuts[k] : len;
        tb_framer_feed(&f, data + pos, end - pos);
        pos = end;
        const char *r;
        size_t n;
        while (tb_framer_next(&f, &r, &n) == 1) {
            tb_buf_append(out, r, n);
            struct tb_blob *b = tb_framer_take_body(&f);
            if (b) {
                tb_buf_puts(out, "<");
                tb_buf_append(out, b->data, b->len);
                tb_buf_puts(out, ">");
                tb_blob_unref(b);
            }
            tb_buf_puts(out, "|");
        }
    }
    if (tb_framer_pending(&f))
        tb_buf_puts(out, "PENDING");
    tb_framer_free(&f);
    return 0;
}

static void test_detach(void)
{
    static const char want[] = "* 1 FETCH (UID 7 BODY[] {0}\r\n)\r\n<he}\r\n>|"
                               "* 2 FETCH (UID 8 BODY[HEADER] {3}\r\nabc BODY[] {00}\r\n"
                               " FLAGS (\\Seen))\r\n<0123456789\r\n>|"
                               "* 3 FETCH (UID 9 BODY[] {0}\r\n)\r\n|"
                               "* 4 FETCH (body[] {0}\r\n BODY[] {1}\r\nc)\r\n<ab>|"
                               "T1 OK done\r\n|";
    struct tb_buf whole;
    tb_buf_init(&whole);
    size_t len = sizeof(dstream) - 1;
    run_detached(dstream, len, NULL, 0, &whole);
    CHECK(strcmp(tb_buf_cstr(&whole), want) == 0,
          "bodies detached, sizes zeroed, other literals kept:\n%s", whole.data);
    int same = 1;
    for (size_t cut = 1; cut < len && same; cut++) {
        for (size_t cut2 = cut; cut2 < len && same; cut2 += 7) {
            struct tb_buf b;
            tb_buf_init(&b);
            size_t cuts[2] = {cut, cut2};
            run_detached(dstream, len, cuts, 2, &b);
            same = b.len == whole.len && memcmp(b.data, whole.data, b.len) == 0;
            tb_buf_free(&b);
        }
    }
    CHECK(same, "detached: any two cuts give the same responses and bodies");
    CHECK(byte_by_byte(run_detached, dstream, len, &whole), "detached: byte by byte");
    /* The responses handed out parse, the body item as an empty literal. */
    struct tb_framer f;
    tb_framer_init(&f, 1 << 20, 1 << 20);
    tb_framer_detach_bodies(&f);
    tb_framer_feed(&f, dstream, len);
    const char *r;
    size_t n;
    int parsed = 0;
    while (tb_framer_next(&f, &r, &n) == 1) {
        struct tb_resp resp;
        char err[160];
        if (tb_parse_response(r, n, 0, &resp, err, sizeof(err)) == 0) {
            parsed += resp.data != NULL || resp.tagged != NULL;
            resp.body = tb_framer_take_body(&f);
            tb_resp_clear(&resp); /* frees the body */
        }
    }
    CHECK(parsed == 5, "five detached responses parse (got %d)", parsed);
    tb_framer_free(&f);
    /* A body announced but cut off: freed with the framer. */
    tb_framer_init(&f, 1 << 20, 1 << 20);
    tb_framer_detach_bodies(&f);
    tb_framer_feed(&f, "* 1 FETCH (BODY[] {100000}\r\nabc", 32);
    CHECK(tb_framer_next(&f, &r, &n) == 0, "partial body: more needed");
    tb_framer_free(&f);
    tb_buf_free(&whole);
}

int main(void)
{
    test_detach();
    test_depth();
    test_splits();
    test_big_literal();
    test_errors();
    test_fuzz();
    return tap_done();
}
