/* Emitting the engine's events (sync/events.h): the text is formatted here, once, and the
 * event handed to the caller's callback. */
#include "sync/events.h"

#include "sync/engine_internal.h"
#include "twinbox/config.h"
#include "util/buf.h"

#include <stdio.h>
#include <stdlib.h>

void tb_sync_vemitf(tb_sync_event_fn *fn, void *ud, struct tb_sync_event *ev, const char *fmt,
                    va_list ap)
{
    if (!fn)
        return;
    struct tb_buf b;
    tb_buf_init(&b);
    tb_buf_vprintf(&b, fmt, ap);
    ev->text = tb_buf_cstr(&b);
    fn(ud, ev);
    ev->text = NULL;
    tb_buf_free(&b);
}

void tb_sync_emitf(tb_sync_event_fn *fn, void *ud, struct tb_sync_event *ev, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    tb_sync_vemitf(fn, ud, ev, fmt, ap);
    va_end(ap);
}

void tb_eng_emit(struct ctx *x, struct tb_sync_event *ev, const char *fmt, ...)
{
    ev->pair = x->pair->name;
    va_list ap;
    va_start(ap, fmt);
    tb_sync_vemitf(x->o->on_event, x->o->event_ud, ev, fmt, ap);
    va_end(ap);
}

void tb_eng_warn(struct ctx *x, const char *mailbox, const char *fmt, ...)
{
    struct tb_sync_event ev = {
        .kind = TB_SYNC_EV_WARNING, .pair = x->pair->name, .mailbox = mailbox, .side = -1};
    va_list ap;
    va_start(ap, fmt);
    tb_sync_vemitf(x->o->on_event, x->o->event_ud, &ev, fmt, ap);
    va_end(ap);
}
