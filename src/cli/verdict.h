/* A migration's verdict as the command line shows it (verdict.c). */
#ifndef TWINBOX_CLI_VERDICT_H
#define TWINBOX_CLI_VERDICT_H

#include "cli/cli.h"
#include "sync/engine.h"

#include <stddef.h>

struct tb_verdicts {
    struct tb_folder_verdict *v; /* names owned */
    size_t n;
};

/* tb_folder_verdict_fn; ud is a struct tb_verdicts. */
void tb_verdicts_collect(void *ud, const struct tb_folder_verdict *v);
void tb_verdicts_free(struct tb_verdicts *c);
/* The table and the final line; the JSON report when `report` is set. Returns 0 when every
 * selected source message is on the destination, else TB_EXIT_CONFLICT. */
int tb_verdicts_print(const struct tb_verdicts *c, const char *label, const char *report,
                      const char *src, const char *dst);

#endif
