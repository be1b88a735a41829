/* Helpers shared by the fuzz targets: a failed invariant aborts (libFuzzer then saves the
 * input as a crash), inputs are copied into buffers of their exact size so ASan sees any
 * read past them, and the documented ranges of an X-REPLICATE value are checked in one
 * place for fuzz_response and fuzz_xrep. */
#ifndef TWINBOX_FUZZ_H
#define TWINBOX_FUZZ_H

#include "protocol/parse.h"
#include "protocol/xrep.h"
#include "store/store.h"

#include "util/uidset.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_ASSERT(cond, what)                                                                    \
    do {                                                                                           \
        if (!(cond))                                                                               \
            fuzz_fail(__FILE__, __LINE__, #cond, what);                                            \
    } while (0)

static inline void fuzz_fail(const char *file, int line, const char *cond, const char *what)
{
    fprintf(stderr, "%s:%d: invariant broken: %s (%s)\n", file, line, what, cond);
    abort();
}

/* Bugs the targets found are fixed in twinbox (or kept from libetpan by tb_etpan_safe and
 * tb_numbers_ok in protocol/strict.h); their reproducers are regression seeds in corpus/.
 * One libetpan leak stays suppressed (lsan.supp): see crashes/README. */

/* A malloc'd copy of the input up to its first NUL, NUL-terminated. */
static inline char *fuzz_cstr(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, 0, size);
    size_t n = nul ? (size_t)(nul - data) : size;
    char *s = malloc(n + 1);
    if (!s)
        abort();
    memcpy(s, data, n);
    s[n] = 0;
    return s;
}

/* Reads every byte so that ASan checks the whole range (results must not be optimised out). */
static inline void fuzz_touch(const void *p, size_t n)
{
    const unsigned char *b = p;
    unsigned h = 0;
    for (size_t i = 0; i < n; i++)
        h = h * 31 + b[i];
    __asm__ __volatile__("" : : "r"(h)); /* h is used: the loop stays */
}

static inline void fuzz_touch_str(const char *s)
{
    if (s)
        fuzz_touch(s, strlen(s) + 1);
}

static inline bool fuzz_is_atom_char(unsigned char c)
{
    return c > 0x20 && c < 0x7f && !strchr("(){%*\"\\]", c);
}

/* The UID set grammar tb_xrep promises: nz-number [":" nz-number] *("," ...), every number
 * below 2^32; *count receives the number of UIDs it names (ranges counted inclusively, a UID
 * named twice counts twice), *ranges the number of items. */
static inline bool fuzz_xrep_uidset_ok(const char *s, uint64_t *count, size_t *ranges)
{
    *count = 0;
    *ranges = 0;
    for (;;) {
        uint64_t v[2] = {0, 0};
        int k = 0;
        for (;;) {
            if (*s < '1' || *s > '9')
                return false;
            while (*s >= '0' && *s <= '9') {
                v[k] = v[k] * 10 + (uint64_t)(*s++ - '0');
                if (v[k] > UINT32_MAX)
                    return false;
            }
            if (k == 1 || *s != ':')
                break;
            s++;
            k = 1;
        }
        if (k == 0)
            v[1] = v[0];
        *count += (v[0] > v[1] ? v[0] - v[1] : v[1] - v[0]) + 1;
        ++*ranges;
        if (*s == 0)
            return true;
        if (*s++ != ',')
            return false;
    }
}

/* flag-list contents as kept by tb_xrep: empty, or flags ["\"] 1*ATOM-CHAR separated by one
 * space. */
static inline bool fuzz_xrep_flags_ok(const char *s)
{
    if (!*s)
        return true;
    for (;;) {
        if (*s == '\\')
            s++;
        if (!fuzz_is_atom_char((unsigned char)*s))
            return false;
        while (fuzz_is_atom_char((unsigned char)*s))
            s++;
        if (*s == 0)
            return true;
        if (*s++ != ' ')
            return false;
    }
}

/* Parses a UID set as the store parses a server's (tb_uidset_parse): 0 and the number of
 * distinct UIDs in *distinct, or -1. */
static inline int fuzz_parse_uidset(const char *text, uint64_t *distinct)
{
    struct tb_uidset s;
    tb_uidset_init(&s);
    int rc = tb_uidset_parse(&s, text, strlen(text), 0, NULL, 0);
    *distinct = rc == 0 ? tb_uidset_count(&s) : 0;
    tb_uidset_free(&s);
    return rc;
}

/* Everything protocol/xrep.h documents about a parsed value, and that its UID set parses
 * as twinbox's store parses it (to no more UIDs than the set names, at least one). */
static inline void fuzz_check_xrep(const struct tb_resp *r, const struct tb_xrep *x)
{
    char kw[16];
    FUZZ_ASSERT(r->kind == TB_RESP_UNTAGGED, "an X-REPLICATE value on an untagged response");
    tb_resp_untagged_keyword(r, kw, sizeof(kw));
    /* libetpan skips extra blanks after "*", tb_resp_untagged_keyword does not (then says "";
     * harmless: parse.c refuses a "*  " line that did not parse). */
    FUZZ_ASSERT(strcmp(kw, "XREPLICATE") == 0 || (r->raw_len > 2 && r->raw[2] == ' '),
                "an X-REPLICATE value on an XREPLICATE line");
    FUZZ_ASSERT(!tb_xrep_unreadable(r), "a parsed line is not unreadable");
    FUZZ_ASSERT(x->kind <= TB_XREP_POSITION, "kind in range");
    FUZZ_ASSERT(memchr(x->guid, 0, sizeof(x->guid)) != NULL, "guid NUL-terminated");
    size_t glen = strlen(x->guid);
    if (x->kind == TB_XREP_POSITION) {
        FUZZ_ASSERT(glen == 0, "POSITION has no guid");
        FUZZ_ASSERT(x->token && x->token[0], "POSITION token never empty");
    } else {
        FUZZ_ASSERT(glen == 32, "guid of 32 digits");
        for (size_t i = 0; i < 32; i++)
            FUZZ_ASSERT((x->guid[i] >= '0' && x->guid[i] <= '9') ||
                            (x->guid[i] >= 'a' && x->guid[i] <= 'f'),
                        "guid lower-case hex");
        FUZZ_ASSERT(!x->token, "token only for POSITION");
    }
    bool named =
        x->kind == TB_XREP_MAILBOX || x->kind == TB_XREP_STATUS || x->kind == TB_XREP_RESYNC;
    bool has_uids =
        x->kind == TB_XREP_APPENDED || x->kind == TB_XREP_EXPUNGED || x->kind == TB_XREP_FLAGS;
    FUZZ_ASSERT(named == (x->name != NULL), "name exactly for MAILBOX, STATUS, RESYNC");
    FUZZ_ASSERT(!x->name || x->name[0], "names never empty");
    FUZZ_ASSERT((x->kind == TB_XREP_MAILBOX && x->event == TB_XREP_RENAMED) ==
                    (x->new_name != NULL),
                "new_name exactly for RENAMED");
    FUZZ_ASSERT(!x->new_name || x->new_name[0], "new name never empty");
    FUZZ_ASSERT(x->kind == TB_XREP_MAILBOX ? x->event <= TB_XREP_UNSUBSCRIBED : x->event == 0,
                "event only for MAILBOX");
    FUZZ_ASSERT((x->kind == TB_XREP_RESYNC) == (x->reason != NULL), "reason exactly for RESYNC");
    FUZZ_ASSERT(!x->reason || x->reason[0], "reason never empty");
    for (const char *p = x->reason; p && *p; p++)
        FUZZ_ASSERT(fuzz_is_atom_char((unsigned char)*p) && !(*p >= 'a' && *p <= 'z'),
                    "reason: an upper-cased atom");
    if (x->kind == TB_XREP_STATUS) {
        FUZZ_ASSERT(x->uidvalidity > 0 && x->uidnext > 0, "STATUS numbers are nz-numbers");
        FUZZ_ASSERT(x->highestmodseq <= INT64_MAX, "HIGHESTMODSEQ below 2^63");
    } else {
        FUZZ_ASSERT(!x->uidvalidity && !x->uidnext && !x->highestmodseq && !x->subscribed,
                    "STATUS fields only for STATUS");
    }
    FUZZ_ASSERT(has_uids == (x->uids != NULL), "uids exactly for APPENDED, EXPUNGED, FLAGS");
    FUZZ_ASSERT((x->add != NULL) == (x->remove != NULL) &&
                    (x->kind == TB_XREP_FLAGS) == (x->add != NULL),
                "add/remove exactly for FLAGS");
    if (x->kind == TB_XREP_FLAGS) {
        FUZZ_ASSERT(x->modseq >= 1 && x->modseq <= INT64_MAX, "FLAGS MODSEQ in 1..2^63-1");
        FUZZ_ASSERT(fuzz_xrep_flags_ok(x->add), "ADD flags well-formed");
        FUZZ_ASSERT(fuzz_xrep_flags_ok(x->remove), "REMOVE flags well-formed");
    } else {
        FUZZ_ASSERT(x->modseq == 0, "MODSEQ only for FLAGS");
    }
    fuzz_touch_str(x->name);
    fuzz_touch_str(x->new_name);
    fuzz_touch_str(x->token);
    if (!x->uids)
        return;
    uint64_t count, distinct;
    size_t ranges;
    FUZZ_ASSERT(fuzz_xrep_uidset_ok(x->uids, &count, &ranges), "UID set as documented");
    /* util/uidset.h refuses more than 100,000 ranges in one set: a bound, not a bug. */
    if (ranges > 100000)
        return;
    FUZZ_ASSERT(fuzz_parse_uidset(x->uids, &distinct) == 0, "a valid UID set parses");
    FUZZ_ASSERT(distinct <= count, "no more UIDs than the set names");
    FUZZ_ASSERT(distinct > 0, "at least one UID");
}

#endif
