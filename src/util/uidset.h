/* UID sets as sorted, disjoint ranges: what the server sends (VANISHED, MODIFIED, X-REPLICATE
 * sets) and what twinbox sends (STORE, EXPUNGE, FETCH).
 *
 * Memory is proportional to the number of ranges, never to the number of UIDs: a hostile
 * "1:4294967295" costs one range. Parsing is strict (RFC 3501 sequence-set of UIDs without
 * '*': nz-number, ':' and ','; a number above 2^32-1 is an error, not a wrapped value) and
 * can bound every UID by the mailbox's UIDNEXT, so a set naming UIDs the mailbox never
 * assigned is refused instead of silently trimmed.
 *
 * Rendering for commands splits a set into pieces that each fit a line budget (RFC 7162
 * section 4 recommends at most 8,000 octets per command line).
 *
 * Ownership: a set owns its range array; tb_uidset_free releases it. */
#ifndef TWINBOX_UTIL_UIDSET_H
#define TWINBOX_UTIL_UIDSET_H

#include "util/buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct tb_uidrange {
    uint32_t lo, hi; /* lo <= hi */
};

struct tb_uidset {
    struct tb_uidrange *r; /* sorted, disjoint and non-adjacent once normalized */
    size_t n, cap;
    bool dirty; /* ranges added since the last normalization */
};

void tb_uidset_init(struct tb_uidset *s);
void tb_uidset_free(struct tb_uidset *s);
void tb_uidset_clear(struct tb_uidset *s);
/* Adds lo:hi (either order). Cheap; the set is normalized on the next query. */
void tb_uidset_add_range(struct tb_uidset *s, uint32_t lo, uint32_t hi);
void tb_uidset_add(struct tb_uidset *s, uint32_t uid);
void tb_uidset_add_set(struct tb_uidset *s, const struct tb_uidset *other);
/* Sorts and merges overlapping or adjacent ranges. */
void tb_uidset_normalize(struct tb_uidset *s);

/* Parses text[0..len) and adds it to s. 0 ok; -1 malformed (err says why, s unchanged).
 * max_uid > 0: every UID must be <= max_uid, else -1 (a set beyond the mailbox's UIDNEXT).
 * At most 100,000 ranges per call: a longer set is refused (the framer already bounds the
 * line; this bounds the work). */
int tb_uidset_parse(struct tb_uidset *s, const char *text, size_t len, uint32_t max_uid, char *err,
                    size_t errlen);

bool tb_uidset_has(struct tb_uidset *s, uint32_t uid);
uint64_t tb_uidset_count(struct tb_uidset *s);
bool tb_uidset_empty(const struct tb_uidset *s);
/* Largest UID in the set, 0 when empty. */
uint32_t tb_uidset_max(struct tb_uidset *s);

/* Appends ranges from index *pos on as "a:b,c" to out, stopping before the piece would make
 * out longer than max_len bytes (at least one range is always written). *pos advances past
 * what was written. Returns the number of UIDs written. Usage:
 *   for (size_t pos = 0; pos < s.n;) { buf.len = 0; tb_uidset_render(&s, &pos, &buf, 7000);
 *   send(...); } */
uint64_t tb_uidset_render(struct tb_uidset *s, size_t *pos, struct tb_buf *out, size_t max_len);

#endif
