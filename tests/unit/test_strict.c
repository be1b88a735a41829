/* Numbers twinbox relies on are range-checked before libetpan (which wraps) sees them. */
#include "protocol/parse.h"
#include "protocol/strict.h"
#include "store/fetch.h"

#include "tap.h"

#include <stdio.h>
#include <string.h>

static int parsed(const char *line, struct tb_resp *r)
{
    char err[160];
    return tb_parse_response(line, strlen(line), 0, r, err, sizeof(err));
}

static void untagged(const char *line, int usable, const char *what)
{
    struct tb_resp r;
    int rc = parsed(line, &r);
    CHECK(rc == 0 && (r.data != NULL) == usable, "%s: %s", usable ? "usable" : "unreadable", what);
    tb_resp_clear(&r);
}

int main(void)
{
    untagged("* 3 FETCH (UID 4294967295 FLAGS (\\Seen))\r\n", 1, "UID 2^32-1");
    untagged("* 3 FETCH (UID 4294967297 FLAGS (\\Seen))\r\n", 0, "UID 2^32+1 would wrap to 1");
    untagged("* 3 FETCH (UID 0 FLAGS ())\r\n", 0, "UID 0");
    untagged("* 4294967296 EXISTS\r\n", 0, "EXISTS beyond 32 bits");
    untagged("* 3 FETCH (MODSEQ (9223372036854775807) UID 5)\r\n", 1, "MODSEQ 2^63-1");
    untagged("* 3 FETCH (MODSEQ (9223372036854775808) UID 5)\r\n", 0, "MODSEQ 2^63");
    untagged("* 3 FETCH (UID 5 RFC822.SIZE 99999999999)\r\n", 0, "size beyond 32 bits");
    untagged("* VANISHED (EARLIER) 1:3,5\r\n", 1, "VANISHED");
    untagged("* VANISHED (EARLIER) 1:4294967296\r\n", 0, "VANISHED beyond 32 bits");
    untagged("* OK [HIGHESTMODSEQ 18446744073709551617] x\r\n", 0, "HIGHESTMODSEQ wraps");
    untagged("* OK [UIDNEXT 4294967296] x\r\n", 0, "UIDNEXT beyond 32 bits");
    untagged("* OK [ALERT] UID 99999999999 in free text\r\n", 1, "free text is not checked");
    untagged("* STATUS 99999999999 (MESSAGES 2 UIDNEXT 9)\r\n", 1, "a numeric mailbox name");
    untagged("* STATUS \"x(y\" (MESSAGES 2 UIDNEXT 4294967296)\r\n", 0,
             "STATUS item after a name with a parenthesis");
    untagged("* 1 FETCH (UID 7 BODY[] {15}\r\nUID 99999999999)\r\n", 1,
             "literal bodies are not checked");

    /* libetpan 1.9.4 crashes on these (found by tests/fuzz): they never reach it. */
    untagged("* NAMESPACE ((\"x\r\n", 0, "NAMESPACE with an open quoted string");
    untagged("* ANNOTATION x \"y\r\n", 0, "ANNOTATION with an open quoted string");
    untagged("* OK [PERMANENTFLAGS (%)] x\r\n", 0, "PERMANENTFLAGS whose first flag is bad");
    untagged("* OK  [PERMANENTFLAGS (%)] x\r\n", 0, "... after two blanks");
    untagged("* OK [PERMANENTFLAGS (%)x\r\n", 0, "... without ']'");
    untagged("* OK [PERMANENTFLAGS\t\t(%R)] x\r\n", 0, "... after tabs");
    untagged("* OK [PERMANENTFLAGS (\\Seen $Label1 \\*)] ok\r\n", 1, "a good PERMANENTFLAGS");
    untagged("* OK [ALERT] it said \"hi\r\n", 1, "an open quote in free text is text");
    untagged("* 1 FETCH (UID 1 BODY[] {3}\r\n\"ab)\r\n", 1, "a quote inside a literal");
    untagged("* 1 FETCH (UID 1 BODY[HEADER {3}\r\nabc)\r\n", 0, "a section without ']'");
    untagged("* LIST (\\HasNoChildren) \"/\" a]b\r\n", 1, "a mailbox name may hold a ']'");
    untagged("* 1 FETCH (UID 1 BODY[] {9999999999999}x)\r\n", 0,
             "a literal marker inside a line (libetpan would allocate its size)");
    untagged("* 1 FETCH (UID 1 BODY[] {99999999999999999999999999999999949}1\r0\n)\r\n", 0,
             "... with more digits than any size");
    untagged("* STATUS {42222222222222 }}A}\r\n", 0, "... with blanks inside the braces");
    untagged("* 1 FETCH (UID 1 BODY[] {3}\r\nabc BODY[1] {2}\r\nxy)\r\n", 1, "two literals");
    /* Sections: libetpan loses what it built for one that does not read (tests/fuzz). */
    static const struct {
        const char *item;
        int usable;
    } sections[] = {{"BODY[HEADER.FIELDS (MESSAGE-ID)]", 1},
                    {"body[header.fields.not (A B-C)]", 1},
                    {"BODY[HEADER.FIELDS (\"Message-ID\" X)]", 1},
                    {"BODY[1.2.MIME]", 1},
                    {"BODY[1.2.3]", 1},
                    {"BODY[2.HEADER.FIELDS (X)]", 1},
                    {"BODY[TEXT]<0>", 1},
                    {"BODY[10.TEXT]", 1},
                    {"BODY[HEADER.FIEL\xff]", 0},
                    {"BODY[HEADER.FIELDX]", 0},
                    {"BODY[HEADER.FIELDS (X]", 0},
                    {"BODY[HEADER.FIELDS ()]", 0},
                    {"BODY[0]", 0},
                    {"BODY[1.]", 0},
                    {"BODY[MIME]", 0},
                    {"BODY[1.0]", 0},
                    {"BODY[HEADER.FIELDS (\"X)]", 0},
                    {"BODY[HEADER.FIELDS (X )]", 0},
                    {"BODY[12345678901]", 0},
                    {"BODY\t\t[HEADER.FIELD(X)]", 0}};
    for (size_t i = 0; i < sizeof(sections) / sizeof(sections[0]); i++) {
        char line[160];
        snprintf(line, sizeof(line), "* 1 FETCH (UID 1 %s {2}\r\nab)\r\n", sections[i].item);
        untagged(line, sections[i].usable, sections[i].item);
    }
    untagged("* 1 FETCH (UID 1 BODY[] {12}\r\nBODY[HEADER. FLAGS (\\Seen))\r\n", 1,
             "a body that looks like a section");
    untagged("* 1 FETCH (UID 1 BODY[HEADER.FIELDS (X)] \"BODY[x\")\r\n", 1,
             "a quoted value that looks like a section");

    struct tb_resp r;
    CHECK(parsed("T9 OK [PERMANENTFLAGS (%)] done\r\n", &r) == 0 && r.code_unreadable &&
              tb_resp_tagged_status(&r) == MAILIMAP_RESP_COND_STATE_OK &&
              strstr(tb_resp_tagged_text(&r)->rsp_text, "done"),
          "tagged: a code libetpan would crash on is dropped, status and text kept");
    tb_resp_clear(&r);
    CHECK(parsed("T9 NO [BADCHARSET (\"x) no\r\n", &r) == 0 && r.code_unreadable &&
              tb_resp_tagged_status(&r) == MAILIMAP_RESP_COND_STATE_NO,
          "tagged: an open quote in the code");
    tb_resp_clear(&r);
    CHECK(parsed("Me:00  OK  [PERMANENTFLAGS (%\r\n", &r) == 0 && r.code_unreadable &&
              tb_resp_tagged_status(&r) == MAILIMAP_RESP_COND_STATE_OK,
          "tagged, two blanks after the tag: the code is found and dropped (tests/fuzz)");
    tb_resp_clear(&r);
    CHECK(parsed("T9 OK x PERMANENTFLAGS (%\r\n", &r) < 0,
          "tagged, a bad PERMANENTFLAGS outside any code: refused, never parsed");
    char e2[160];
    CHECK(tb_parse_response("* OK [PERMANENTFLAGS (%)] hi\r\n", 30, 1, &r, e2, sizeof(e2)) < 0,
          "a greeting with such a code is refused: %s", e2);
    CHECK(parsed("T1 OK [APPENDUID 7 4294967297] done\r\n", &r) == 0 && r.code_unreadable &&
              tb_resp_tagged_text(&r) && !tb_resp_tagged_text(&r)->rsp_code,
          "tagged: an overflowing APPENDUID is dropped and flagged");
    tb_resp_clear(&r);
    CHECK(parsed("T1 OK [APPENDUID 7 12] done\r\n", &r) == 0 && !r.code_unreadable &&
              tb_resp_tagged_text(&r)->rsp_code,
          "tagged: a valid APPENDUID stays");
    tb_resp_clear(&r);
    CHECK(parsed("T2 OK [MODIFIED 3,4294967296] x\r\n", &r) == 0 && r.code_unreadable,
          "tagged: MODIFIED beyond 32 bits is flagged");
    tb_resp_clear(&r);
    CHECK(parsed("T2 OK [COPYUID 5 1:2 4294967296:4294967297] x\r\n", &r) == 0 && r.code_unreadable,
          "tagged: COPYUID's second set is checked");
    tb_resp_clear(&r);
    struct tb_mbox_info *boxes = NULL;
    size_t n_boxes = 0;
    CHECK(parsed("* LIST () \"/\" Sent\r\n", &r) == 0 &&
              tb_list_status_collect(r.data, &boxes, &n_boxes) && n_boxes == 1,
          "LIST Sent");
    tb_resp_clear(&r);
    CHECK(parsed("* STATUS \"Sent\" ()\r\n", &r) == 0 &&
              tb_list_status_collect(r.data, &boxes, &n_boxes) && !boxes[0].messages,
          "an empty STATUS list (legal; libetpan gives no list at all) is no crash");
    tb_resp_clear(&r);
    tb_mbox_infos_free(boxes, n_boxes);
    char why[96];
    CHECK(!tb_numbers_ok("* 1 FETCH (UID 4294967297)\r\n", 27, why, sizeof(why)) &&
              strstr(why, "4294967297"),
          "the reason quotes the value: %s", why);
    return tap_done();
}
