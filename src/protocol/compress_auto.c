/* compress = auto: whether COMPRESS pays on this connection.
 *
 * Deflate costs CPU on both ends (the server compresses what it sends at its own level,
 * which we cannot lower), so it only pays where the link, not the CPUs, limits the sync.
 * Two measures decide, both before commands that move mail (session.c):
 * - The round trip. A near server never gets COMPRESS. To a remote host the kernel's TCP
 *   round-trip time tells, and a busy server does not pass for a far one. Through a
 *   tunnel or a port forward on this host the kernel sees only the near end: there the
 *   fastest answer so far (LOGIN, ENABLE, LIST...) stands in for it, against twice the
 *   threshold, because a loaded local server answers slowly too (measured: a local Dovecot
 *   sharing two busy cores took over 10 ms for every answer of a run).
 * - Then the rate. A far link may still be fast (a data centre's): measured over
 *   stretches of PROBE_BYTES moved, uncompressed, while the copies keep less in flight
 *   than usual (tb_imap_probing: COMPRESS waits for what is in flight, which then arrives
 *   uncompressed). One stretch at FAST_RATE or more proves the link fast (nothing moves
 *   faster than its link) and COMPRESS is left out for good; SLOW_STRETCHES slow ones in
 *   a row start it. A stretch can be slow for want of work (the other server, our own
 *   planning, a commit), so a single one does not decide that way, and the first is not
 *   counted at all: it holds the listings and the first round trips (measured: at 50 ms,
 *   two slow stretches in a row on an unlimited link in two runs of three). A run that
 *   moves less than that never compresses: little to save (and deciding sooner, once a
 *   stretch can only end slow, made the bench's latency-bound incremental run compress
 *   and take 1.08 s instead of 0.59).
 * Bytes written count once they left this host's send queue (tb_link_moved), so a socket
 * buffer filling up does not pass for a fast link. */
#include "protocol/imap_internal.h"
#include "twinbox/imap.h"
#include "transport/link.h"
#include "twinbox/config.h"
#include "twinbox/log.h"

#include <uv.h>

#define PROBE_BYTES    (2u << 20)
#define FAST_RATE      (16e6) /* bytes per second: 128 Mbit/s */
#define SLOW_STRETCHES 2      /* after the first, which is not counted */

static bool near(struct tb_imap *c)
{
    int64_t us = tb_link_network_rtt_us(c->link);
    double ms = us >= 0 ? us / 1e3 : c->min_rtt_ns / 1e6;
    int need = us >= 0 ? TB_COMPRESS_MIN_RTT_MS : 2 * TB_COMPRESS_MIN_RTT_MS;
    if (ms >= need)
        return false;
    tb_log_debug(1, "%s: COMPRESS left out: %s %.2f ms (auto needs %d)", tb_imap_account_name(c),
                 us >= 0 ? "TCP round trip" : "answers in", ms, need);
    return true;
}

bool tb_imap_probing(const struct tb_imap *c)
{
    return c && c->compress_deferred && c->probe_ns; /* probe_ns: only auto sets it */
}

bool tb_session_auto_compress(struct tb_imap *c)
{
    if (!c->probe_ns && near(c)) {
        c->compress_deferred = false;
        return false;
    }
    uint64_t now = uv_hrtime(), moved = tb_link_moved(c->link);
    if (!c->probe_ns || moved < c->probe_moved) {
        c->probe_ns = now;
        c->probe_moved = moved;
        return false;
    }
    if (moved - c->probe_moved < PROBE_BYTES)
        return false;
    double secs = (double)(now - c->probe_ns) / 1e9;
    double rate = (double)(moved - c->probe_moved) / (secs > 1e-6 ? secs : 1e-6);
    c->probe_ns = now;
    c->probe_moved = moved;
    if (rate >= FAST_RATE) {
        c->compress_deferred = false;
        tb_log_debug(1, "%s: COMPRESS left out: the link moved %.1f MB/s (auto needs < %.0f)",
                     tb_imap_account_name(c), rate / 1e6, FAST_RATE / 1e6);
        return false;
    }
    if (++c->probe_slow <= SLOW_STRETCHES)
        return false;
    tb_log_debug(1, "%s: COMPRESS: the link moved %.1f MB/s", tb_imap_account_name(c), rate / 1e6);
    return true;
}
