/* libetpan's per-response parsers are exported by libetpan.so but their header
 * (mailimap_parser.h) is not installed. We declare the few we use here, with the 1.9.x
 * signatures. Called with fd == NULL they never read: a short buffer yields
 * MAILIMAP_ERROR_NEEDS_MORE_DATA (pinned by tests/unit/test_parse.c). */
#ifndef TWINBOX_PROTOCOL_ETPAN_PRIVATE_H
#define TWINBOX_PROTOCOL_ETPAN_PRIVATE_H

#include <libetpan/libetpan.h>

struct mailimap_parser_context;

int mailimap_greeting_parse(mailstream *fd, MMAPString *buffer,
                            struct mailimap_parser_context *parser_ctx, size_t *indx,
                            struct mailimap_greeting **result, size_t progr_rate,
                            progress_function *progr_fun);
int mailimap_response_parse(mailstream *fd, MMAPString *buffer,
                            struct mailimap_parser_context *parser_ctx, size_t *indx,
                            struct mailimap_response **result, size_t progr_rate,
                            progress_function *progr_fun);
int mailimap_response_data_parse(mailstream *fd, MMAPString *buffer,
                                 struct mailimap_parser_context *parser_ctx, size_t *indx,
                                 struct mailimap_response_data **result, size_t progr_rate,
                                 progress_function *progr_fun);
int mailimap_continue_req_parse(mailstream *fd, MMAPString *buffer,
                                struct mailimap_parser_context *parser_ctx, size_t *indx,
                                struct mailimap_continue_req **result, size_t progr_rate,
                                progress_function *progr_fun);
struct mailimap_parser_context *mailimap_parser_context_new(mailimap *session);
void mailimap_parser_context_free(struct mailimap_parser_context *ctx);

#endif
