/* Mailbox name helpers for the places libetpan leaves names in wire form. */
#ifndef TWINBOX_PROTOCOL_MBOXNAME_H
#define TWINBOX_PROTOCOL_MBOXNAME_H

#include <stdbool.h>
#include <stddef.h>

/* libetpan returns STATUS mailbox names raw: "quoted", {n}CRLF literal or atom.
 * Returns a malloc'd plain name. */
char *tb_mboxname_unwire(const char *raw);

/* One side's personal namespace (RFC 2342 NAMESPACE, or "" and the LIST separator). */
struct tb_ns {
    const char *prefix; /* e.g. "INBOX." (Courier, Cyrus), "" (Dovecot); borrowed */
    char sep;           /* hierarchy separator; 0: flat */
    const char *others; /* other users' and shared prefixes, '\n'-separated; may be NULL */
};

/* Canonical names are relative to the personal namespace, hierarchy separated by '/', INBOX
 * upper-case, modified UTF-7 as on the wire: "INBOX.Work" on Courier and "Work" on Dovecot are
 * both "Work". NULL (and *why, may be NULL) for a name outside the personal namespace, or one
 * no canonical name can stand for (a '/' inside a level, or "INBOX" below the prefix). */
char *tb_mbox_canon(const struct tb_ns *ns, const char *wire, const char **why);
/* The wire name on a side; NULL (and *why) for a name that cannot exist there: a level holding
 * that side's separator, or a hierarchy on a flat namespace. */
char *tb_mbox_wire(const struct tb_ns *ns, const char *canon, const char **why);

#endif
