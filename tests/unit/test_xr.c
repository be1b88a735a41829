/* X-REPLICATE sections turned into the engine's deltas (sync/xr.c): base + ADD - REMOVE,
 * lookups by either side's UID, and the cases that must fall back to a SELECT. */
#include "protocol/xrep.h"
#include "store/store.h"
#include "sync/xr.h"
#include "tap.h"

#include <stdlib.h>

static void flagchg(struct tb_xrep_section *s, uint32_t uid, uint64_t modseq, const char *add,
                    const char *rem)
{
    s->flags = realloc(s->flags, (s->n_flags + 1) * sizeof(*s->flags));
    struct tb_xrep_flagchg *f = &s->flags[s->n_flags++];
    tb_uidset_init(&f->uids);
    tb_uidset_add(&f->uids, uid);
    f->modseq = modseq;
    f->add = strdup(add);
    f->remove = strdup(rem);
}

static const struct tb_msg_info *find(const struct tb_delta *d, uint32_t uid)
{
    for (size_t i = 0; i < d->n_msgs; i++)
        if (d->msgs[i].uid == uid)
            return &d->msgs[i];
    return NULL;
}

static void section_free(struct tb_xrep_section *s)
{
    struct tb_xrep_reply r = {0};
    r.sec = s;
    r.n_sec = 1;
    tb_xrep_reply_clear(&r); /* frees s and what it owns */
}

static struct tb_xrep_section *section(void)
{
    struct tb_xrep_section *s = calloc(1, sizeof(*s));
    s->closed = true;
    s->uidvalidity = 7;
    s->uidnext = 20;
    s->highestmodseq = 99;
    return s;
}

int main(void)
{
    /* pairs sorted by uid a; side b's UIDs in another order */
    struct tb_state_msg pairs[] = {
        {{1, 13}, (char *)"\\Seen"},
        {{2, 11}, (char *)"$Work \\Flagged \\Seen"},
        {{3, 12}, (char *)""},
    };

    struct tb_xrep_section *s = section();
    flagchg(s, 1, 50, "\\Flagged", "\\Seen");
    flagchg(s, 2, 51, "$Home", "$work \\Draft"); /* keyword case, a remove never set */
    flagchg(s, 3, 52, "\\Answered \\Answered", "");
    flagchg(s, 9, 53, "\\Seen", ""); /* expunged too */
    tb_uidset_add(&s->expunged, 4);
    tb_uidset_add(&s->expunged, 9);
    struct tb_delta d;
    CHECK(tb_xr_delta(s, 0, pairs, 3, &d), "side a: section with flags and expunges is usable");
    CHECK(d.uidvalidity == 7 && d.uidnext == 20 && d.highestmodseq == 99 && !d.full,
          "numbers from the STATUS line, not a full listing");
    CHECK(d.n_msgs == 3, "one message per changed UID, none for an expunged one");
    CHECK_STR(find(&d, 1)->flags, "\\Flagged", "base \\Seen + \\Flagged - \\Seen");
    CHECK_STR(find(&d, 2)->flags, "$Home \\Flagged \\Seen", "keywords compare case-insensitively");
    CHECK_STR(find(&d, 3)->flags, "\\Answered", "duplicates collapse");
    CHECK(find(&d, 2)->modseq == 51, "MODSEQ kept per message");
    CHECK(tb_uidset_count(&d.vanished) == 2 && tb_uidset_has(&d.vanished, 4) &&
              tb_uidset_has(&d.vanished, 9),
          "expunged UIDs vanish");
    tb_delta_clear(&d);
    section_free(s);

    s = section();
    flagchg(s, 12, 60, "\\Deleted", "");
    flagchg(s, 13, 61, "", "\\Seen");
    CHECK(tb_xr_delta(s, 1, pairs, 3, &d), "side b: looked up by uid b");
    CHECK_STR(find(&d, 12)->flags, "\\Deleted", "pair (3,12)");
    CHECK_STR(find(&d, 13)->flags, "", "pair (1,13) loses \\Seen");
    tb_delta_clear(&d);
    section_free(s);

    s = section();
    flagchg(s, 5, 60, "\\Seen", "");
    CHECK(!tb_xr_delta(s, 0, pairs, 3, &d) && d.n_msgs == 0 && !d.msgs,
          "a UID the state never paired: no delta (needs SELECT)");
    section_free(s);

    s = section();
    tb_uidset_add(&s->appended, 19);
    CHECK(!tb_xr_delta(s, 0, pairs, 3, &d), "new messages: their bodies need a SELECT anyway");
    section_free(s);

    s = section();
    s->resync = strdup("EXPIRED");
    CHECK(!tb_xr_delta(s, 0, pairs, 3, &d), "RESYNC: no delta");
    section_free(s);

    s = section();
    s->closed = false;
    CHECK(!tb_xr_delta(s, 0, pairs, 3, &d), "a section without its STATUS line: no delta");
    section_free(s);

    s = section();
    CHECK(tb_xr_delta(s, 1, pairs, 3, &d) && d.n_msgs == 0 && tb_uidset_empty(&d.vanished),
          "no change reported: an empty delta, usable");
    tb_delta_clear(&d);
    section_free(s);

    struct tb_xrep_reply r = {0};
    r.sec = calloc(8, sizeof(*r.sec));
    r.n_sec = 8;
    for (int i = 0; i < 8; i++) {
        char n[8];
        snprintf(n, sizeof(n), "M%d", i);
        r.sec[i].name = strdup(n);
        r.sec[i].resync = i == 3 ? NULL : strdup(i == 7 ? "UNREADABLE" : "EXPIRED");
        r.sec[i].closed = i != 7; /* M7: RESYNC without STATUS, reported by the engine */
    }
    char *why = tb_xr_resync_summary(&r);
    CHECK_STR(why, "M0 EXPIRED, M1 EXPIRED, M2 EXPIRED, M4 EXPIRED, M5 EXPIRED and 1 more",
              "summary names five and counts the rest, not the unreadable one");
    free(why);
    tb_xrep_reply_clear(&r);
    const struct tb_ns dot = {"", '.', NULL};
    r.ev = calloc(1, sizeof(*r.ev));
    r.n_ev = 1;
    r.ev[0].event = TB_XREP_RENAMED;
    r.ev[0].name = strdup("Old.Sub");
    r.ev[0].new_name = strdup("New.Sub");
    CHECK(tb_xr_event(&r, &dot, TB_XREP_RENAMED, "Old/Sub"), "rename of the old name");
    CHECK(!tb_xr_event(&r, &dot, TB_XREP_RENAMED, "New/Sub"), "the new name is not the old");
    CHECK(!tb_xr_event(&r, &dot, TB_XREP_DELETED, "Old/Sub"), "a rename is no delete");
    char *to = tb_xr_renamed_to(&r, &dot, "Old/Sub");
    CHECK_STR(to, "New/Sub", "the new name, canonical");
    CHECK(to && strcmp(to, "Other") != 0, "not to another name");
    free(to);
    CHECK(tb_xr_renamed_to(&r, &dot, "New/Sub") == NULL, "nothing was renamed from the new name");
    CHECK(tb_xr_resync_summary(&r) == NULL, "nothing to fall back for");
    tb_xrep_reply_clear(&r);
    return tap_done();
}
