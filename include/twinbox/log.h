/* Logging: errors are one line on stderr; -v / -vv raise verbosity for traces.
 * Nothing passed here may contain a password: callers redact before logging. */
#ifndef TWINBOX_LOG_H
#define TWINBOX_LOG_H

extern int tb_verbosity; /* 0 quiet, 1 -v (commands), 2 -vv (full trace) */

void tb_log_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void tb_log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void tb_log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Printed only when tb_verbosity >= level. */
void tb_log_debug(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
