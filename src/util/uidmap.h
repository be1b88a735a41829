/* A map from UID (uint32) to an array index (size_t): what finds "the record of this UID"
 * in O(1) where a linear search over every message would make a 100,000-message mailbox
 * quadratic.
 *
 * Open addressing with linear probing in a power-of-two table kept at most half full.
 * Keys come from a server and are untrusted: the hash is seeded per process from the
 * kernel's randomness, so a server cannot choose UIDs that all collide. Any uint32 is a
 * valid key (0 included).
 *
 * Ownership: the map owns its table; tb_uidmap_free releases it. A zeroed map is empty. */
#ifndef TWINBOX_UTIL_UIDMAP_H
#define TWINBOX_UTIL_UIDMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* 8 bytes: a delta's map of 100,000 UIDs has 262,144 slots. */
struct tb_uidmap_slot {
    uint32_t uid;
    uint32_t idx1; /* index + 1; 0: the slot is empty */
};

struct tb_uidmap {
    struct tb_uidmap_slot *slot;
    size_t n, cap; /* entries, slots (0 or a power of two) */
};

void tb_uidmap_init(struct tb_uidmap *m);
void tb_uidmap_free(struct tb_uidmap *m);
/* Forgets every entry, keeps the table. */
void tb_uidmap_clear(struct tb_uidmap *m);
/* Maps uid to idx (replacing an earlier index of the same uid). idx < UINT32_MAX (an index
 * into an array in memory: 4 billion records would not fit); a larger one aborts. */
void tb_uidmap_put(struct tb_uidmap *m, uint32_t uid, size_t idx);
/* The index of uid into *idx: true when present. */
bool tb_uidmap_get(const struct tb_uidmap *m, uint32_t uid, size_t *idx);

/* The per-process random seed the map hashes with, for other tables keyed by what a
 * server chose (never 0). */
uint32_t tb_hash_seed(void);
/* FNV-1a of a NUL-terminated string from the seeded basis: for tables keyed by strings a
 * server chose (flag lists, keywords). */
uint32_t tb_hash_str(const char *s);

#endif
