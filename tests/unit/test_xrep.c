/* X-REPLICATE responses through tb_parse_response(): every kind and field, literals and
 * escapes, limits, malformed lines (never a partial value), and seeded mutations. */
#include "protocol/framer.h"
#include "protocol/parse.h"
#include "protocol/xrep.h"
#include "tap.h"

#include <stdint.h>
#include <stdlib.h>

#define G1 "083941234ebe036b9e26000083ecc375"
#define G2 "11fd31234ebe036b9e26000083ecc375"

/* Parses one complete response (CRLF included); the value stays owned by r. */
static const struct tb_xrep *xparse_n(struct tb_resp *r, const char *p, size_t n, int *rc)
{
    char err[160];
    int x = tb_parse_response(p, n, 0, r, err, sizeof(err));
    if (rc)
        *rc = x;
    return x == 0 ? tb_xrep_of(r) : NULL;
}

static const struct tb_xrep *xparse(struct tb_resp *r, const char *line)
{
    return xparse_n(r, line, strlen(line), NULL);
}

static void test_mailbox(void)
{
    struct tb_resp r;
    const struct tb_xrep *x = xparse(&r, "* XREPLICATE MAILBOX " G2 " CREATED \"Bar\"\r\n");
    CHECK(x && x->kind == TB_XREP_MAILBOX && x->event == TB_XREP_CREATED, "MAILBOX CREATED");
    CHECK(x && strcmp(x->guid, G2) == 0, "MAILBOX guid");
    CHECK(x && x->name && strcmp(x->name, "Bar") == 0 && !x->new_name, "CREATED name, no new name");
    CHECK(x && !x->uids && !x->token && !x->reason && !x->add && !x->remove,
          "CREATED carries nothing else");
    CHECK(r.data && r.data->rsp_type == MAILIMAP_RESP_DATA_TYPE_EXTENSION_DATA,
          "arrives as libetpan extension data");
    tb_resp_clear(&r);
    CHECK(tb_xrep_of(&r) == NULL, "nothing after tb_resp_clear");

    x = xparse(&r, "* XREPLICATE MAILBOX " G1 " RENAMED \"Old\" \"New\"\r\n");
    CHECK(x && x->event == TB_XREP_RENAMED && strcmp(x->name, "Old") == 0 && x->new_name &&
              strcmp(x->new_name, "New") == 0,
          "RENAMED old and new");
    tb_resp_clear(&r);

    x = xparse(&r, "* XREPLICATE MAILBOX " G1 " DELETED {5}\r\nIN\"BX\r\n");
    CHECK(x && x->event == TB_XREP_DELETED && strcmp(x->name, "IN\"BX") == 0,
          "DELETED with a literal name holding a quote");
    tb_resp_clear(&r);

    x = xparse(&r, "* XREPLICATE MAILBOX " G1 " RENAMED {7}\r\nOld One \"x\\\"y\\\\z\"\r\n");
    CHECK(x && strcmp(x->name, "Old One") == 0 && strcmp(x->new_name, "x\"y\\z") == 0,
          "RENAMED literal then quoted with \\\" and \\\\ escapes");
    tb_resp_clear(&r);

    x = xparse(&r, "* XREPLICATE MAILBOX " G1 " RENAMED {1}\r\nA {0002}\r\nB}\r\n");
    CHECK(x && strcmp(x->name, "A") == 0 && strcmp(x->new_name, "B}") == 0, "two literals");
    tb_resp_clear(&r);

    x = xparse(&r, "* XREPLICATE MAILBOX " G1 " SUBSCRIBED \"&AOQ-\"\r\n");
    CHECK(x && x->event == TB_XREP_SUBSCRIBED && strcmp(x->name, "&AOQ-") == 0,
          "SUBSCRIBED, modified UTF-7 kept as on the wire");
    tb_resp_clear(&r);

    x = xparse(&r, "* xreplicate mailbox " G1 " unsubscribed \"INBOX/&AOQ-rger\"\r\n");
    CHECK(x && x->event == TB_XREP_UNSUBSCRIBED && strcmp(x->name, "INBOX/&AOQ-rger") == 0,
          "UNSUBSCRIBED, keywords case-insensitive");
    tb_resp_clear(&r);

    x = xparse(&r, "* XREPLICATE MAILBOX " G1 " CREATED {3}\nA\tB\n");
    CHECK(x && strcmp(x->name, "A\tB") == 0, "literal after bare LF, as the framer frames it");
    tb_resp_clear(&r);
}

static void test_status(void)
{
    struct tb_resp r;
    const struct tb_xrep *x =
        xparse(&r, "* XREPLICATE STATUS " G1 " \"INBOX\" (UIDVALIDITY "
                   "1795407439 UIDNEXT 4 HIGHESTMODSEQ 4) (\\Subscribed)\r\n");
    CHECK(x && x->kind == TB_XREP_STATUS && strcmp(x->guid, G1) == 0, "STATUS");
    CHECK(x && strcmp(x->name, "INBOX") == 0 && x->uidvalidity == 1795407439u && x->uidnext == 4 &&
              x->highestmodseq == 4,
          "STATUS name and numbers");
    CHECK(x && x->subscribed, "STATUS \\Subscribed present");
    CHECK(x && !x->uids && !x->new_name && !x->token, "STATUS carries nothing else");
    tb_resp_clear(&r);

    x = xparse(&r, "* XREPLICATE STATUS " G2
                   " \"Bar\" (UIDVALIDITY 1795407438 UIDNEXT 1 HIGHESTMODSEQ 1) ()\r\n");
    CHECK(x && !x->subscribed && x->uidnext == 1 && x->highestmodseq == 1,
          "STATUS \\Subscribed absent");
    tb_resp_clear(&r);

    x = xparse(&r, "* XREPLICATE STATUS " G1
                   " {4}\r\nA(B) (uidvalidity 4294967295 uidnext 4294967295 highestmodseq "
                   "9223372036854775807) (\\subscribed)\r\n");
    CHECK(x && x->uidvalidity == UINT32_MAX && x->uidnext == UINT32_MAX &&
              x->highestmodseq == (uint64_t)INT64_MAX && x->subscribed &&
              strcmp(x->name, "A(B)") == 0,
          "STATUS limits: 2^32-1, 2^63-1, literal name, lower-case keywords");
    tb_resp_clear(&r);

    x = xparse(&r,
               "* XREPLICATE STATUS " G1 " \"x\" (UIDVALIDITY 1 UIDNEXT 1 HIGHESTMODSEQ 0) ()\r\n");
    CHECK(x && x->highestmodseq == 0, "HIGHESTMODSEQ 0 (mod-sequence-valzer) accepted");
    tb_resp_clear(&r);

    x = xparse(&r, "* XREPLICATE STATUS " G1
                   " \"x\" (UIDVALIDITY 7 UIDNEXT 9 HIGHESTMODSEQ 4294967296123) ()\r\n");
    CHECK(x && x->highestmodseq == 4294967296123ull, "HIGHESTMODSEQ above 2^32");
    tb_resp_clear(&r);
}

static void test_resync(void)
{
    struct tb_resp r;
    const struct tb_xrep *x = xparse(&r, "* XREPLICATE RESYNC " G1 " EXPIRED \"INBOX\"\r\n");
    CHECK(x && x->kind == TB_XREP_RESYNC && strcmp(x->guid, G1) == 0 &&
              strcmp(x->reason, "EXPIRED") == 0 && strcmp(x->name, "INBOX") == 0,
          "RESYNC EXPIRED");
    tb_resp_clear(&r);
    x = xparse(&r, "* XREPLICATE RESYNC " G1 " uidValidity \"a\"\r\n");
    CHECK(x && strcmp(x->reason, "UIDVALIDITY") == 0, "RESYNC reason upper-cased");
    tb_resp_clear(&r);
    x = xparse(&r, "* XREPLICATE RESYNC " G1 " Moon-Phase.2 {2}\r\nab\r\n");
    CHECK(x && strcmp(x->reason, "MOON-PHASE.2") == 0 && strcmp(x->name, "ab") == 0,
          "RESYNC unknown reason atom kept");
    tb_resp_clear(&r);
    x = xparse(&r, "* XREPLICATE RESYNC " G1 " RECREATED \"a\"\r\n");
    CHECK(x && strcmp(x->reason, "RECREATED") == 0, "RESYNC RECREATED");
    tb_resp_clear(&r);
}

static void test_uids(void)
{
    struct tb_resp r;
    const struct tb_xrep *x = xparse(&r, "* XREPLICATE EXPUNGED " G1 " 3:5,9\r\n");
    CHECK(x && x->kind == TB_XREP_EXPUNGED && strcmp(x->uids, "3:5,9") == 0 &&
              strcmp(x->guid, G1) == 0,
          "EXPUNGED 3:5,9");
    tb_resp_clear(&r);
    x = xparse(&r, "* XREPLICATE APPENDED " G2 " 4:5\r\n");
    CHECK(x && x->kind == TB_XREP_APPENDED && strcmp(x->uids, "4:5") == 0 &&
              strcmp(x->guid, G2) == 0 && !x->name,
          "APPENDED 4:5");
    tb_resp_clear(&r);
    x = xparse(&r, "* XREPLICATE APPENDED " G2 " 4294967295,1:4294967295\r\n");
    CHECK(x && strcmp(x->uids, "4294967295,1:4294967295") == 0, "UID 2^32-1");
    tb_resp_clear(&r);

    x = xparse(&r, "* XREPLICATE FLAGS " G1
                   " 1 MODSEQ 5 ADD (\\Seen) REMOVE (\\Answered \\Flagged \\Deleted \\Draft)\r\n");
    CHECK(x && x->kind == TB_XREP_FLAGS && strcmp(x->guid, G1) == 0 && strcmp(x->uids, "1") == 0,
          "FLAGS uid");
    CHECK(x && x->modseq == 5 && strcmp(x->add, "\\Seen") == 0 &&
              strcmp(x->remove, "\\Answered \\Flagged \\Deleted \\Draft") == 0,
          "FLAGS modseq, add and remove as sent");
    tb_resp_clear(&r);

    x = xparse(&r, "* XREPLICATE FLAGS " G1 " 2,4 MODSEQ 7 ADD (\\Answered $Label1) REMOVE ()\r\n");
    CHECK(x && strcmp(x->uids, "2,4") == 0 && x->modseq == 7 &&
              strcmp(x->add, "\\Answered $Label1") == 0 && x->remove && x->remove[0] == 0,
          "FLAGS with a keyword and an empty REMOVE");
    tb_resp_clear(&r);

    x = xparse(&r, "* XREPLICATE FLAGS " G1
                   " 7:9 modseq 12345678901234 add () remove ($Junk NonJunk \\X-Ext)\r\n");
    CHECK(x && x->modseq == 12345678901234ull && x->add && x->add[0] == 0 &&
              strcmp(x->remove, "$Junk NonJunk \\X-Ext") == 0,
          "FLAGS big MODSEQ, empty ADD, keywords and a flag-extension");
    tb_resp_clear(&r);
}

static void test_position(void)
{
    struct tb_resp r;
    const char *tok = "ASeOvEcBAAVJTkJPWAg5QSNOvgNrniYAAIPsw3XP_I7YBgQEAW2UeBQ";
    char line[200];
    snprintf(line, sizeof(line), "* XREPLICATE POSITION %s\r\n", tok);
    const struct tb_xrep *x = xparse(&r, line);
    CHECK(x && x->kind == TB_XREP_POSITION && strcmp(x->token, tok) == 0 && x->guid[0] == 0,
          "POSITION token, no guid");
    tb_resp_clear(&r);
    x = xparse(&r, "* XREPLICATE POSITION \"a b\"\r\n");
    CHECK(x && strcmp(x->token, "a b") == 0, "POSITION quoted");
    tb_resp_clear(&r);
    x = xparse(&r, "* XREPLICATE POSITION {3}\r\nx y\r\n");
    CHECK(x && strcmp(x->token, "x y") == 0, "POSITION literal");
    tb_resp_clear(&r);
    x = xparse(&r, "* XREPLICATE POSITION a]b\r\n");
    CHECK(x && strcmp(x->token, "a]b") == 0, "POSITION astring may hold ']'");
    tb_resp_clear(&r);
}

/* Lines that must not yield a value: broken ones, and others' responses. */
static const char *const bad[] = {
    "* XREPLICATE MAILBOX 083941234ebe036b9e26000083ecc37 CREATED \"a\"\r\n", /* 31 hex */
    "* XREPLICATE MAILBOX 083941234ebe036b9e26000083ecc3750 CREATED \"a\"\r\n",
    "* XREPLICATE MAILBOX 083941234EBE036B9E26000083ECC375 CREATED \"a\"\r\n",
    "* XREPLICATE MAILBOX 083941234ebe036b9e26000083ecc37g CREATED \"a\"\r\n",
    "* XREPLICATE APPENDED " G1 " 1:*\r\n",
    "* XREPLICATE EXPUNGED " G1 " *\r\n",
    "* XREPLICATE FLAGS " G1 " 1,* MODSEQ 5 ADD () REMOVE ()\r\n",
    "* XREPLICATE APPENDED " G1 " 0\r\n",
    "* XREPLICATE EXPUNGED " G1 " 3:0\r\n",
    "* XREPLICATE EXPUNGED " G1 " 05\r\n",
    "* XREPLICATE EXPUNGED " G1 " 4294967296\r\n",
    "* XREPLICATE EXPUNGED " G1 " 18446744073709551621\r\n",
    "* XREPLICATE EXPUNGED " G1 " 1,,2\r\n",
    "* XREPLICATE EXPUNGED " G1 " 1,\r\n",
    "* XREPLICATE EXPUNGED " G1 " 1:2:3\r\n",
    "* XREPLICATE EXPUNGED " G1 " -1\r\n",
    "* XREPLICATE APPENDED " G1 "\r\n",
    "* XREPLICATE APPENDED " G1 " \r\n",
    "* XREPLICATE APPENDED\r\n",
    "* XREPLICATE MAILBOX " G1 " CREATED\r\n",
    "* XREPLICATE MAILBOX " G1 "\r\n",
    "* XREPLICATE MAILBOX " G1 " RENAMED \"Old\"\r\n",
    "* XREPLICATE MAILBOX " G1 " CREATED Bar\r\n",  /* an atom is no xrep-name */
    "* XREPLICATE MAILBOX " G1 " CREATED \"\"\r\n", /* empty name */
    "* XREPLICATE MAILBOX " G1 " MOVED \"a\"\r\n",
    "* XREPLICATE MAILBOX " G1 " CREATEDX \"a\"\r\n",
    "* XREPLICATE MAILBOX " G1 " CREATED \"a\\b\"\r\n",     /* escape of a non-special */
    "* XREPLICATE MAILBOX " G1 " CREATED \"\xc3\xa4\"\r\n", /* 8-bit in quoted */
    "* XREPLICATE MAILBOX " G1 " CREATED \"ab\r\n",
    "* XREPLICATE MAILBOX " G1 " CREATED {10}\r\nab\r\n", /* literal past the end */
    "* XREPLICATE MAILBOX " G1 " CREATED {-2}\r\nab\r\n",
    "* XREPLICATE MAILBOX " G1 " CREATED {2+}\r\nab\r\n",
    "* XREPLICATE MAILBOX " G1 " CREATED {99999999999}\r\nab\r\n",
    "* XREPLICATE MAILBOX " G1 " CREATED {2}ab\r\n",
    "* XREPLICATE MAILBOX " G1 " CREATED \"a\" \"b\"\r\n",
    "* XREPLICATE STATUS " G1 " \"INBOX\" (UIDVALIDITY 1 UIDNEXT 4) ()\r\n",
    "* XREPLICATE STATUS " G1 " \"INBOX\" (UIDVALIDITY 1 UIDNEXT 4 HIGHESTMODSEQ 4)\r\n",
    "* XREPLICATE STATUS " G1 " \"INBOX\" (UIDVALIDITY abc UIDNEXT 4 HIGHESTMODSEQ 4) ()\r\n",
    "* XREPLICATE STATUS " G1 " \"INBOX\" (UIDVALIDITY -1 UIDNEXT 4 HIGHESTMODSEQ 4) ()\r\n",
    "* XREPLICATE STATUS " G1 " \"INBOX\" (UIDVALIDITY 0 UIDNEXT 4 HIGHESTMODSEQ 4) ()\r\n",
    "* XREPLICATE STATUS " G1
    " \"INBOX\" (UIDVALIDITY 4294967296 UIDNEXT 4 HIGHESTMODSEQ 4) ()\r\n",
    "* XREPLICATE STATUS " G1 " \"INBOX\" (UIDVALIDITY 1 UIDNEXT 0 HIGHESTMODSEQ 4) ()\r\n",
    "* XREPLICATE STATUS " G1
    " \"INBOX\" (UIDVALIDITY 1 UIDNEXT 4 HIGHESTMODSEQ 9223372036854775808) ()\r\n",
    "* XREPLICATE STATUS " G1
    " \"INBOX\" (UIDVALIDITY 1 UIDNEXT 4 HIGHESTMODSEQ 18446744073709551616) ()\r\n",
    "* XREPLICATE STATUS " G1 " \"INBOX\" (UIDNEXT 4 UIDVALIDITY 1 HIGHESTMODSEQ 4) ()\r\n",
    "* XREPLICATE STATUS " G1 " \"INBOX\" (UIDVALIDITY 1  UIDNEXT 4 HIGHESTMODSEQ 4) ()\r\n",
    "* XREPLICATE STATUS " G1
    " \"INBOX\" (UIDVALIDITY 1 UIDNEXT 4 HIGHESTMODSEQ 4) (\\Subscribed \\Marked)\r\n",
    "* XREPLICATE STATUS " G1 " \"INBOX\" (UIDVALIDITY 1 UIDNEXT 4 HIGHESTMODSEQ 4) (\\Sub)\r\n",
    "* XREPLICATE STATUS " G1 " \"INBOX\" (UIDVALIDITY 1 UIDNEXT 4 HIGHESTMODSEQ 4) () x\r\n",
    "* XREPLICATE STATUS " G1 " INBOX (UIDVALIDITY 1 UIDNEXT 4 HIGHESTMODSEQ 4) ()\r\n",
    "* XREPLICATE RESYNC " G1 " EXPIRED\r\n",
    "* XREPLICATE RESYNC " G1 " \"EXPIRED\" \"INBOX\"\r\n",
    "* XREPLICATE RESYNC " G1 " \"INBOX\"\r\n",
    "* XREPLICATE FLAGS " G1 " 1 MODSEQ 5 ADD (\\Seen)\r\n",
    "* XREPLICATE FLAGS " G1 " 1 MODSEQ 0 ADD (\\Seen) REMOVE ()\r\n",
    "* XREPLICATE FLAGS " G1 " 1 MODSEQ x ADD (\\Seen) REMOVE ()\r\n",
    "* XREPLICATE FLAGS " G1 " 1 ADD (\\Seen) REMOVE ()\r\n",
    "* XREPLICATE FLAGS " G1 " 1 MODSEQ 5 REMOVE () ADD (\\Seen)\r\n",
    "* XREPLICATE FLAGS " G1 " 1 MODSEQ 5 ADD (\\*) REMOVE ()\r\n",
    "* XREPLICATE FLAGS " G1 " 1 MODSEQ 5 ADD ( \\Seen) REMOVE ()\r\n",
    "* XREPLICATE FLAGS " G1 " 1 MODSEQ 5 ADD (\\Seen  \\Draft) REMOVE ()\r\n",
    "* XREPLICATE FLAGS " G1 " 1 MODSEQ 5 ADD (\\Seen ) REMOVE ()\r\n",
    "* XREPLICATE FLAGS " G1 " 1 MODSEQ 5 ADD (\\) REMOVE ()\r\n",
    "* XREPLICATE FLAGS " G1 " 1 MODSEQ 5 ADD (\\Seen REMOVE ()\r\n",
    "* XREPLICATE FLAGS " G1 " 1 MODSEQ 5 ADD (\"x\") REMOVE ()\r\n",
    "* XREPLICATE FLAGS " G1 " 1 MODSEQ 5 ADD () REMOVE () junk\r\n",
    "* XREPLICATE APPENDED " G1 " 4:5 x\r\n",
    "* XREPLICATE APPENDED " G1 " 4:5 \r\n", /* trailing space */
    "* XREPLICATE APPENDED " G1 " 4:5\r\nxyz\r\n",
    "* XREPLICATE POSITION\r\n",
    "* XREPLICATE POSITION \r\n",
    "* XREPLICATE POSITION \"\"\r\n",
    "* XREPLICATE POSITION abc def\r\n",
    "* XREPLICATE POSITION abc\r\n* XREPLICATE POSITION def\r\n",
    "* XREPLICATE POSITION a*b\r\n",
    "* XREPLICATE POSITION ab(\r\n",
    "* XREPLICATE WHATEVER " G1 " 1\r\n",
    "* XREPLICATE\r\n",
    "* XREPLICATE  POSITION abc\r\n",
    "* XREPLICATEX POSITION abc\r\n",
    "* XREPLICATE-POSITION abc\r\n",
};

static void test_malformed(void)
{
    int ok = 0, n = (int)(sizeof(bad) / sizeof(*bad));
    for (int i = 0; i < n; i++) {
        struct tb_resp r;
        int rc;
        const struct tb_xrep *x = xparse_n(&r, bad[i], strlen(bad[i]), &rc);
        if (rc == 0 && !x && !r.data)
            ok++;
        else
            printf("# accepted or failed oddly (rc %d): %s", rc, bad[i]);
        tb_resp_clear(&r);
    }
    CHECK(ok == n, "%d malformed lines stay unparsed (%d did)", n, ok);

    /* A NUL inside a literal: names are C strings. */
    static const char nul[] = "* XREPLICATE MAILBOX " G1 " CREATED {5}\r\nIN\0BX\r\n";
    struct tb_resp r;
    int rc;
    const struct tb_xrep *x = xparse_n(&r, nul, sizeof(nul) - 1, &rc);
    CHECK(rc == 0 && !x && !r.data, "NUL in a literal name refused");
    tb_resp_clear(&r);
    static const char nulq[] = "* XREPLICATE POSITION \"a\0b\"\r\n";
    x = xparse_n(&r, nulq, sizeof(nulq) - 1, &rc);
    CHECK(rc == 0 && !x && !r.data, "NUL in a quoted token refused");
    tb_resp_clear(&r);
}

/* Registering the extension must not take anything away from libetpan's own grammar. */
static void test_others(void)
{
    struct tb_resp r;
    char err[160];
    tb_xrep_register();
    tb_xrep_register();
    const char *exists = "* 3 EXISTS\r\n";
    int rc = tb_parse_response(exists, strlen(exists), 0, &r, err, sizeof(err));
    CHECK(rc == 0 && r.data && r.data->rsp_type == MAILIMAP_RESP_DATA_TYPE_MAILBOX_DATA &&
              !tb_xrep_of(&r),
          "EXISTS still parses, is no X-REPLICATE");
    tb_resp_clear(&r);
    const char *status = "* STATUS \"INBOX\" (UIDNEXT 4 HIGHESTMODSEQ 9)\r\n";
    rc = tb_parse_response(status, strlen(status), 0, &r, err, sizeof(err));
    CHECK(rc == 0 && r.data && r.data->rsp_type == MAILIMAP_RESP_DATA_TYPE_MAILBOX_DATA &&
              !tb_xrep_of(&r),
          "plain STATUS still libetpan's");
    tb_resp_clear(&r);
    const char *vanished = "* VANISHED (EARLIER) 1:3,5\r\n";
    rc = tb_parse_response(vanished, strlen(vanished), 0, &r, err, sizeof(err));
    CHECK(rc == 0 && r.data && r.data->rsp_type == MAILIMAP_RESP_DATA_TYPE_EXTENSION_DATA &&
              !tb_xrep_of(&r),
          "another extension's data is not ours");
    tb_resp_clear(&r);
    const char *code = "* OK [XREPLICATE-BADTOKEN] x\r\n";
    rc = tb_parse_response(code, strlen(code), 0, &r, err, sizeof(err));
    CHECK(rc == 0 && r.data && !tb_xrep_of(&r), "XREPLICATE-BADTOKEN code left to libetpan");
    tb_resp_clear(&r);
    const char *tagged = "a1 NO [XREPLICATE-BADTOKEN] bad token\r\n";
    rc = tb_parse_response(tagged, strlen(tagged), 0, &r, err, sizeof(err));
    CHECK(rc == 0 && r.kind == TB_RESP_TAGGED && !tb_xrep_of(&r) &&
              tb_resp_tagged_status(&r) == MAILIMAP_RESP_COND_STATE_NO,
          "tagged NO [XREPLICATE-BADTOKEN]");
    tb_resp_clear(&r);
    CHECK(tb_xrep_of(NULL) == NULL, "tb_xrep_of(NULL)");
    const struct tb_xrep *x = xparse(&r, "* XREPLICATE POSITION abc\r\n");
    CHECK(x && strcmp(x->token, "abc") == 0, "still parses after registering again");
    tb_resp_clear(&r);
}

/* The man page's CHANGES reply, through the framer, with a literal name added. */
static void test_framed(void)
{
    static const char stream[] =
        "* XREPLICATE MAILBOX " G2 " CREATED {3}\r\nBar\r\n"
        "* XREPLICATE STATUS " G2 " {3}\r\nBar (UIDVALIDITY 1795407438 UIDNEXT 1 "
        "HIGHESTMODSEQ 1) ()\r\n"
        "* XREPLICATE EXPUNGED " G1 " 3\r\n"
        "* 3 EXISTS\r\n"
        "* XREPLICATE FLAGS " G1 " 1 MODSEQ 5 ADD (\\Seen) REMOVE (\\Answered \\Flagged "
        "\\Deleted \\Draft)\r\n"
        "* XREPLICATE FLAGS " G1 " 2 MODSEQ 7 ADD (\\Answered $Label1) REMOVE ()\r\n"
        "* XREPLICATE APPENDED " G1 " 4:5\r\n"
        "* XREPLICATE STATUS " G1 " \"INBOX\" (UIDVALIDITY 1795407439 UIDNEXT 6 HIGHESTMODSEQ "
        "11) (\\Subscribed)\r\n"
        "* XREPLICATE POSITION ASeOvEcCAANCYXIR_TEjTr4Da54mAACD7MN1zvyO2AYBAQAABUlOQk9YCDlBI06-"
        "A2ueJgAAg-zDdc_8jtgGBAkAO7a5Lg\r\n"
        "a2 OK XREPLICATE completed.\r\n";
    static const enum tb_xrep_kind want[] = {TB_XREP_MAILBOX, TB_XREP_STATUS,  TB_XREP_EXPUNGED,
                                             TB_XREP_FLAGS,   TB_XREP_FLAGS,   TB_XREP_APPENDED,
                                             TB_XREP_STATUS,  TB_XREP_POSITION};
    struct tb_framer f;
    tb_framer_init(&f, 1 << 20, 1 << 20);
    tb_framer_feed(&f, stream, sizeof(stream) - 1);
    const char *p;
    size_t n;
    size_t k = 0, responses = 0;
    int order_ok = 1;
    while (tb_framer_next(&f, &p, &n) == 1) {
        struct tb_resp r;
        const struct tb_xrep *x = xparse_n(&r, p, n, NULL);
        responses++;
        if (x) {
            if (k >= sizeof(want) / sizeof(*want) || x->kind != want[k])
                order_ok = 0;
            k++;
        }
        tb_resp_clear(&r);
    }
    tb_framer_free(&f);
    CHECK(responses == 10 && k == 8 && order_ok, "framed reply: 8 values in order among 10");
}

/* What an accepted value must look like, whatever the input was. */
static int uids_ok(const char *u)
{
    if (!u || !*u)
        return 0;
    for (const char *p = u; *p; p++) {
        if ((p == u || p[-1] == ':' || p[-1] == ',') && !(*p >= '1' && *p <= '9'))
            return 0;
        if (!((*p >= '0' && *p <= '9') || *p == ':' || *p == ','))
            return 0;
    }
    return 1;
}

static int sane(const struct tb_xrep *x)
{
    if (x->kind == TB_XREP_POSITION)
        return x->guid[0] == 0 && x->token && x->token[0];
    if (strlen(x->guid) != 32 || strspn(x->guid, "0123456789abcdef") != 32)
        return 0;
    switch (x->kind) {
    case TB_XREP_MAILBOX:
        return x->name && x->name[0] && (x->event == TB_XREP_RENAMED) == (x->new_name != NULL);
    case TB_XREP_STATUS:
        return x->name && x->name[0] && x->uidvalidity && x->uidnext;
    case TB_XREP_RESYNC:
        return x->name && x->reason && x->reason[0] &&
               !strpbrk(x->reason, "abcdefghijklmnopqrstuvwxyz");
    case TB_XREP_APPENDED:
    case TB_XREP_EXPUNGED:
        return uids_ok(x->uids);
    case TB_XREP_FLAGS:
        return uids_ok(x->uids) && x->modseq && x->add && x->remove;
    default:
        return 0;
    }
}

static uint32_t rng = 20261123;
static uint32_t rnd(void)
{
    rng = rng * 1103515245u + 12345u;
    return rng >> 8;
}

static void test_fuzz(void)
{
    static const char *const seeds[] = {
        "* XREPLICATE MAILBOX " G2 " CREATED \"Bar\"\r\n",
        "* XREPLICATE MAILBOX " G1 " RENAMED {3}\r\nOld \"N\\\"w\"\r\n",
        "* XREPLICATE STATUS " G1 " \"INBOX\" (UIDVALIDITY 1795407439 UIDNEXT 4 HIGHESTMODSEQ "
        "4) (\\Subscribed)\r\n",
        "* XREPLICATE RESYNC " G1 " EXPIRED {5}\r\nINBOX\r\n",
        "* XREPLICATE EXPUNGED " G1 " 3:5,9\r\n",
        "* XREPLICATE FLAGS " G1 " 2,4 MODSEQ 7 ADD (\\Answered $Label1) REMOVE ()\r\n",
        "* XREPLICATE APPENDED " G1 " 4:5\r\n",
        "* XREPLICATE POSITION ASeOvEcBAAVJTkJPWAg5QSNOvgNrniYAAIPsw3XP_I7YBgQEAW2UeBQ\r\n",
    };
    /* Bytes the grammar cares about, so mutations reach past the first token. */
    static const char alphabet[] = " ()\\\"{}*:,0123456789abcdefAZ$]\r\n\0\x80\xff";
    int accepted = 0, rejected = 0, insane = 0, errors = 0;
    for (int iter = 0; iter < 5000; iter++) {
        const char *s = seeds[rnd() % (sizeof(seeds) / sizeof(*seeds))];
        size_t len = strlen(s);
        char buf[512];
        memcpy(buf, s, len);
        int how = (int)(rnd() % 4);
        if (how == 0) { /* truncate, keep a line end so the extension is reached */
            len = 3 + rnd() % (len - 3);
            memcpy(buf + len, "\r\n", 2);
            len += 2;
        } else if (how == 1) { /* overwrite bytes */
            for (int m = 0, nm = 1 + (int)(rnd() % 3); m < nm; m++) {
                size_t at = 2 + rnd() % (len - 4);
                buf[at] = rnd() % 4 ? alphabet[rnd() % (sizeof(alphabet) - 1)] : (char)rnd();
            }
        } else if (how == 2) { /* insert a byte */
            size_t at = 2 + rnd() % (len - 2);
            memmove(buf + at + 1, buf + at, len - at);
            buf[at] = alphabet[rnd() % (sizeof(alphabet) - 1)];
            len++;
        } else { /* delete a byte */
            size_t at = 2 + rnd() % (len - 4);
            memmove(buf + at, buf + at + 1, len - at - 1);
            len--;
        }
        struct tb_resp r;
        int rc;
        const struct tb_xrep *x = xparse_n(&r, buf, len, &rc);
        if (rc != 0) {
            errors++;
        } else if (x) {
            accepted++;
            insane += !sane(x);
        } else {
            rejected++;
        }
        tb_resp_clear(&r);
    }
    printf("# fuzz: %d accepted, %d rejected, %d not responses\n", accepted, rejected, errors);
    CHECK(insane == 0, "every accepted mutation is a well-formed value (%d were not)", insane);
    CHECK(accepted > 0 && rejected > 0, "mutations both accepted and rejected");
}

int main(void)
{
    /* No tb_xrep_register() first: tb_parse_response() registers it itself. */
    test_mailbox();
    test_status();
    test_resync();
    test_uids();
    test_position();
    test_malformed();
    test_others();
    test_framed();
    test_fuzz();
    return tap_done();
}
