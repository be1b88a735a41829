/* Conversions from libetpan's response structures to store records. */
#ifndef TWINBOX_STORE_FETCH_H
#define TWINBOX_STORE_FETCH_H

#include "store/store.h"

#include <libetpan/libetpan.h>

/* Fills m (owned strings); body (borrowed from att) is set for a BODY[] section with
 * content, NULL otherwise (absent or NIL: tb_fetch_body_state tells which).
 * Returns false when the FETCH carries no UID. */
bool tb_fetch_to_info(struct mailimap_msg_att *att, struct tb_msg_info *m, const char **body,
                      size_t *body_len);
/* 0: no BODY[] section in this FETCH; 1: BODY[] NIL; 2: BODY[] with content. */
int tb_fetch_body_state(struct mailimap_msg_att *att);
/* Frees m's strings unless a delta's pool holds them (m->pooled); m is left without any. */
void tb_msg_info_clear(struct tb_msg_info *m);
/* One flag in its canonical spelling ("\\Seen", "$Label"), malloc'd. */
char *tb_flag_name(struct mailimap_flag *f);
void tb_list_to_info(struct mailimap_mailbox_list *ml, struct tb_mbox_info *b);
void tb_status_apply(struct mailimap_mailbox_data_status *st, struct tb_mbox_info *boxes, size_t n);
/* Collects a LIST (appended to *boxes) or STATUS (applied to its mailbox) response;
 * false for anything else. */
bool tb_list_status_collect(const struct mailimap_response_data *d, struct tb_mbox_info **boxes,
                            size_t *n);

#endif
