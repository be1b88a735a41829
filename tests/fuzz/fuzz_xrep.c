/* fuzz_xrep: the X-REPLICATE client parser (src/protocol/xrep.c) and what its callers read.
 *
 * Feeds the input twice as server bytes after the greeting: wrapped as
 * "* XREPLICATE <input>\r\n", and raw (multi-line replies, "* XREPLICATE ..." lines as a
 * server sends them). Both are framed (tb_framer) and parsed (tb_parse_response) response by
 * response as a connection does; a parse error ends the stream. Each value then goes where
 * store/xrep.c and sync/xr.c take it: UID sets through the store's UID-set parser (and the
 * flag changes applied to a base, as tb_xr_delta does: tb_flags_minus of REMOVE, ADD
 * appended, tb_flags_canon), names through tb_mbox_canon/tb_mbox_wire with '/' and '.' separators,
 * then tb_resp_clear.
 *
 * Invariants checked (besides ASan, UBSan and leak reports):
 * - a value only for an untagged XREPLICATE line, with every range xrep.h documents
 *   (fuzz_check_xrep in fuzz.h: guid, names, reason, numbers, UID-set grammar, flag lists),
 *   and a valid UID set parses to at least one and at most the UIDs it names;
 * - tb_xrep_unreadable() exactly for untagged XREPLICATE lines without a value;
 * - a canonical name is canonical again (tb_name_canon is idempotent for the separator it
 *   produces, '/');
 * - flags computed from a FLAGS line are canonical, hold every ADD flag but \Recent, and lose
 *   a REMOVE flag that is not also added. */
#include "fuzz.h"

#include "protocol/framer.h"
#include "util/flags.h"
#include "protocol/mboxname.h"

#include <strings.h>

/* Whether canonical list `set` holds `flag` (flags compare case-insensitively). */
static bool has_flag(const char *set, const char *flag, size_t n)
{
    for (const char *p = set; *p;) {
        size_t len = strcspn(p, " ");
        if (len == n && strncasecmp(p, flag, n) == 0)
            return true;
        p += len;
        while (*p == ' ')
            p++;
    }
    return false;
}

static void check_flags(const struct tb_xrep *x)
{
    static const char *const bases[] = {"", "\\Seen", "$Label1 \\Flagged", "\\Answered \\Seen"};
    for (size_t i = 0; i < sizeof(bases) / sizeof(*bases); i++) {
        char *kept = tb_flags_minus(bases[i], x->remove);
        size_t n = strlen(kept) + strlen(x->add) + 2;
        char *joined = malloc(n);
        if (!joined)
            abort();
        snprintf(joined, n, "%s %s", kept, x->add);
        char *now = tb_flags_canon(joined);
        char *again = tb_flags_canon(now);
        FUZZ_ASSERT(strcmp(now, again) == 0, "flags after a FLAGS line are canonical");
        for (const char *p = x->add; *p;) {
            size_t len = strcspn(p, " ");
            if (!(len == 7 && strncasecmp(p, "\\Recent", 7) == 0))
                FUZZ_ASSERT(has_flag(now, p, len), "every added flag is there");
            p += len + (p[len] == ' ');
        }
        for (const char *p = x->remove; *p;) {
            size_t len = strcspn(p, " ");
            if (!has_flag(x->add, p, len))
                FUZZ_ASSERT(!has_flag(now, p, len), "a removed flag is gone");
            p += len + (p[len] == ' ');
        }
        free(again);
        free(now);
        free(joined);
        free(kept);
    }
}

static void check_name(const char *wire)
{
    static const struct tb_ns spaces[] = {{"", '/', NULL}, {"", '.', NULL}, {"INBOX.", '.', NULL}};
    if (!wire)
        return;
    for (size_t i = 0; i < sizeof(spaces) / sizeof(*spaces); i++) {
        char *canon = tb_mbox_canon(&spaces[i], wire, NULL);
        if (!canon)
            continue;
        char *back = tb_mbox_wire(&spaces[i], canon, NULL);
        FUZZ_ASSERT(back != NULL, "a canonical name has a wire name on its own side");
        FUZZ_ASSERT(strcasecmp(wire, "INBOX") == 0 || strcmp(back, wire) == 0,
                    "wire -> canonical -> wire is the identity");
        char *again = tb_mbox_canon(&spaces[0], canon, NULL);
        FUZZ_ASSERT(again && strcmp(canon, again) == 0, "a canonical name is canonical");
        free(again);
        free(back);
        free(canon);
    }
}

static bool on_response(const char *p, size_t len)
{
    struct tb_resp resp;
    char err[160];
    if (tb_parse_response(p, len, 0, &resp, err, sizeof(err)) < 0)
        return false; /* the connection ends here */
    const struct tb_xrep *x = tb_xrep_of(&resp);
    char kw[16] = "";
    if (resp.kind == TB_RESP_UNTAGGED)
        tb_resp_untagged_keyword(&resp, kw, sizeof(kw));
    bool is_xrep_line = strcmp(kw, "XREPLICATE") == 0;
    FUZZ_ASSERT(tb_xrep_unreadable(&resp) == (is_xrep_line && !x),
                "unreadable exactly for an XREPLICATE line without a value");
    if (x) {
        fuzz_check_xrep(&resp, x);
        check_name(x->name);
        check_name(x->new_name);
        if (x->kind == TB_XREP_FLAGS)
            check_flags(x);
    }
    tb_resp_clear(&resp);
    return true;
}

static void frame_and_parse(const char *data, size_t size)
{
    struct tb_framer f;
    tb_framer_init(&f, 64u << 20, (uint64_t)4 << 30);
    tb_framer_feed(&f, data, size);
    const char *p;
    size_t len;
    while (tb_framer_next(&f, &p, &len) == 1 && on_response(p, len))
        ;
    tb_framer_free(&f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char head[] = "* XREPLICATE ";
    size_t hl = sizeof(head) - 1;
    char *wrapped = malloc(hl + size + 2);
    if (!wrapped)
        abort();
    memcpy(wrapped, head, hl);
    memcpy(wrapped + hl, data, size);
    memcpy(wrapped + hl + size, "\r\n", 2);
    frame_and_parse(wrapped, hl + size + 2);
    free(wrapped);

    char *raw = malloc(size ? size : 1);
    if (!raw)
        abort();
    memcpy(raw, data, size);
    frame_and_parse(raw, size);
    free(raw);
    return 0;
}
