/* TLS as a byte filter over OpenSSL memory BIOs, so libuv keeps owning the socket.
 * The filter never touches the network: ciphertext to send is appended to a caller buffer.
 *
 * Verification policy (checked when the handshake completes):
 *   fingerprint set  -> the leaf certificate's SHA-256 must match; the chain is not consulted
 *                       (pinning is an explicit statement of trust);
 *   verify on        -> chain against ca_file (or the system store) and host name / IP;
 *   verify off       -> anything is accepted (the caller prints a warning). */
#ifndef TWINBOX_TRANSPORT_TLS_H
#define TWINBOX_TRANSPORT_TLS_H

#include "util/buf.h"

#include <stdbool.h>

struct tb_tls_opts {
    const char *host;        /* name or IP literal to verify and send as SNI */
    const char *ca_file;     /* NULL: system store */
    const char *fingerprint; /* 64 lowercase hex chars, or NULL/"" */
    bool verify;
};

struct tb_tls;
struct tb_error;

/* Failures fill err: TB_ERR_TLS for a handshake or verification failure, TB_ERR_CONFIG for
 * an unreadable CA file, others for the rest. */

struct tb_tls *tb_tls_new(const struct tb_tls_opts *o, struct tb_error *err);
void tb_tls_free(struct tb_tls *t);
/* Starts the handshake: the ClientHello goes into cipher_out. */
int tb_tls_start(struct tb_tls *t, struct tb_buf *cipher_out, struct tb_error *err);
/* Ciphertext in; plaintext appended to plain_out, protocol replies to cipher_out.
 * Returns 0, or -1 with a one-line cause (verification failures included). */
int tb_tls_recv(struct tb_tls *t, const char *p, size_t n, struct tb_buf *plain_out,
                struct tb_buf *cipher_out, struct tb_error *err);
/* Plaintext in (only after the handshake), ciphertext appended to cipher_out. */
int tb_tls_send(struct tb_tls *t, const char *p, size_t n, struct tb_buf *cipher_out,
                struct tb_error *err);
bool tb_tls_ready(const struct tb_tls *t);
/* e.g. "TLSv1.3 TLS_AES_256_GCM_SHA384"; valid while t lives. */
const char *tb_tls_description(struct tb_tls *t);

#endif
