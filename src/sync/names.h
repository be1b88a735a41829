/* Canonical mailbox names: the state's form, hierarchy separated by '/', INBOX upper-case,
 * modified UTF-7 as on the wire. Both return malloc'd strings. */
#ifndef TWINBOX_SYNC_NAMES_H
#define TWINBOX_SYNC_NAMES_H

char *tb_name_canon(const char *wire, char sep);
char *tb_name_wire(const char *canon, char sep);

#endif
