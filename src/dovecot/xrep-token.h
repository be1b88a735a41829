#ifndef XREP_TOKEN_H
#define XREP_TOKEN_H

/* Position tokens: a self-contained, opaque encoding of a snapshot, so that
   nothing has to be stored on the server for a position to stay valid.

   Binary layout (version 1), then base64url without padding:
     u8      version (1)
     u32be   crc32 of the user name the token was issued to
     u32be   base time (UNIX seconds, the newest verified_at)
     varint  number of mailboxes
     per mailbox, in strcmp order of the name:
       varint  bytes shared with the previous name (front coding)
       varint  length of the rest, then the rest (UTF-8)
       16      mailbox GUID
       varint  UIDVALIDITY, varint UIDNEXT, varint HIGHESTMODSEQ
       varint  base time - verified_at (seconds; usually 0)
       u8      flags: 0x01 subscribed; other bits must be zero
     u32be   crc32 of all preceding bytes
   Varints are LEB128 (7 bits a byte, low first, at most 10 bytes).
   Size: about 31 bytes per mailbox before base64, i.e. ~4 KB for 100.
   The same binary form (without base64) is what a server-side position
   file holds (xrep-position.h). */

#include "xrep-snapshot.h"

#define XREP_TOKEN_VERSION 1

enum xrep_token_error {
	XREP_TOKEN_OK = 0,
	/* Not a token at all: bad base64, truncated, checksum mismatch. */
	XREP_TOKEN_MALFORMED,
	/* A well-formed token this server cannot use: unknown version, or
	   issued to another user; a handle that is unknown or expired. */
	XREP_TOKEN_FOREIGN,
	/* The server failed (reading a stored position). */
	XREP_TOKEN_INTERNAL,
};

/* Append the binary form of snap (which must be finished) to dest.
   Unreadable entries are never encoded. */
void xrep_token_encode_binary(const struct xrep_snapshot *snap,
			      const char *username, buffer_t *dest);
/* Append the token text for snap (which must be finished) to dest. */
void xrep_token_encode(const struct xrep_snapshot *snap, const char *username,
		       string_t *dest);
/* Length of the text xrep_token_encode() would append for a binary form of
   binary_size bytes. */
size_t xrep_token_text_length(size_t binary_size);

/* Decode the binary form into a new snapshot.  On failure returns the error
   kind and a human-readable reason; never panics on any input. */
enum xrep_token_error
xrep_token_decode_binary(const void *data, size_t size, const char *username,
			 struct xrep_snapshot **snap_r, const char **reason_r);
/* Decode token text into a new snapshot, like xrep_token_decode_binary(). */
enum xrep_token_error xrep_token_decode(const char *text, const char *username,
					struct xrep_snapshot **snap_r,
					const char **reason_r);

#endif
