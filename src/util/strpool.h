/* A string pool: strings stored end to end in blocks that never move, and lists that
 * repeat (flag lists) stored once. For many small strings that live and die together (a
 * delta's records, a pass's copies): one malloc per string costs 16 to 30 bytes more, and
 * 32 bytes for an empty or "\\Seen" list. A zeroed pool is empty; tb_strpool_free releases
 * every string it handed out. */
#ifndef TWINBOX_UTIL_STRPOOL_H
#define TWINBOX_UTIL_STRPOOL_H

#include <stddef.h>

struct tb_strpool_block;

struct tb_strpool {
    struct tb_strpool_block *blocks; /* newest first */
    char **slot;                     /* interned strings: open addressing, NULL empty */
    size_t n_interned, cap_slot;
};

/* A copy of s in the pool. */
char *tb_strpool_store(struct tb_strpool *p, const char *s);
/* The pool's one copy of s, however often it is asked for. */
char *tb_strpool_intern(struct tb_strpool *p, const char *s);
void tb_strpool_free(struct tb_strpool *p);

#endif
