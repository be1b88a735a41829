#include "transport/tls.h"

#include "twinbox/error.h"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct tb_tls {
    SSL_CTX *ctx;
    SSL *ssl;
    BIO *rbio; /* network -> OpenSSL */
    BIO *wbio; /* OpenSSL -> network */
    bool ready;
    char fingerprint[65];
    bool verify;
    char desc[128];
};

static void ssl_err(struct tb_error *err, enum tb_err_kind kind, const char *what)
{
    unsigned long e = ERR_get_error();
    char buf[200];
    if (e) {
        ERR_error_string_n(e, buf, sizeof(buf));
        const char *reason = ERR_reason_error_string(e);
        tb_error_set(err, kind, "%s: %s", what, reason ? reason : buf);
    } else {
        tb_error_set(err, kind, "%s", what);
    }
    ERR_clear_error();
}

static bool is_ip_literal(const char *h)
{
    unsigned char tmp[16];
    return inet_pton(AF_INET, h, tmp) == 1 || inet_pton(AF_INET6, h, tmp) == 1;
}

struct tb_tls *tb_tls_new(const struct tb_tls_opts *o, struct tb_error *err)
{
    struct tb_tls *t = calloc(1, sizeof(*t));
    if (!t) {
        tb_error_set(err, TB_ERR_INTERNAL, "out of memory");
        return NULL;
    }
    t->verify = o->verify;
    if (o->fingerprint)
        snprintf(t->fingerprint, sizeof(t->fingerprint), "%s", o->fingerprint);
    t->ctx = SSL_CTX_new(TLS_client_method());
    if (!t->ctx) {
        ssl_err(err, TB_ERR_INTERNAL, "TLS setup failed");
        goto fail;
    }
    SSL_CTX_set_min_proto_version(t->ctx, TLS1_2_VERSION);
    /* Pinning replaces chain validation; otherwise OpenSSL aborts the handshake itself and
     * the verify result names the cause. */
    bool chain = o->verify && !t->fingerprint[0];
    if (chain) {
        if (o->ca_file && o->ca_file[0]) {
            if (SSL_CTX_load_verify_locations(t->ctx, o->ca_file, NULL) != 1) {
                ssl_err(err, TB_ERR_CONFIG, "cannot load tls-ca-file");
                goto fail;
            }
        } else if (SSL_CTX_set_default_verify_paths(t->ctx) != 1) {
            ssl_err(err, TB_ERR_CONFIG, "cannot load the system CA store");
            goto fail;
        }
    }
    SSL_CTX_set_verify(t->ctx, chain ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
    t->ssl = SSL_new(t->ctx);
    t->rbio = BIO_new(BIO_s_mem());
    t->wbio = BIO_new(BIO_s_mem());
    if (!t->ssl || !t->rbio || !t->wbio) {
        BIO_free(t->rbio);
        BIO_free(t->wbio);
        ssl_err(err, TB_ERR_INTERNAL, "TLS setup failed");
        goto fail;
    }
    SSL_set_bio(t->ssl, t->rbio, t->wbio); /* SSL owns both BIOs from here */
    SSL_set_connect_state(t->ssl);
    if (o->host && o->host[0]) {
        if (is_ip_literal(o->host)) {
            if (chain) {
                X509_VERIFY_PARAM *vp = SSL_get0_param(t->ssl);
                X509_VERIFY_PARAM_set1_ip_asc(vp, o->host);
            }
        } else {
            SSL_set_tlsext_host_name(t->ssl, o->host);
            if (chain)
                SSL_set1_host(t->ssl, o->host);
        }
    }
    return t;
fail:
    tb_tls_free(t);
    return NULL;
}

void tb_tls_free(struct tb_tls *t)
{
    if (!t)
        return;
    if (t->ssl)
        SSL_free(t->ssl);
    if (t->ctx)
        SSL_CTX_free(t->ctx);
    free(t);
}

static void drain(struct tb_tls *t, struct tb_buf *out)
{
    char tmp[16384];
    int n;
    while ((n = BIO_read(t->wbio, tmp, sizeof(tmp))) > 0)
        tb_buf_append(out, tmp, (size_t)n);
}

static int check_fingerprint(struct tb_tls *t, struct tb_error *err)
{
    X509 *cert = SSL_get1_peer_certificate(t->ssl);
    if (!cert) {
        tb_error_set(err, TB_ERR_TLS, "TLS: server sent no certificate");
        return -1;
    }
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    int ok = X509_digest(cert, EVP_sha256(), md, &mdlen);
    X509_free(cert);
    if (!ok) {
        tb_error_set(err, TB_ERR_TLS, "TLS: cannot digest the server certificate");
        return -1;
    }
    char hex[65];
    for (unsigned i = 0; i < mdlen && i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    if (strcmp(hex, t->fingerprint) != 0) {
        tb_error_set(err, TB_ERR_TLS, "TLS certificate fingerprint mismatch: server has sha256:%s",
                     hex);
        return -1;
    }
    return 0;
}

static int handshake(struct tb_tls *t, struct tb_buf *cipher_out, struct tb_error *err)
{
    int r = SSL_do_handshake(t->ssl);
    drain(t, cipher_out);
    if (r == 1) {
        if (t->fingerprint[0] && check_fingerprint(t, err) < 0)
            return -1;
        t->ready = true;
        snprintf(t->desc, sizeof(t->desc), "%s %s", SSL_get_version(t->ssl),
                 SSL_get_cipher_name(t->ssl));
        return 0;
    }
    int e = SSL_get_error(t->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return 0;
    long vr = SSL_get_verify_result(t->ssl);
    if (vr != X509_V_OK) {
        tb_error_set(err, TB_ERR_TLS, "TLS certificate verify failed: %s",
                     X509_verify_cert_error_string(vr));
        ERR_clear_error();
        return -1;
    }
    ssl_err(err, TB_ERR_TLS, "TLS handshake failed");
    return -1;
}

int tb_tls_start(struct tb_tls *t, struct tb_buf *cipher_out, struct tb_error *err)
{
    return handshake(t, cipher_out, err);
}

int tb_tls_recv(struct tb_tls *t, const char *p, size_t n, struct tb_buf *plain_out,
                struct tb_buf *cipher_out, struct tb_error *err)
{
    if (n && BIO_write(t->rbio, p, (int)n) != (int)n) {
        tb_error_set(err, TB_ERR_INTERNAL, "TLS: buffer write failed");
        return -1;
    }
    if (!t->ready) {
        if (handshake(t, cipher_out, err) < 0)
            return -1;
        if (!t->ready)
            return 0;
    }
    for (;;) {
        tb_buf_reserve(plain_out, 16384);
        int r = SSL_read(t->ssl, plain_out->data + plain_out->len, 16384);
        if (r > 0) {
            plain_out->len += (size_t)r;
            continue;
        }
        int e = SSL_get_error(t->ssl, r);
        drain(t, cipher_out); /* TLS 1.3 may answer key updates while reading */
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
            return 0;
        if (e == SSL_ERROR_ZERO_RETURN) {
            tb_error_set(err, TB_ERR_TEMP, "TLS connection closed by server");
            return -1;
        }
        ssl_err(err, TB_ERR_PROTOCOL, "TLS read failed");
        return -1;
    }
}

int tb_tls_send(struct tb_tls *t, const char *p, size_t n, struct tb_buf *cipher_out,
                struct tb_error *err)
{
    while (n > 0) {
        int chunk = n > 65536 ? 65536 : (int)n;
        int r = SSL_write(t->ssl, p, chunk);
        drain(t, cipher_out);
        if (r <= 0) {
            ssl_err(err, TB_ERR_TEMP, "TLS write failed");
            return -1;
        }
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

bool tb_tls_ready(const struct tb_tls *t)
{
    return t->ready;
}

const char *tb_tls_description(struct tb_tls *t)
{
    return t->desc;
}
