/* Command writer: quoting, literals with and without LITERAL+, redaction. */
#include "protocol/cmd.h"
#include "tap.h"

static struct tb_buf flat;

static const char *chunk(struct tb_cmd *c, size_t k)
{
    flat.len = 0;
    tb_cmd_chunk_text(c, k, &flat);
    return tb_buf_cstr(&flat);
}

int main(void)
{
    struct tb_cmd *c = tb_cmd_new("SELECT");
    tb_cmd_astring(c, "INBOX");
    CHECK(tb_cmd_render(c, "T1", false, false) == 1, "one chunk");
    CHECK_STR(chunk(c, 0), "T1 SELECT INBOX\r\n", "atom");
    tb_cmd_free(c);

    c = tb_cmd_new("SELECT");
    tb_cmd_astring(c, "My \"quoted\" \\box");
    tb_cmd_render(c, "T2", true, false);
    CHECK_STR(chunk(c, 0), "T2 SELECT \"My \\\"quoted\\\" \\\\box\"\r\n", "quoted with escapes");
    tb_cmd_free(c);

    c = tb_cmd_new("LIST");
    tb_cmd_string(c, "");
    tb_cmd_astring(c, "NIL");
    tb_cmd_render(c, "T3", true, false);
    CHECK_STR(chunk(c, 0), "T3 LIST \"\" \"NIL\"\r\n", "empty string and NIL are quoted");
    tb_cmd_free(c);

    c = tb_cmd_new("LOGIN");
    tb_cmd_astring(c, "user");
    tb_cmd_secret(c, "p\xc3\xa4ss");
    CHECK(tb_cmd_render(c, "T4", false, false) == 2, "8-bit password: synchronizing literal");
    CHECK_STR(chunk(c, 0), "T4 LOGIN user {5}\r\n", "first chunk ends at the literal");
    CHECK_STR(chunk(c, 1), "p\xc3\xa4ss\r\n", "literal body after the continuation");
    CHECK(tb_cmd_render(c, "T4", true, false) == 1, "LITERAL+: one chunk");
    CHECK_STR(chunk(c, 0), "T4 LOGIN user {5+}\r\np\xc3\xa4ss\r\n", "non-synchronizing literal");
    struct tb_buf t;
    tb_buf_init(&t);
    tb_cmd_trace(c, "T4", &t);
    CHECK_STR(tb_buf_cstr(&t), "T4 LOGIN user <redacted>", "trace redacts the password");
    tb_buf_free(&t);
    tb_cmd_free(c);

    c = tb_cmd_new("APPEND");
    tb_cmd_astring(c, "INBOX");
    tb_cmd_literal(c, "", 0);
    CHECK(tb_cmd_render(c, "T5", false, true) == 1, "LITERAL-: small literal is non-sync");
    CHECK_STR(chunk(c, 0), "T5 APPEND INBOX {0+}\r\n\r\n", "empty literal");
    tb_buf_init(&t);
    tb_cmd_trace(c, "T5", &t);
    CHECK_STR(tb_buf_cstr(&t), "T5 APPEND INBOX {0 bytes}", "trace shows literal size only");
    tb_buf_free(&t);
    tb_cmd_free(c);

    c = tb_cmd_new("AUTHENTICATE PLAIN");
    tb_cmd_continuation(c, "c2VjcmV0");
    CHECK(tb_cmd_render(c, "T6", true, false) == 2, "SASL continuation is a second chunk");
    CHECK_STR(chunk(c, 0), "T6 AUTHENTICATE PLAIN\r\n", "command line");
    CHECK_STR(chunk(c, 1), "c2VjcmV0\r\n", "SASL response");
    tb_cmd_free(c);

    /* A blob literal is a piece of its own, written from the blob; the command holds a
     * reference. */
    struct tb_blob *b = tb_blob_new(5);
    memcpy(b->data, "hello", 5);
    c = tb_cmd_new("APPEND");
    tb_cmd_astring(c, "INBOX");
    tb_cmd_literal_blob(c, b);
    tb_cmd_literal_blob(c, b);
    CHECK(b->refs == 3, "the command holds two references");
    CHECK(tb_cmd_render(c, "T7", true, false) == 1, "LITERAL+: one chunk");
    CHECK_STR(chunk(c, 0), "T7 APPEND INBOX {5+}\r\nhello {5+}\r\nhello\r\n", "blob literals");
    struct tb_cmd_piece pc;
    int blobs = 0, pieces = 0;
    for (size_t i = 0; tb_cmd_piece(c, 0, i, &pc); i++) {
        pieces++;
        blobs += pc.blob == b && pc.data == b->data && pc.len == 5;
    }
    CHECK(pieces == 5 && blobs == 2, "text, blob, text, blob, text (%d pieces)", pieces);
    CHECK(tb_cmd_render(c, "T8", false, false) == 3, "synchronizing: three chunks");
    CHECK_STR(chunk(c, 0), "T8 APPEND INBOX {5}\r\n", "first chunk ends at the literal");
    CHECK_STR(chunk(c, 1), "hello {5}\r\n", "second chunk starts with the blob");
    CHECK_STR(chunk(c, 2), "hello\r\n", "third");
    tb_buf_init(&t);
    tb_cmd_trace(c, "T8", &t);
    CHECK_STR(tb_buf_cstr(&t), "T8 APPEND INBOX {5 bytes} {5 bytes}", "trace: sizes only");
    tb_buf_free(&t);
    tb_cmd_free(c);
    CHECK(b->refs == 1, "freed command: its references dropped");
    tb_blob_unref(b);
    tb_buf_free(&flat);
    return tap_done();
}
