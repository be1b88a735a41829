#ifndef XREP_POSITION_H
#define XREP_POSITION_H

/* Positions as the client sees them (man/twinbox-xreplicate.7, THE POSITION
   TOKEN): the self-contained inline token (xrep-token.h) while its text is
   at most xreplicate_inline_token_max bytes; past that, a short handle to a
   position kept server-side, so that no token is ever longer than what the
   server accepts back as a command argument (imap_max_line_length).

   Handle: "S1." followed by 32 lower-case hex digits (128 random bits).  "."
   is not in the base64url alphabet, so a handle is never an inline token.
   The position it stands for is a file in the user's mailbox list index
   directory (else the control directory), named "dovecot-xreplicate." plus
   the 32 hex digits, holding the token's binary form (bound to the user like
   an inline token), mode 0600, written as a temporary file that is fsynced
   and renamed into place before the handle is sent.  The newest
   xreplicate_server_positions_keep files (by modification time; using a
   handle touches it) are kept, older ones deleted.

   Settings (plugin { } section):
     xreplicate_inline_token_max = 8k      size; capped at
					   imap_max_line_length - 1 kB
     xreplicate_server_positions = yes     no: a position too large to go
					   inline is refused (TOOBIG)
     xreplicate_server_positions_keep = 8  1 .. 1000 */

#include "xrep-token.h"

struct client;
struct mail_user;

#define XREP_HANDLE_PREFIX "S1."

struct xrep_position_settings {
	/* longest inline token text handed out */
	size_t inline_max;
	bool server_positions;
	unsigned int keep;
};

enum xrep_position_result {
	XREP_POSITION_OK = 0,
	/* too large to go inline, and server-side positions are off */
	XREP_POSITION_TOOBIG,
	/* server-side position could not be stored (logged) */
	XREP_POSITION_FAILED,
};

void xrep_position_settings_read(struct client *client,
				 struct xrep_position_settings *set_r);

/* Would the inline token for snap be too long while server-side positions
   are off?  (Checked before a reply starts, so that a refused reply sends
   nothing; the final position is checked again when it is made.) */
bool xrep_position_would_be_refused(const struct xrep_position_settings *set,
				    const struct xrep_snapshot *snap,
				    const char *username);

/* Append the position text for snap (finished) to dest.  prev_text is the
   position the command was given (or NULL): a handle whose stored position
   equals snap is handed out again instead of a new one.  On failure
   *error_r is a human-readable reason. */
enum xrep_position_result
xrep_position_make(struct mail_user *user,
		   const struct xrep_position_settings *set,
		   const struct xrep_snapshot *snap, const char *prev_text,
		   string_t *dest, const char **error_r);

/* Parse a position from a client: an inline token or a handle. */
enum xrep_token_error
xrep_position_parse(struct mail_user *user,
		    const struct xrep_position_settings *set, const char *text,
		    struct xrep_snapshot **snap_r, const char **reason_r);

#endif
