/* Turns one framed response into libetpan's data model.
 * Ownership: tb_resp owns the libetpan structures it points to; tb_resp_clear frees them.
 * `raw` borrows the framer's bytes and is valid only while the response is dispatched. */
#ifndef TWINBOX_PROTOCOL_PARSE_H
#define TWINBOX_PROTOCOL_PARSE_H

#include "util/buf.h"

#include <libetpan/libetpan.h>
#include <stddef.h>

enum tb_resp_kind {
    TB_RESP_UNTAGGED, /* "* ..." ; data may be NULL when libetpan lacks the grammar */
    TB_RESP_TAGGED,   /* "TAG OK|NO|BAD ..." */
    TB_RESP_CONT,     /* "+ ..." */
    TB_RESP_GREETING, /* first response of a session */
};

struct tb_resp {
    enum tb_resp_kind kind;
    char tag[32];
    struct mailimap_response_data *data; /* untagged, when libetpan parsed it */
    struct mailimap_response *tagged;    /* tagged: rsp_resp_done->...rsp_tagged */
    struct mailimap_greeting *greeting;
    const char *raw;
    size_t raw_len;
    /* The BODY[] literal the framer detached (protocol/framer.h), owned: in data, that item
     * is an empty literal. Set by the caller after tb_parse_response; NULL when none. */
    struct tb_blob *body;
    /* Tagged only: the response code held a number out of range (protocol/strict.h) and
     * was dropped: a command that needs its code (APPENDUID, MODIFIED) must not act as if
     * there had been none. */
    bool code_unreadable;
};

/* 0 on success; -1 for a response that is not IMAP at all (err says why).
 * An untagged response libetpan cannot parse, or one with a number out of range
 * (protocol/strict.h), is not an error here: data stays NULL and whoever reads it as part
 * of a command's answer must treat it as unreadable, never as absent. */
int tb_parse_response(const char *p, size_t len, int greeting, struct tb_resp *out, char *err,
                      size_t errlen);
void tb_resp_clear(struct tb_resp *r);

/* The tagged status: MAILIMAP_RESP_COND_STATE_OK/NO/BAD, and its resp-text. */
int tb_resp_tagged_status(const struct tb_resp *r);
struct mailimap_resp_text *tb_resp_tagged_text(const struct tb_resp *r);

/* The keyword after "* " (or "* n ") of an untagged response, upper-cased, into buf. */
void tb_resp_untagged_keyword(const struct tb_resp *r, char *buf, size_t len);

#endif
