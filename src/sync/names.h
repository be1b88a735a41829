/* Mailbox names. Canonical names: the state's form, hierarchy separated by '/', INBOX upper-case,
 * modified UTF-7 as on the wire. Both return malloc'd strings. */
#ifndef TWINBOX_SYNC_NAMES_H
#define TWINBOX_SYNC_NAMES_H

#include "protocol/mboxname.h"

#include <stdbool.h>

/* For names discovery already checked (tb_mbox_canon / tb_mbox_wire): never NULL. */
char *tb_name_canon(const char *wire, const struct tb_ns *ns);
char *tb_name_wire(const char *canon, const struct tb_ns *ns);

struct tb_pair;
/* The pair's mailboxes = / exclude = patterns (fnmatch) applied to a canonical name. */
bool tb_pair_wants(const struct tb_pair *pair, const char *canon);

#endif
