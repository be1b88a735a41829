/* COMPRESS=DEFLATE (RFC 4978) as a byte filter: raw deflate both ways, Z_SYNC_FLUSH after
 * every write so the server sees each command as soon as it is sent. */
#ifndef TWINBOX_TRANSPORT_DEFLATE_H
#define TWINBOX_TRANSPORT_DEFLATE_H

#include "util/buf.h"

struct tb_deflate;

struct tb_deflate *tb_deflate_new(void);
void tb_deflate_free(struct tb_deflate *z);
/* Chooses the level from the bytes the link holds unsent: fast while the link keeps up,
 * thorough while it is the bottleneck. Takes effect at the next send. */
void tb_deflate_adapt(struct tb_deflate *z, size_t queued);
int tb_deflate_send(struct tb_deflate *z, const char *p, size_t n, struct tb_buf *out);
/* -1 with err set for a corrupt stream. */
int tb_deflate_recv(struct tb_deflate *z, const char *p, size_t n, struct tb_buf *out, char *err,
                    size_t errlen);

#endif
