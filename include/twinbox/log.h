/* Logging: errors are one line on stderr; -v / -vv raise verbosity for traces.
 * Nothing passed here may contain a password: callers redact before logging.
 * The library layers (transport, protocol, store, sync) report what is not an event of
 * the engine (src/sync/events.h) here: a program embedding them sets a sink and decides
 * where the lines go; without one they are written to stderr, one line under its lock. */
#ifndef TWINBOX_LOG_H
#define TWINBOX_LOG_H

extern int tb_verbosity; /* 0 quiet, 1 -v (commands), 2 -vv (full trace) */

enum tb_log_level { TB_LOG_ERROR, TB_LOG_WARN, TB_LOG_INFO, TB_LOG_DEBUG };
/* line: the formatted message, without prefix or newline (cut at 2 KiB). Called from any
 * thread that logs: the sink serializes what it shares. */
typedef void tb_log_sink_fn(enum tb_log_level level, const char *line, void *ud);
/* Set before any thread starts; NULL restores stderr. */
void tb_log_set_sink(tb_log_sink_fn *fn, void *ud);

void tb_log_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void tb_log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void tb_log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Printed only when tb_verbosity >= level. */
void tb_log_debug(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
