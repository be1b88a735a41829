/* Modified UTF-7 (RFC 3501 5.1.3), the wire form of mailbox names, and UTF-8, the form
 * people read and type. Canonical names stay in modified UTF-7 inside twinbox; these convert
 * at the edges (output, command-line arguments). */
#ifndef TWINBOX_UTIL_MUTF7_H
#define TWINBOX_UTIL_MUTF7_H

#include <stddef.h>

/* UTF-8 for a modified UTF-7 name, malloc'd. A malformed name (bad base64, a lone
 * surrogate, "&" never closed) is returned unchanged: it is shown as the server sent it. */
char *tb_mutf7_to_utf8(const char *name);
/* Modified UTF-7 for a UTF-8 name, malloc'd; NULL when the input is not valid UTF-8. */
char *tb_utf8_to_mutf7(const char *name);
/* For messages: the UTF-8 form of name in buf (truncated to len), returns buf. */
const char *tb_mutf7_show(const char *name, char *buf, size_t len);

#endif
