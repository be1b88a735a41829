/* Mailbox names. Canonical names: the state's form, hierarchy separated by '/', INBOX upper-case,
 * modified UTF-7 as on the wire. Both return malloc'd strings. */
#ifndef TWINBOX_SYNC_NAMES_H
#define TWINBOX_SYNC_NAMES_H

#include <stdbool.h>

char *tb_name_canon(const char *wire, char sep);
char *tb_name_wire(const char *canon, char sep);

struct tb_pair;
/* The pair's mailboxes = / exclude = patterns (fnmatch) applied to a canonical name. */
bool tb_pair_wants(const struct tb_pair *pair, const char *canon);

#endif
