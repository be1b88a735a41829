/* Copies to a server without UIDPLUS: APPEND says nothing about the new UID, so after the
 * batch the destination's new messages (UID at or above its UIDNEXT before the batch) are
 * listed with their identity and each copy is paired with the lowest unused one that has
 * the same identity. Recording a copy without its UID would leave a message the next run
 * copies back (a duplicate on every run); so a copy that cannot be found fails the pass,
 * and its intent (recorded before the batch) lets the next run pair it by identity. */
#include "store/copy_internal.h"
#include "store/fetch.h"
#include "store/store_internal.h"
#include "util/flags.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

void tb_copy_unknown_add(struct tb_copy *cp, const struct tb_msg_info *m, size_t len)
{
    struct tb_copy_unknown *u = &cp->unknown;
    if (u->n == u->cap) {
        u->cap = u->cap ? u->cap * 2 : 16;
        u->m = tb_xrealloc(u->m, u->cap * sizeof(*u->m));
    }
    struct tb_msg_info *c = &u->m[u->n++];
    *c = *m;
    c->flags = tb_xstrdup(m->flags ? m->flags : "");
    c->ident = m->ident ? tb_xstrdup(m->ident) : NULL;
    (void)len;
}

void tb_copy_unknown_free(struct tb_copy_unknown *u)
{
    for (size_t i = 0; i < u->n; i++)
        tb_msg_info_clear(&u->m[i]);
    free(u->m);
    memset(u, 0, sizeof(*u));
}

/* The same message: same identity headers and INTERNALDATE, and the same size unless the
 * headers hold a Message-ID (servers that add headers of their own change the size). */
static bool same_message(const struct tb_msg_info *src, const struct tb_msg_info *dst)
{
    const char *a = src->ident ? src->ident : "", *b = dst->ident ? dst->ident : "";
    if (strcmp(a, b) != 0 || src->internaldate != dst->internaldate)
        return false;
    return src->size == dst->size || strcasestr(a, "message-id:") != NULL;
}

int tb_copy_identify(struct tb_copy *cp)
{
    struct tb_delta found;
    tb_store_fetch_from(cp->dst, cp->mailbox, cp->uid_floor, &found);
    struct tb_store *both[1] = {cp->dst};
    if (tb_store_wait(both, 1) < 0) {
        tb_delta_clear(&found);
        return -1;
    }
    bool *used = tb_xcalloc(found.n_msgs + 1, sizeof(bool));
    size_t missing = 0;
    for (size_t i = 0; i < cp->unknown.n; i++) {
        const struct tb_msg_info *m = &cp->unknown.m[i];
        long best = -1;
        for (size_t j = 0; j < found.n_msgs; j++)
            if (!used[j] && found.msgs[j].uid >= cp->uid_floor && same_message(m, &found.msgs[j]) &&
                (best < 0 || found.msgs[j].uid < found.msgs[best].uid))
                best = (long)j;
        if (best < 0 || found.unreadable) {
            missing++;
            continue;
        }
        used[best] = true;
        const struct tb_msg_info *d = &found.msgs[best];
        cp->done(cp->ud, m->uid, d->uid, m->flags);
        /* Some servers drop the flags given to APPEND (imap4d with maildir): set them. */
        bool dropped = false;
        char *want = tb_store_perm_filter(cp->dst, cp->mailbox, m->flags, &dropped);
        if (!tb_flags_equal(want, d->flags ? d->flags : "")) {
            struct tb_uidset one;
            tb_uidset_init(&one);
            tb_uidset_add(&one, d->uid);
            tb_store_flags(cp->dst, &one, '=', want, 0, NULL);
            tb_uidset_free(&one);
        }
        free(want);
    }
    free(used);
    if (missing)
        tb_store_fail(cp->dst, TB_ERR_PROTOCOL,
                      "mailbox %s: %zu of %zu copies not found after APPEND (the server has no "
                      "UIDPLUS%s%s); the next run pairs them by identity",
                      cp->mailbox, missing, cp->unknown.n, found.unreadable ? ": " : "",
                      found.unreadable ? found.unreadable : "");
    tb_delta_clear(&found);
    return missing ? -1 : tb_store_wait(both, 1);
}
