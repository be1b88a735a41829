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

void tb_copy_unknown_add(struct tb_copy *cp, struct tb_msg_info *m)
{
    struct tb_copy_unknown *u = &cp->unknown;
    if (u->n == u->cap) {
        u->cap = u->cap ? u->cap * 2 : 16;
        u->m = tb_xrealloc(u->m, u->cap * sizeof(*u->m));
    }
    u->m[u->n++] = *m;
    m->flags = m->ident = NULL; /* moved */
}

void tb_copy_unknown_free(struct tb_copy_unknown *u)
{
    for (size_t i = 0; i < u->n; i++)
        tb_msg_info_clear(&u->m[i]);
    free(u->m);
    memset(u, 0, sizeof(*u));
}

/* The same message: same identity headers and INTERNALDATE, and the same size unless the
 * headers hold a Message-ID (servers that add headers of their own change the size). With
 * `loose`, for servers that ignore the INTERNALDATE given to APPEND: the identity headers
 * alone, when they hold a Message-ID. */
static bool same_message(const struct tb_msg_info *src, const struct tb_msg_info *dst, bool loose)
{
    const char *a = src->ident ? src->ident : "", *b = dst->ident ? dst->ident : "";
    bool msgid = strcasestr(a, "message-id:") != NULL;
    if (strcmp(a, b) != 0)
        return false;
    if (loose)
        return msgid;
    return src->internaldate == dst->internaldate && (src->size == dst->size || msgid);
}

/* The lowest unused new message that is m's copy, or -1. */
static long find_copy(const struct tb_copy *cp, const struct tb_delta *found, const bool *used,
                      const struct tb_msg_info *m, bool loose)
{
    long best = -1;
    for (size_t j = 0; j < found->n_msgs; j++)
        if (!used[j] && found->msgs[j].uid >= cp->uid_floor &&
            same_message(m, &found->msgs[j], loose) &&
            (best < 0 || found->msgs[j].uid < found->msgs[best].uid))
            best = (long)j;
    return best;
}

/* Records the pair and sets the flags the server dropped (imap4d with maildir ignores
 * the flags given to APPEND). */
static void found_copy(struct tb_copy *cp, const struct tb_msg_info *m, const struct tb_msg_info *d)
{
    cp->done(cp->ud, m->uid, d->uid, m->flags);
    char *want = tb_store_perm_filter(cp->dst, cp->mailbox, m->flags, NULL);
    if (!tb_flags_equal(want, d->flags ? d->flags : "")) {
        struct tb_uidset one;
        tb_uidset_init(&one);
        tb_uidset_add(&one, d->uid);
        tb_store_flags(cp->dst, &one, '=', want, 0, NULL);
        tb_uidset_free(&one);
    }
    free(want);
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
    size_t n = cp->unknown.n, missing = 0;
    bool *used = tb_xcalloc(found.n_msgs + 1, sizeof(bool));
    bool *done = tb_xcalloc(n + 1, sizeof(bool));
    /* Exact matches first, so a loose one never takes another copy's message. */
    for (int loose = 0; loose < 2 && !found.unreadable; loose++) {
        for (size_t i = 0; i < n; i++) {
            if (done[i])
                continue;
            long best = find_copy(cp, &found, used, &cp->unknown.m[i], loose);
            if (best < 0)
                continue;
            used[best] = done[i] = true;
            found_copy(cp, &cp->unknown.m[i], &found.msgs[best]);
        }
    }
    for (size_t i = 0; i < n; i++)
        missing += !done[i];
    free(used);
    free(done);
    if (missing)
        tb_store_fail(cp->dst, TB_ERR_PROTOCOL,
                      "mailbox %s: %zu of %zu copies not found after APPEND (the server has no "
                      "UIDPLUS%s%s); the next run pairs them by identity",
                      cp->mailbox, missing, n, found.unreadable ? ": " : "",
                      found.unreadable ? found.unreadable : "");
    tb_delta_clear(&found);
    return missing ? -1 : tb_store_wait(both, 1);
}
