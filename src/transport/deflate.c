#include "transport/deflate.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

struct tb_deflate {
    z_stream out;
    z_stream in;
    int level, want; /* in use; asked for by tb_deflate_adapt */
    bool in_ended;   /* the server finished its stream (it is closing): ignore the rest */
};

struct tb_deflate *tb_deflate_new(void)
{
    struct tb_deflate *z = calloc(1, sizeof(*z));
    if (!z)
        return NULL;
    /* -15: raw deflate, as RFC 4978 requires (no zlib header). */
    /* Level 1 to start: on a link that keeps up, deflate at the default level costs several
     * times the CPU (21 against 166 MB/s of mail here) for a quarter fewer bytes. */
    z->level = z->want = Z_BEST_SPEED;
    if (deflateInit2(&z->out, z->level, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
        free(z);
        return NULL;
    }
    if (inflateInit2(&z->in, -15) != Z_OK) {
        deflateEnd(&z->out);
        free(z);
        return NULL;
    }
    return z;
}

void tb_deflate_free(struct tb_deflate *z)
{
    if (!z)
        return;
    deflateEnd(&z->out);
    inflateEnd(&z->in);
    free(z);
}

void tb_deflate_adapt(struct tb_deflate *z, size_t queued)
{
    /* Hysteresis on what the link has not taken yet: half a megabyte unsent means the link
     * is the bottleneck and every byte saved is time saved (level 6); drained to 64 KiB,
     * level 1 again, several times cheaper for a quarter more bytes. Never level 0: the
     * level is chosen once per write, and one write can be a 4 MB MULTIAPPEND batch that
     * a queue empty at its start would send uncompressed whole (measured: 211 of 226 MB
     * sent stored over a 20 Mbit/s link). A link fast enough for stored blocks is left
     * uncompressed by compress = auto instead. */
    if (queued >= ((size_t)512 << 10))
        z->want = 6;
    else if (queued <= ((size_t)64 << 10))
        z->want = Z_BEST_SPEED;
}

int tb_deflate_send(struct tb_deflate *z, const char *p, size_t n, struct tb_buf *out)
{
    if (z->want != z->level) {
        /* Every send ends with Z_SYNC_FLUSH, so nothing is pending: the new level starts at
         * a block boundary within the same stream (RFC 4978 needs no renegotiation). Its
         * output, if any, goes first. */
        tb_buf_reserve(out, 64);
        z->out.next_in = NULL;
        z->out.avail_in = 0;
        z->out.next_out = (Bytef *)out->data + out->len;
        z->out.avail_out = 64;
        if (deflateParams(&z->out, z->want, Z_DEFAULT_STRATEGY) == Z_OK)
            z->level = z->want;
        out->len += 64 - z->out.avail_out;
    }
    z->out.next_in = (Bytef *)p;
    z->out.avail_in = (uInt)n;
    do {
        tb_buf_reserve(out, 16384);
        z->out.next_out = (Bytef *)out->data + out->len;
        z->out.avail_out = 16384;
        int r = deflate(&z->out, Z_SYNC_FLUSH);
        if (r != Z_OK && r != Z_BUF_ERROR)
            return -1;
        out->len += 16384 - z->out.avail_out;
    } while (z->out.avail_out == 0 || z->out.avail_in > 0);
    return 0;
}

int tb_deflate_recv(struct tb_deflate *z, const char *p, size_t n, struct tb_buf *out, char *err,
                    size_t errlen)
{
    if (z->in_ended)
        return 0;
    z->in.next_in = (Bytef *)p;
    z->in.avail_in = (uInt)n;
    /* Keep going while input remains or the last call filled the output window (zlib may
     * hold more decompressed bytes than fit in one window). */
    for (;;) {
        tb_buf_reserve(out, 65536);
        z->in.next_out = (Bytef *)out->data + out->len;
        z->in.avail_out = 65536;
        int r = inflate(&z->in, Z_SYNC_FLUSH);
        out->len += 65536 - z->in.avail_out;
        if (r == Z_STREAM_END) {
            z->in_ended = true;
            break;
        }
        if (r != Z_OK && r != Z_BUF_ERROR) {
            snprintf(err, errlen, "COMPRESS stream corrupt: %s",
                     z->in.msg ? z->in.msg : "inflate error");
            return -1;
        }
        if (z->in.avail_out != 0 && (z->in.avail_in == 0 || r == Z_BUF_ERROR))
            break;
    }
    return 0;
}
