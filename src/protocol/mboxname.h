/* Mailbox name helpers for the places libetpan leaves names in wire form. */
#ifndef TWINBOX_PROTOCOL_MBOXNAME_H
#define TWINBOX_PROTOCOL_MBOXNAME_H

#include <stddef.h>

/* libetpan returns STATUS mailbox names raw: "quoted", {n}CRLF literal or atom.
 * Returns a malloc'd plain name. */
char *tb_mboxname_unwire(const char *raw);

#endif
