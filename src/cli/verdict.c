/* The end of a migration: the per-folder verdict table (sync/verdict.c computes it), the
 * final line saying whether every selected source message is on the destination, and the
 * same as JSON with --report FILE. */
#include "cli/verdict.h"

#include "twinbox/exit.h"
#include "twinbox/log.h"
#include "util/buf.h"
#include "util/mutf7.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void tb_verdicts_collect(void *ud, const struct tb_folder_verdict *v)
{
    struct tb_verdicts *c = ud;
    c->v = tb_xrealloc(c->v, (c->n + 1) * sizeof(*c->v));
    c->v[c->n] = *v;
    c->v[c->n].name = tb_mutf7_to_utf8(v->name); /* shown and reported in UTF-8 */
    c->n++;
}

void tb_verdicts_free(struct tb_verdicts *c)
{
    for (size_t i = 0; i < c->n; i++)
        free((char *)c->v[i].name);
    free(c->v);
    c->v = NULL;
    c->n = 0;
}

static void json_folder(FILE *f, const struct tb_folder_verdict *v)
{
    fprintf(f, "{\"folder\": ");
    tb_json_string(f, v->name);
    fprintf(f,
            ", \"on_source\": %llu, \"on_destination\": %llu, \"copied\": %llu, \"filtered\": "
            "%llu, \"skipped\": %llu, \"missing\": %llu, \"unreadable\": %s}",
            (unsigned long long)v->on_source, (unsigned long long)v->on_destination,
            (unsigned long long)v->copied_ever, (unsigned long long)v->filtered,
            (unsigned long long)v->skipped, (unsigned long long)v->missing,
            v->unreadable ? "true" : "false");
}

static int write_report(const struct tb_verdicts *c, const char *path, const char *src,
                        const char *dst, bool complete)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        tb_log_error("migrate: --report %s: cannot write", path);
        return -1;
    }
    fprintf(f, "{\"source\": ");
    tb_json_string(f, src);
    fprintf(f, ", \"destination\": ");
    tb_json_string(f, dst);
    fprintf(f, ", \"complete\": %s, \"folders\": [", complete ? "true" : "false");
    for (size_t i = 0; i < c->n; i++) {
        fprintf(f, "%s", i ? ", " : "");
        json_folder(f, &c->v[i]);
    }
    fprintf(f, "]}\n");
    return fclose(f) == 0 ? 0 : -1;
}

int tb_verdicts_print(const struct tb_verdicts *c, const char *label, const char *report,
                      const char *src, const char *dst)
{
    uint64_t total = 0, on_dst = 0, missing = 0, unreadable = 0;
    printf("%-32s %9s %12s %9s %9s %9s %9s\n", "folder", "source", "destination", "copied",
           "filtered", "skipped", "missing");
    for (size_t i = 0; i < c->n; i++) {
        const struct tb_folder_verdict *v = &c->v[i];
        if (v->unreadable) {
            printf("%-32.32s (could not be listed completely)\n", v->name);
            unreadable++;
            continue;
        }
        printf("%-32.32s %9llu %12llu %9llu %9llu %9llu %9llu\n", v->name,
               (unsigned long long)v->on_source, (unsigned long long)v->on_destination,
               (unsigned long long)v->copied_ever, (unsigned long long)v->filtered,
               (unsigned long long)v->skipped, (unsigned long long)v->missing);
        total += v->on_source - v->filtered;
        on_dst += v->copied_ever;
        missing += v->missing + v->skipped;
    }
    bool complete = missing == 0 && unreadable == 0;
    if (complete)
        printf("%s: every selected source message is on the destination (%llu of %llu)\n", label,
               (unsigned long long)on_dst, (unsigned long long)total);
    else
        printf("%s: NOT complete: %llu of %llu selected source messages are on the "
               "destination; %llu skipped or missing, %llu folders unreadable\n",
               label, (unsigned long long)on_dst, (unsigned long long)total,
               (unsigned long long)missing, (unsigned long long)unreadable);
    if (report && write_report(c, report, src, dst, complete) < 0)
        return TB_EXIT_CONFIG;
    return complete ? TB_EXIT_OK : TB_EXIT_CONFLICT;
}
