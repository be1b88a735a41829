#include "util/uidmap.h"

#include "util/buf.h"

#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

/* The per-process seed: random, so that which UIDs collide cannot be known in advance. A
 * failed getrandom (no entropy yet, a seccomp filter) leaves a fixed seed: still correct,
 * only predictable. */
uint32_t tb_hash_seed(void)
{
    static uint32_t s;
    static bool have;
    if (!have) {
        uint32_t r = 0;
        if (getrandom(&r, sizeof(r), GRND_NONBLOCK) != (ssize_t)sizeof(r))
            r = 0x6a09e667u;
        s = r | 1;
        have = true;
    }
    return s;
}

uint32_t tb_hash_str(const char *s)
{
    uint32_t h = 2166136261u ^ tb_hash_seed();
    for (const char *c = s; *c; c++)
        h = (h ^ (unsigned char)*c) * 16777619u;
    return h;
}

/* A 32-bit finalizer (xorshift-multiply rounds) over the seeded key: every input bit
 * affects the low bits the table uses. */
static size_t hash(uint32_t uid, size_t mask)
{
    uint32_t h = uid ^ tb_hash_seed();
    h ^= h >> 16;
    h *= 0x7feb352du;
    h ^= h >> 15;
    h *= 0x846ca68bu;
    h ^= h >> 16;
    return (size_t)h & mask;
}

void tb_uidmap_init(struct tb_uidmap *m)
{
    memset(m, 0, sizeof(*m));
}

void tb_uidmap_free(struct tb_uidmap *m)
{
    free(m->slot);
    memset(m, 0, sizeof(*m));
}

void tb_uidmap_clear(struct tb_uidmap *m)
{
    if (m->slot)
        memset(m->slot, 0, m->cap * sizeof(*m->slot));
    m->n = 0;
}

/* The slot holding uid, or the empty slot where it would go. The table is never full. */
static struct tb_uidmap_slot *probe(const struct tb_uidmap *m, uint32_t uid)
{
    size_t mask = m->cap - 1;
    for (size_t i = hash(uid, mask);; i = (i + 1) & mask) {
        struct tb_uidmap_slot *s = &m->slot[i];
        if (!s->idx1 || s->uid == uid)
            return s;
    }
}

static void grow(struct tb_uidmap *m)
{
    struct tb_uidmap old = *m;
    m->cap = old.cap ? old.cap * 2 : 64;
    m->slot = tb_xcalloc(m->cap, sizeof(*m->slot));
    for (size_t i = 0; i < old.cap; i++)
        if (old.slot[i].idx1)
            *probe(m, old.slot[i].uid) = old.slot[i];
    free(old.slot);
}

void tb_uidmap_put(struct tb_uidmap *m, uint32_t uid, size_t idx)
{
    if (idx >= UINT32_MAX)
        abort(); /* not reached: see uidmap.h */
    if ((m->n + 1) * 2 > m->cap)
        grow(m);
    struct tb_uidmap_slot *s = probe(m, uid);
    if (!s->idx1)
        m->n++;
    s->uid = uid;
    s->idx1 = (uint32_t)idx + 1;
}

bool tb_uidmap_get(const struct tb_uidmap *m, uint32_t uid, size_t *idx)
{
    if (!m->n)
        return false;
    const struct tb_uidmap_slot *s = probe(m, uid);
    if (!s->idx1)
        return false;
    *idx = s->idx1 - 1;
    return true;
}
