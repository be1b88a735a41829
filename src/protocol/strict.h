/* Strict numbers in responses, checked on the raw bytes before libetpan's data model is
 * trusted. libetpan's number parsers wrap on overflow ("APPENDUID 7 4294967297" reads as UID
 * 1), and a wrapped UID or MODSEQ is a plausible wrong value: twinbox would record the wrong
 * pair or skip a change. So wherever twinbox relies on a number (message numbers of EXISTS,
 * EXPUNGE, FETCH; FETCH UID, RFC822.SIZE and MODSEQ; STATUS MESSAGES, UIDNEXT, UIDVALIDITY,
 * HIGHESTMODSEQ; the codes UIDNEXT, UIDVALIDITY, HIGHESTMODSEQ, MODIFIED, APPENDUID,
 * COPYUID; VANISHED) this check refuses a value out of its range: above 2^32-1 for UIDs,
 * counts and sizes, above 2^63-1 for MODSEQs (RFC 7162), zero where RFC 3501 says
 * nz-number.
 *
 * Free text (resp-text after a code, quoted strings, literals) is never looked at, and
 * neither are responses whose numbers twinbox does not use (LIST, FLAGS, CAPABILITY...). */
#ifndef TWINBOX_PROTOCOL_STRICT_H
#define TWINBOX_PROTOCOL_STRICT_H

#include <stdbool.h>
#include <stddef.h>

/* One framed response (line, literals, CRLF). false: why holds the offending item. */
bool tb_numbers_ok(const char *p, size_t len, char *why, size_t whylen);

/* Whether libetpan 1.9.4 may parse this response. It crashes (frees lists it never set up,
 * walks NULL ones) on a quoted string left open where it parses quoted strings (NAMESPACE,
 * ANNOTATION and other data) and on a PERMANENTFLAGS code whose first flag does not parse,
 * and leaks on a FETCH section without its ']'; found by tests/fuzz. Data responses are checked
 * whole; status responses (tagged, untagged OK/NO/BAD/BYE/PREAUTH, the greeting) only in their
 * response code, the rest being text for people. false: why says what was wrong. */
bool tb_etpan_safe(const char *p, size_t len, char *why, size_t whylen);
/* A status response's response code: the span inside its brackets (empty when it has
 * none; up to len when the ']' is missing). false when p is not a status response. */
bool tb_code_span(const char *p, size_t len, size_t *start, size_t *end);

#endif
