/* PERMANENTFLAGS per mailbox (RFC 3501 7.1): which flags a mailbox keeps. A server without
 * keyword support (GNU mailutils imap4d) answers an APPEND or STORE naming a keyword with
 * BAD, which would fail the pass on every run; the flags it cannot keep are left out of
 * what is sent there, and stay recorded for the side that has them (sync/plan.c). */
#include "store/store_internal.h"

#include "util/flags.h"

#include <stdlib.h>
#include <string.h>

struct tb_store_perm {
    char *mailbox; /* wire name */
    char *flags;   /* canonical, "\*" left out */
    bool keywords; /* "\*" was listed */
};

/* A store sees a few hundred mailboxes at most per run: a list is enough. */
static struct tb_store_perm *find(struct tb_store *s, const char *mailbox)
{
    for (size_t i = 0; i < s->n_perm; i++)
        if (strcmp(s->perm[i].mailbox, mailbox) == 0)
            return &s->perm[i];
    return NULL;
}

void tb_store_perm_set(struct tb_store *s, const char *mailbox, const char *flags, bool keywords)
{
    struct tb_store_perm *p = find(s, mailbox);
    if (!p) {
        s->perm = tb_xrealloc(s->perm, (s->n_perm + 1) * sizeof(*s->perm));
        p = &s->perm[s->n_perm++];
        p->mailbox = tb_xstrdup(mailbox);
    } else {
        free(p->flags);
    }
    p->flags = tb_flags_canon(flags);
    p->keywords = keywords;
}

char *tb_store_perm_filter(struct tb_store *s, const char *mailbox, const char *flags,
                           bool *dropped)
{
    struct tb_store_perm *p = mailbox ? find(s, mailbox) : NULL;
    if (!p)
        return tb_flags_canon(flags);
    return tb_flags_storable(flags, p->flags, p->keywords, dropped);
}

void tb_store_perm_free(struct tb_store *s)
{
    for (size_t i = 0; i < s->n_perm; i++) {
        free(s->perm[i].mailbox);
        free(s->perm[i].flags);
    }
    free(s->perm);
    s->perm = NULL;
    s->n_perm = 0;
}
