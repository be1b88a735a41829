#include "sync/xr.h"

#include "protocol/xrep.h"
#include "sync/flags.h"
#include "sync/names.h"
#include "util/buf.h"

#include <stdlib.h>
#include <string.h>

/* Index of the first event of that kind whose (old) name is `canon`, or -1. */
static long find_event(const struct tb_xrep_reply *r, char sep, int event, const char *canon)
{
    for (size_t i = 0; i < r->n_ev; i++) {
        if (r->ev[i].event != event)
            continue;
        char *a = tb_name_canon(r->ev[i].name, sep);
        bool hit = strcmp(a, canon) == 0;
        free(a);
        if (hit)
            return (long)i;
    }
    return -1;
}

bool tb_xr_event(const struct tb_xrep_reply *r, char sep, int event, const char *canon)
{
    return find_event(r, sep, event, canon) >= 0;
}

char *tb_xr_renamed_to(const struct tb_xrep_reply *r, char sep, const char *canon)
{
    long i = find_event(r, sep, TB_XREP_RENAMED, canon);
    return i >= 0 && r->ev[i].new_name ? tb_name_canon(r->ev[i].new_name, sep) : NULL;
}

/* Pairs are sorted by uid a; side b looks up through an index sorted by uid b. */
static const struct tb_state_msg *g_pairs;

static int cmp_by_b(const void *x, const void *y)
{
    uint32_t a = g_pairs[*(const size_t *)x].uid[1], b = g_pairs[*(const size_t *)y].uid[1];
    return a < b ? -1 : a > b;
}

static const struct tb_state_msg *paired(const struct tb_state_msg *pairs, const size_t *by_b,
                                         size_t n, int side, uint32_t uid)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        uint32_t u = side ? pairs[by_b[mid]].uid[1] : pairs[mid].uid[0];
        if (u < uid)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo >= n)
        return NULL;
    const struct tb_state_msg *p = side ? &pairs[by_b[lo]] : &pairs[lo];
    return p->uid[side] == uid ? p : NULL;
}

/* The server sends UID sets ascending (man/twinbox-xreplicate.7). */
static bool expunged(const struct tb_xrep_section *sec, uint32_t uid)
{
    size_t lo = 0, hi = sec->n_expunged;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (sec->expunged[mid] < uid)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < sec->n_expunged && sec->expunged[lo] == uid;
}

bool tb_xr_delta(const struct tb_xrep_section *sec, int side, const struct tb_state_msg *pairs,
                 size_t n_pairs, struct tb_delta *out)
{
    memset(out, 0, sizeof(*out));
    if (!sec->closed || sec->resync || sec->n_appended)
        return false;
    size_t *by_b = NULL;
    if (side == 1 && sec->n_flags && n_pairs) {
        by_b = tb_xcalloc(n_pairs, sizeof(size_t));
        for (size_t i = 0; i < n_pairs; i++)
            by_b[i] = i;
        g_pairs = pairs; /* single-threaded; qsort has no context argument */
        qsort(by_b, n_pairs, sizeof(size_t), cmp_by_b);
    }
    out->uidvalidity = sec->uidvalidity;
    out->uidnext = sec->uidnext;
    out->highestmodseq = sec->highestmodseq;
    bool ok = true;
    for (size_t i = 0; i < sec->n_flags && ok; i++) {
        const struct tb_xrep_flagchg *f = &sec->flags[i];
        if (expunged(sec, f->uid))
            continue; /* gone: its last flags do not matter */
        const struct tb_state_msg *pm = paired(pairs, by_b, n_pairs, side, f->uid);
        if (!pm) {
            ok = false;
            break;
        }
        char *kept = tb_flags_minus(pm->flags, f->remove);
        struct tb_buf b;
        tb_buf_init(&b);
        tb_buf_printf(&b, "%s %s", kept, f->add);
        free(kept);
        if (out->n_msgs == out->cap_msgs) {
            out->cap_msgs = out->cap_msgs ? out->cap_msgs * 2 : 64;
            out->msgs = tb_xrealloc(out->msgs, out->cap_msgs * sizeof(*out->msgs));
        }
        struct tb_msg_info *m = &out->msgs[out->n_msgs++];
        memset(m, 0, sizeof(*m));
        m->uid = f->uid;
        m->modseq = f->modseq;
        m->flags = tb_flags_canon(tb_buf_cstr(&b));
        tb_buf_free(&b);
    }
    free(by_b);
    if (!ok) {
        tb_delta_clear(out);
        return false;
    }
    if (sec->n_expunged) {
        out->vanished = tb_xcalloc(sec->n_expunged, sizeof(uint32_t));
        memcpy(out->vanished, sec->expunged, sec->n_expunged * sizeof(uint32_t));
        out->n_vanished = out->cap_vanished = sec->n_expunged;
    }
    return true;
}

char *tb_xr_resync_summary(const struct tb_xrep_reply *r)
{
    struct tb_buf b;
    tb_buf_init(&b);
    size_t n = 0;
    for (size_t i = 0; i < r->n_sec; i++) {
        const struct tb_xrep_section *s = &r->sec[i];
        if (!s->resync)
            continue;
        if (n < 5)
            tb_buf_printf(&b, "%s%s %s", n ? ", " : "", s->name ? s->name : s->guid, s->resync);
        n++;
    }
    if (!n) {
        tb_buf_free(&b);
        return NULL;
    }
    if (n > 5)
        tb_buf_printf(&b, " and %zu more", n - 5);
    char *line = tb_xstrdup(tb_buf_cstr(&b));
    tb_buf_free(&b);
    return line;
}
