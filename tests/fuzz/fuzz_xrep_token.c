/* fuzz_xrep_token: the Dovecot plugin's position-token decoder (src/dovecot/xrep-token.c),
 * which reads the token a client sends with XREPLICATE CHANGES / WATCH. Built against the
 * installed libdovecot (lib_init, data stack, pools, base64, crc32), outside any Dovecot
 * process; xrep-snapshot.c comes along for the snapshot it fills.
 *
 * Feeds the input two ways to xrep_token_decode (user "fuzz@example.org"):
 * - as the token text itself, up to its first NUL (base64url, checksum and user checks);
 * - as the binary body of a token: version byte (the input's first byte), the user's crc32,
 *   the rest of the input, the crc32 of all that, base64url-encoded: so that mutations reach
 *   the mailbox entries instead of dying at the checksum.
 *
 * Invariants checked (besides ASan, UBSan and leak reports on the plugin's code, and
 * Dovecot's i_panic/i_assert, which abort):
 * - a failure leaves no snapshot and gives a reason;
 * - a decoded snapshot is what xrep-snapshot.h promises: names non-empty, unique, in strcmp
 *   order, found again by xrep_snapshot_find_name, GUIDs unique and found again by
 *   xrep_snapshot_find_guid;
 * - decode(encode(snapshot)) succeeds and gives the same mailboxes field by field.
 * Dovecot's data stack and pools live in Dovecot's uninstrumented library: an overflow
 * inside a data-stack frame shows only if it breaks one of these invariants. */
#include "lib.h"
#include "array.h"
#include "base64.h"
#include "buffer.h"
#include "crc32.h"
#include "str.h"
#include "xrep-snapshot.h"
#include "xrep-token.h"

#include <stdio.h>
#include <stdlib.h>

#define USER "fuzz@example.org"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_ASSERT(cond, what)                                                                    \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: invariant broken: %s (%s)\n", __FILE__, __LINE__, what,        \
                    #cond);                                                                        \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    lib_init();
    return 0;
}

static void check_snapshot(const struct xrep_snapshot *snap)
{
    const struct xrep_mailbox *boxes;
    unsigned int count;

    boxes = array_get(&snap->boxes, &count);
    FUZZ_ASSERT(array_count(&snap->by_guid) == count, "GUID index complete");
    for (unsigned int i = 0; i < count; i++) {
        FUZZ_ASSERT(boxes[i].vname && boxes[i].vname[0], "a name");
        FUZZ_ASSERT(i == 0 || strcmp(boxes[i - 1].vname, boxes[i].vname) < 0,
                    "names unique, in strcmp order");
        FUZZ_ASSERT(xrep_snapshot_find_name(snap, boxes[i].vname) == &boxes[i], "found by name");
        FUZZ_ASSERT(xrep_snapshot_find_guid(snap, boxes[i].guid) == &boxes[i], "found by GUID");
        FUZZ_ASSERT(boxes[i].verified_at >= 0, "verified_at not before the epoch");
    }
}

static void check_roundtrip(const struct xrep_snapshot *snap)
{
    string_t *text = t_str_new(256);
    struct xrep_snapshot *again;
    const char *reason = NULL;

    xrep_token_encode(snap, USER, text);
    FUZZ_ASSERT(xrep_token_decode(str_c(text), USER, &again, &reason) == XREP_TOKEN_OK,
                "an encoded snapshot decodes");
    const struct xrep_mailbox *a, *b;
    unsigned int na, nb;
    a = array_get(&snap->boxes, &na);
    b = array_get(&again->boxes, &nb);
    FUZZ_ASSERT(na == nb, "the same number of mailboxes");
    for (unsigned int i = 0; i < na; i++) {
        FUZZ_ASSERT(strcmp(a[i].vname, b[i].vname) == 0, "same name");
        FUZZ_ASSERT(guid_128_equals(a[i].guid, b[i].guid), "same GUID");
        FUZZ_ASSERT(a[i].uidvalidity == b[i].uidvalidity && a[i].uidnext == b[i].uidnext &&
                        a[i].modseq == b[i].modseq,
                    "same numbers");
        FUZZ_ASSERT(a[i].verified_at == b[i].verified_at, "same verification time");
        FUZZ_ASSERT(a[i].subscribed == b[i].subscribed, "same subscription");
    }
    xrep_snapshot_free(&again);
}

static void decode(const char *text)
{
    struct xrep_snapshot *snap = (struct xrep_snapshot *)text; /* must be reset */
    const char *reason = NULL;
    enum xrep_token_error e = xrep_token_decode(text, USER, &snap, &reason);
    if (e != XREP_TOKEN_OK) {
        FUZZ_ASSERT(e == XREP_TOKEN_MALFORMED || e == XREP_TOKEN_FOREIGN, "a known error");
        FUZZ_ASSERT(snap == NULL, "no snapshot on error");
        FUZZ_ASSERT(reason && reason[0], "a reason");
        return;
    }
    FUZZ_ASSERT(snap != NULL, "a snapshot");
    check_snapshot(snap);
    check_roundtrip(snap);
    xrep_snapshot_free(&snap);
    FUZZ_ASSERT(snap == NULL, "free clears the pointer");
}

static void put_u32be(buffer_t *b, uint32_t v)
{
    uint8_t x[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    buffer_append(b, x, sizeof(x));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    T_BEGIN
    {
        char *text = i_malloc(size + 1);
        memcpy(text, data, size);
        text[size] = '\0';
        decode(text);
        i_free(text);

        if (size > 0) {
            buffer_t *bin = t_buffer_create(size + 12);
            buffer_append_c(bin, data[0]);
            put_u32be(bin, crc32_str(USER));
            buffer_append(bin, data + 1, size - 1);
            put_u32be(bin, crc32_data(bin->data, bin->used));
            string_t *tok = t_str_new(bin->used * 4 / 3 + 8);
            base64url_encode(BASE64_ENCODE_FLAG_NO_PADDING, SIZE_MAX, bin->data, bin->used, tok);
            decode(str_c(tok));
        }
    }
    T_END;
    return 0;
}
