/* `twinbox verify PAIR`: both accounts listed completely (every message with its identity
 * and flags), compared without any stored number, nothing written. It finds what a sync
 * cannot see when something was done behind its back: a message deleted straight from a
 * Maildir, flags changed while the state was rolled back, a duplicate. The differences go
 * to the caller one line each; the counts into the report. */
#include "sync/verify.h"

#include "store/store.h"
#include "sync/names.h"
#include "sync/plan.h"
#include "twinbox/config.h"
#include "twinbox/exit.h"
#include "util/buf.h"
#include "util/flags.h"
#include "util/mutf7.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BATCH 32

struct verify {
    const struct tb_pair *pair;
    struct tb_store s[2];
    struct tb_store *both[2];
    struct tb_verify_report *rep;
    tb_sync_event_fn *on_event;
    void *event_ud;
};

static void say(struct verify *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void say(struct verify *v, const char *fmt, ...)
{
    char line[1200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    struct tb_sync_event ev = {.kind = TB_SYNC_EV_DIFFERENCE, .pair = v->pair->name, .side = -1};
    tb_sync_emitf(v->on_event, v->event_ud, &ev, "%s: %s", v->pair->name, line);
}

static const char *side(int k)
{
    return k ? "b" : "a";
}

/* One message's name in a line: its Message-ID when it has one, else UID and size. */
static void describe(const struct tb_msg_info *m, char *buf, size_t len)
{
    const char *id = m->ident ? strstr(m->ident, "message-id:") : NULL;
    if (id) {
        id += 11;
        while (*id == ' ')
            id++;
        size_t n = strcspn(id, " ");
        snprintf(buf, len, "%.*s (UID %u)", (int)(n > 120 ? 120 : n), id, m->uid);
    } else {
        snprintf(buf, len, "UID %u, %u bytes, no Message-ID", m->uid, m->size);
    }
}

/* Flags both sides can keep (each side's PERMANENTFLAGS), canonical. */
static char *comparable(const struct tb_delta *d[2], const char *flags)
{
    char *f = tb_flags_canon(flags ? flags : "");
    for (int k = 0; k < 2; k++) {
        if (!d[k]->perm_known)
            continue;
        char *g = tb_flags_storable(f, d[k]->perm, d[k]->perm_keywords, NULL);
        free(f);
        f = g;
    }
    return f;
}

/* Runs of one identity on each side, compared: counts, duplicates, flags in order. */
static void compare_run(struct verify *v, const char *name, const struct tb_delta *d[2],
                        const struct tb_msg_info **run[2], const size_t n[2])
{
    char what[200];
    for (int k = 0; k < 2; k++) {
        if (n[k] > 1 && n[1 - k] < n[k]) {
            describe(run[k][0], what, sizeof(what));
            say(v, "%s: %s: %zu copies on %s, %zu on %s", name, what, n[k], side(k), n[1 - k],
                side(1 - k));
            v->rep->duplicates[k] += n[k] - (n[1 - k] ? n[1 - k] : 1);
        }
        if (n[1 - k] == 0 && n[k] > 0) {
            describe(run[k][0], what, sizeof(what));
            say(v, "%s: %s only on %s", name, what, side(k));
            v->rep->missing[1 - k] += 1;
        }
    }
    size_t both = n[0] < n[1] ? n[0] : n[1];
    for (size_t i = 0; i < both; i++) {
        char *fa = comparable(d, run[0][i]->flags), *fb = comparable(d, run[1][i]->flags);
        if (strcmp(fa, fb) != 0) {
            describe(run[0][i], what, sizeof(what));
            say(v, "%s: %s: flags (%s) on a, (%s) on b", name, what, fa, fb);
            v->rep->flag_diffs++;
        }
        v->rep->compared++;
        free(fa);
        free(fb);
    }
}

static void compare_mailbox(struct verify *v, const char *name, struct tb_delta *dd[2])
{
    const struct tb_delta *d[2] = {dd[0], dd[1]};
    for (int k = 0; k < 2; k++)
        if (d[k]->unreadable) {
            say(v, "%s: could not be read on %s: %s", name, side(k), d[k]->unreadable);
            v->rep->unreadable++;
            return;
        }
    const struct tb_msg_info **m[2];
    for (int k = 0; k < 2; k++) {
        m[k] = tb_xmalloc((d[k]->n_msgs + 1) * sizeof(*m[k]));
        for (size_t i = 0; i < d[k]->n_msgs; i++)
            m[k][i] = &d[k]->msgs[i];
        qsort(m[k], d[k]->n_msgs, sizeof(*m[k]), tb_msg_identity_sort);
    }
    size_t i[2] = {0, 0};
    while (i[0] < d[0]->n_msgs || i[1] < d[1]->n_msgs) {
        const struct tb_msg_info *key = i[0] >= d[0]->n_msgs   ? m[1][i[1]]
                                        : i[1] >= d[1]->n_msgs ? m[0][i[0]]
                                        : tb_msg_identity_cmp(m[0][i[0]], m[1][i[1]]) <= 0
                                            ? m[0][i[0]]
                                            : m[1][i[1]];
        const struct tb_msg_info **run[2];
        size_t n[2];
        for (int k = 0; k < 2; k++) {
            run[k] = &m[k][i[k]];
            n[k] = 0;
            while (i[k] < d[k]->n_msgs && tb_msg_identity_cmp(m[k][i[k]], key) == 0) {
                i[k]++;
                n[k]++;
            }
        }
        compare_run(v, name, d, run, n);
    }
    free(m[0]);
    free(m[1]);
}

/* The wanted canonical names of both listings, each with its wire name per side. */
struct name {
    char *canon, *wire[2];
    char *show; /* canon in UTF-8 */
};

static int cmp_name(const void *a, const void *b)
{
    return strcmp(((const struct name *)a)->canon, ((const struct name *)b)->canon);
}

static size_t collect(struct verify *v, struct name **out)
{
    size_t n = 0, cap = v->s[0].n_boxes + v->s[1].n_boxes + 1;
    struct name *names = tb_xcalloc(cap, sizeof(*names));
    for (int k = 0; k < 2; k++)
        for (size_t i = 0; i < v->s[k].n_boxes; i++) {
            const struct tb_mbox_info *b = &v->s[k].boxes[i];
            char *c = b->noselect ? NULL : tb_mbox_canon(tb_store_ns(&v->s[k]), b->name, NULL);
            if (!c || !tb_pair_wants(v->pair, c)) {
                free(c);
                continue;
            }
            size_t j = 0;
            while (j < n && strcmp(names[j].canon, c) != 0)
                j++;
            if (j == n) {
                names[n].show = tb_mutf7_to_utf8(c);
                names[n++].canon = c;
            } else
                free(c);
            free(names[j].wire[k]);
            names[j].wire[k] = tb_xstrdup(b->name);
        }
    qsort(names, n, sizeof(*names), cmp_name);
    *out = names;
    return n;
}

static int compare_all(struct verify *v, struct name *names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        for (int k = 0; k < 2; k++)
            if (!names[i].wire[k]) {
                say(v, "%s: mailbox only on %s", names[i].show, side(1 - k));
                v->rep->only_mailbox[1 - k]++;
            }
    for (size_t i = 0; i < n;) {
        struct tb_delta dd[BATCH][2];
        size_t idx[BATCH], b = 0;
        for (; i < n && b < BATCH; i++) {
            if (!names[i].wire[0] || !names[i].wire[1])
                continue;
            for (int k = 0; k < 2; k++)
                tb_store_delta_queue(&v->s[k], names[i].wire[k], 0, 0, 0, NULL, &dd[b][k]);
            idx[b++] = i;
        }
        if (b && tb_store_wait(v->both, 2) < 0) {
            for (size_t j = 0; j < b; j++)
                for (int k = 0; k < 2; k++)
                    tb_delta_clear(&dd[j][k]);
            return -1;
        }
        for (size_t j = 0; j < b; j++) {
            struct tb_delta *d[2] = {&dd[j][0], &dd[j][1]};
            compare_mailbox(v, names[idx[j]].show, d);
            v->rep->mailboxes++;
            tb_delta_clear(d[0]);
            tb_delta_clear(d[1]);
        }
    }
    return 0;
}

int tb_verify_pair(uv_loop_t *loop, const struct tb_pair *pair, const struct tb_account *acct[2],
                   const char *password[2], struct tb_verify_report *rep,
                   tb_sync_event_fn *on_event, void *event_ud, struct tb_error *err)
{
    struct verify v = {.pair = pair, .rep = rep, .on_event = on_event, .event_ud = event_ud};
    memset(rep, 0, sizeof(*rep));
    tb_error_clear(err);
    for (int k = 0; k < 2; k++) {
        tb_store_init(&v.s[k], loop, acct[k], password[k]);
        v.s[k].read_only = true; /* verify never writes */
        v.both[k] = &v.s[k];
    }
    int rc = tb_store_wait(v.both, 2);
    if (rc == 0) {
        tb_store_list_start(&v.s[0]);
        tb_store_list_start(&v.s[1]);
        rc = tb_store_wait(v.both, 2);
    }
    if (rc == 0) {
        struct name *names = NULL;
        size_t n = collect(&v, &names);
        rc = compare_all(&v, names, n);
        for (size_t i = 0; i < n; i++) {
            free(names[i].canon);
            free(names[i].show);
            free(names[i].wire[0]);
            free(names[i].wire[1]);
        }
        free(names);
    }
    if (rc < 0)
        *err = v.s[0].failed ? v.s[0].err : v.s[1].err;
    tb_store_logout(v.both, 2);
    tb_store_free(&v.s[0]);
    tb_store_free(&v.s[1]);
    uv_run(loop, UV_RUN_DEFAULT);
    if (rc < 0)
        return tb_error_exit(err->kind);
    bool differ = rep->missing[0] || rep->missing[1] || rep->flag_diffs || rep->duplicates[0] ||
                  rep->duplicates[1] || rep->only_mailbox[0] || rep->only_mailbox[1] ||
                  rep->unreadable;
    return differ ? TB_EXIT_CONFLICT : TB_EXIT_OK;
}
