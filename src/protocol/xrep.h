/* The untagged responses of the X-REPLICATE extension (man/twinbox-xreplicate.7) as typed
 * values, parsed by a libetpan extension so they arrive through tb_parse_response() like
 * any other response.
 *
 * Ownership: a tb_xrep belongs to the libetpan extension data of the response that carried
 * it; tb_resp_clear() frees it with everything it points to. Copy what must outlive the
 * response.
 *
 * A malformed "* XREPLICATE ..." line never yields a partial value: it stays unparsed
 * (tb_resp.data NULL, tb_xrep_of() NULL). Callers that must not lose an event can still
 * recognise it with tb_resp_untagged_keyword() == "XREPLICATE". */
#ifndef TWINBOX_PROTOCOL_XREP_H
#define TWINBOX_PROTOCOL_XREP_H

#include <stdbool.h>
#include <stdint.h>

struct tb_resp;

enum tb_xrep_kind {
    TB_XREP_MAILBOX,
    TB_XREP_STATUS,
    TB_XREP_RESYNC,
    TB_XREP_APPENDED,
    TB_XREP_EXPUNGED,
    TB_XREP_FLAGS,
    TB_XREP_POSITION
};

enum tb_xrep_event {
    TB_XREP_CREATED,
    TB_XREP_DELETED,
    TB_XREP_RENAMED,
    TB_XREP_SUBSCRIBED,
    TB_XREP_UNSUBSCRIBED
};

/* Fields a kind does not carry are 0 / NULL. Strings are NUL-terminated and never contain
 * NUL (a literal holding one is refused). */
struct tb_xrep {
    enum tb_xrep_kind kind;
    char guid[33];                 /* 32 lower-case hex digits; empty for POSITION */
    enum tb_xrep_event event;      /* MAILBOX */
    char *name;                    /* MAILBOX, STATUS, RESYNC: as on the wire (modified UTF-7) */
    char *new_name;                /* MAILBOX RENAMED: the new name */
    char *reason;                  /* RESYNC: the reason atom, upper-cased (unknown ones kept) */
    uint32_t uidvalidity, uidnext; /* STATUS */
    uint64_t highestmodseq;        /* STATUS (0 accepted: "no MODSEQs", RFC 7162 valzer) */
    bool subscribed;               /* STATUS */
    char *uids;         /* APPENDED, EXPUNGED, FLAGS: the UID set as sent ("1:5,9"), validated:
                         * nz-numbers below 2^32, ':' and ',', no '*' */
    uint64_t modseq;    /* FLAGS: 1 .. 2^63-1 */
    char *add, *remove; /* FLAGS: the flags, space-separated as sent ("" when none) */
    char *token;        /* POSITION: never empty */
};

/* Registers the libetpan extension once (idempotent; call before parsing).
 * tb_parse_response() calls it itself. Not thread-safe: libetpan's extension list is a
 * process-wide unsynchronised list, and twinbox parses on one thread. */
void tb_xrep_register(void);

/* The X-REPLICATE value of a parsed untagged response, or NULL if it is none. */
const struct tb_xrep *tb_xrep_of(const struct tb_resp *r);
/* An untagged XREPLICATE response that did not parse: it could report any change, so a
 * caller must not treat what it collected as complete. */
bool tb_xrep_unreadable(const struct tb_resp *r);

/* 32 hex digits at p (either case; p must hold 32 bytes) into out, lower case and
 * terminated; false when one is not a hex digit. */
bool tb_xrep_guid_parse(char out[33], const char *p);

#endif
