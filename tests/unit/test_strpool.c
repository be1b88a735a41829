/* The string pool (util/strpool.c): stored strings stay where they are while the pool
 * grows, interned ones are one copy each, a string larger than a block gets its own. */
#include "tap.h"
#include "util/strpool.h"

#include <stdlib.h>

int main(void)
{
    struct tb_strpool p = {0};
    char *first = tb_strpool_store(&p, "first");
    char *keep[3000];
    char buf[32];
    int ok = 1;
    for (int i = 0; i < 3000; i++) {
        snprintf(buf, sizeof(buf), "identity %d", i);
        keep[i] = tb_strpool_store(&p, buf);
    }
    for (int i = 0; i < 3000; i++) {
        snprintf(buf, sizeof(buf), "identity %d", i);
        ok &= strcmp(keep[i], buf) == 0;
    }
    CHECK(ok && strcmp(first, "first") == 0, "3,000 stored strings stay put as blocks are added");
    char *seen = tb_strpool_intern(&p, "\\Seen");
    int same = 1;
    for (int i = 0; i < 1000; i++) {
        same &= tb_strpool_intern(&p, i % 2 ? "\\Seen" : "\\Seen \\Flagged") ==
                (i % 2 ? seen : tb_strpool_intern(&p, "\\Seen \\Flagged"));
        snprintf(buf, sizeof(buf), "$kw%d", i);
        same &= strcmp(tb_strpool_intern(&p, buf), buf) == 0;
    }
    CHECK(same && p.n_interned == 1002, "interned: one copy each (%zu)", p.n_interned);
    CHECK(*tb_strpool_intern(&p, "") == 0 && tb_strpool_intern(&p, "") == tb_strpool_intern(&p, ""),
          "the empty list interned once");
    char *big = malloc(300000);
    memset(big, 'x', 299999);
    big[299999] = 0;
    char *b = tb_strpool_store(&p, big);
    char *after = tb_strpool_store(&p, "after");
    CHECK(strcmp(b, big) == 0 && strcmp(after, "after") == 0 &&
              strcmp(keep[2999], "identity 2999") == 0,
          "a 300 KB string in a block of its own, the current block still used");
    free(big);
    tb_strpool_free(&p);
    CHECK(p.blocks == NULL && p.slot == NULL, "freed: empty again");
    CHECK(strcmp(tb_strpool_store(&p, "again"), "again") == 0, "reusable after free");
    tb_strpool_free(&p);
    return tap_done();
}
