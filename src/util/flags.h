/* Flag sets (system flags and keywords) and the 3-way merge of the sync contract.
 * A set is kept as a canonical string: sorted, space-separated, system flags in their
 * RFC 3501 spelling, \Recent dropped (it is session state, never replicated). Keywords
 * compare case-insensitively, as IMAP requires. */
#ifndef TWINBOX_UTIL_FLAGS_H
#define TWINBOX_UTIL_FLAGS_H

#include <stdbool.h>
#include <stddef.h>

/* Canonical form of an arbitrary space-separated flag list; malloc'd. */
char *tb_flags_canon(const char *list);
/* result = (base - removed_a - removed_b) + added_a + added_b, where added_x / removed_x
 * are x's changes against base: an add beats a concurrent remove. All canonical. */
char *tb_flags_merge(const char *base, const char *a, const char *b);
bool tb_flags_equal(const char *x, const char *y);
/* Flags in x that are not in y, canonical (for +FLAGS / -FLAGS stores). */
char *tb_flags_minus(const char *x, const char *y);

/* x + y, canonical. */
char *tb_flags_union(const char *x, const char *y);
/* The flags of `flags` a mailbox with these PERMANENTFLAGS can keep (perm canonical, without
 * "\\*"; keywords: "\\*" was listed); *dropped (may be NULL) is set when some were left out. */
char *tb_flags_storable(const char *flags, const char *perm, bool keywords, bool *dropped);

#endif
