/* Position token encoding and validating decoder (format in xrep-token.h). */

#include "lib.h"
#include "array.h"
#include "base64.h"
#include "buffer.h"
#include "crc32.h"
#include "str.h"
#include "unichar.h"
#include "xrep-token.h"

#include <ctype.h> /* i_isalnum() expands to isalnum() */

/* Hard bounds so a hostile token cannot make us allocate much: Dovecot's
   line limit already bounds the text, these bound what it may claim.  A
   full name (front-coded: shared prefix + rest) is at most
   XREP_TOKEN_MAX_NAME bytes (Dovecot's own limit is PATH_MAX of storage
   name; a UTF-8 vname can be somewhat longer), and all names together at
   most XREP_TOKEN_NAME_BUDGET(binary size): front coding lets a few bytes
   stand for a long name, so without a budget a 48 kB token could make us
   copy thousands of 16 kB names. */
#define XREP_TOKEN_MAX_MAILBOXES 200000
#define XREP_TOKEN_MAX_NAME 16384
#define XREP_TOKEN_NAME_BUDGET(size) ((uint64_t)(size) * 64 + 1024 * 1024)

static void put_varint(buffer_t *buf, uint64_t v)
{
	uint8_t b;

	do {
		b = v & 0x7f;
		v >>= 7;
		if (v != 0)
			b |= 0x80;
		buffer_append_c(buf, b);
	} while (v != 0);
}

static void put_u32be(buffer_t *buf, uint32_t v)
{
	uint8_t b[4] = {v >> 24, (v >> 16) & 0xff, (v >> 8) & 0xff, v & 0xff};

	buffer_append(buf, b, sizeof(b));
}

static size_t common_prefix(const char *a, const char *b)
{
	size_t i = 0;

	while (a[i] != '\0' && a[i] == b[i])
		i++;
	return i;
}

void xrep_token_encode_binary(const struct xrep_snapshot *snap,
			      const char *username, buffer_t *buf)
{
	const struct xrep_mailbox *box;
	const char *prev = "";
	size_t start = buf->used, shared, len;
	unsigned int count = 0;
	time_t base = 0;

	array_foreach(&snap->boxes, box)
	{
		if (box->unreadable)
			continue;
		count++;
		if (box->verified_at > base)
			base = box->verified_at;
	}
	buffer_append_c(buf, XREP_TOKEN_VERSION);
	put_u32be(buf, crc32_str(username));
	put_u32be(buf, (uint32_t)base);
	put_varint(buf, count);
	array_foreach(&snap->boxes, box)
	{
		if (box->unreadable)
			continue;
		shared = common_prefix(prev, box->vname);
		len = strlen(box->vname + shared);
		put_varint(buf, shared);
		put_varint(buf, len);
		buffer_append(buf, box->vname + shared, len);
		buffer_append(buf, box->guid, GUID_128_SIZE);
		put_varint(buf, box->uidvalidity);
		put_varint(buf, box->uidnext);
		put_varint(buf, box->modseq);
		put_varint(buf, box->verified_at > 0
					? (uint64_t)(base - box->verified_at)
					: (uint64_t)base);
		buffer_append_c(buf, box->subscribed ? 1 : 0);
		prev = box->vname;
	}
	put_u32be(buf, crc32_data(CONST_PTR_OFFSET(buf->data, start),
				  buf->used - start));
}

void xrep_token_encode(const struct xrep_snapshot *snap, const char *username,
		       string_t *dest)
{
	buffer_t *buf = t_buffer_create(64 + array_count(&snap->boxes) * 40);

	xrep_token_encode_binary(snap, username, buf);
	base64url_encode(BASE64_ENCODE_FLAG_NO_PADDING, SIZE_MAX, buf->data,
			 buf->used, dest);
}

size_t xrep_token_text_length(size_t binary_size)
{
	/* base64 without padding: 4 characters per 3 bytes, rounded up */
	return binary_size / 3 * 4 + (binary_size % 3 == 0 ? 0 :
				      binary_size % 3 + 1);
}

struct reader {
	const uint8_t *p, *end;
	bool failed;
};

static uint64_t get_varint(struct reader *r)
{
	uint64_t v = 0;
	unsigned int shift;

	for (shift = 0; shift < 64; shift += 7) {
		if (r->p >= r->end) {
			r->failed = TRUE;
			return 0;
		}
		v |= (uint64_t)(*r->p & 0x7f) << shift;
		if ((*r->p++ & 0x80) == 0)
			return v;
	}
	r->failed = TRUE;
	return 0;
}

static uint32_t get_u32be(struct reader *r)
{
	uint32_t v;

	if (r->end - r->p < 4) {
		r->failed = TRUE;
		return 0;
	}
	v = ((uint32_t)r->p[0] << 24) | ((uint32_t)r->p[1] << 16) |
	    ((uint32_t)r->p[2] << 8) | r->p[3];
	r->p += 4;
	return v;
}

static const uint8_t *get_bytes(struct reader *r, size_t n)
{
	const uint8_t *ret = r->p;

	if ((size_t)(r->end - r->p) < n) {
		r->failed = TRUE;
		return NULL;
	}
	r->p += n;
	return ret;
}

static bool token_text_is_base64url(const char *text)
{
	for (; *text != '\0'; text++) {
		if (!i_isalnum(*text) && *text != '-' && *text != '_')
			return FALSE;
	}
	return TRUE;
}

/* Read the mailbox entries.  Returns NULL on success, else a reason. */
static const char *decode_entries(struct reader *r, struct xrep_snapshot *snap,
				  uint32_t base)
{
	uint64_t budget = XREP_TOKEN_NAME_BUDGET(r->end - r->p);
	uint64_t count, i, shared, len, v1, v2, v3, age;
	string_t *name = t_str_new(128);
	const uint8_t *bytes, *guid;
	struct xrep_mailbox box;
	uint8_t flags;

	count = get_varint(r);
	if (r->failed || count > XREP_TOKEN_MAX_MAILBOXES)
		return "bad mailbox count";
	for (i = 0; i < count; i++) {
		shared = get_varint(r);
		len = get_varint(r);
		if (r->failed || shared > str_len(name) ||
		    len > XREP_TOKEN_MAX_NAME ||
		    shared + len > XREP_TOKEN_MAX_NAME || shared + len == 0 ||
		    shared + len > budget)
			return "bad mailbox name";
		budget -= shared + len;
		bytes = get_bytes(r, len);
		guid = get_bytes(r, GUID_128_SIZE);
		v1 = get_varint(r);
		v2 = get_varint(r);
		v3 = get_varint(r);
		age = get_varint(r);
		bytes = r->failed ? NULL : bytes;
		if (bytes == NULL || guid == NULL || r->failed)
			return "truncated mailbox entry";
		flags = r->p < r->end ? *r->p++ : 0xff;
		if (flags > 1 || v1 > (uint32_t)-1 || v2 > (uint32_t)-1 ||
		    age > base)
			return "bad mailbox entry";
		if (memchr(bytes, '\0', len) != NULL)
			return "NUL in mailbox name";
		str_truncate(name, shared);
		str_append_data(name, bytes, len);
		if (!uni_utf8_str_is_valid(str_c(name)))
			return "mailbox name not UTF-8";

		i_zero(&box);
		box.vname = str_c(name);
		memcpy(box.guid, guid, GUID_128_SIZE);
		box.uidvalidity = v1;
		box.uidnext = v2;
		box.modseq = v3;
		box.verified_at = (time_t)(base - age);
		box.subscribed = flags != 0;
		xrep_snapshot_add(snap, &box);
	}
	return NULL;
}

enum xrep_token_error
xrep_token_decode_binary(const void *data, size_t size, const char *username,
			 struct xrep_snapshot **snap_r, const char **reason_r)
{
	struct xrep_snapshot *snap;
	struct reader r;
	const char *reason;
	uint32_t crc, base;

	*snap_r = NULL;
	if (size < 1 + 4 + 4 + 1 + 4) {
		*reason_r = "Position token is truncated";
		return XREP_TOKEN_MALFORMED;
	}
	i_zero(&r);
	r.p = CONST_PTR_OFFSET(data, size - 4);
	r.end = CONST_PTR_OFFSET(data, size);
	crc = crc32_data(data, size - 4);
	if (get_u32be(&r) != crc) {
		*reason_r = "Position token checksum mismatch";
		return XREP_TOKEN_MALFORMED;
	}
	r.p = data;
	r.end = r.p + size - 4;
	if (*r.p++ != XREP_TOKEN_VERSION) {
		*reason_r = "Position token version not supported";
		return XREP_TOKEN_FOREIGN;
	}
	if (get_u32be(&r) != crc32_str(username)) {
		*reason_r = "Position token belongs to another user";
		return XREP_TOKEN_FOREIGN;
	}

	base = get_u32be(&r);
	snap = xrep_snapshot_new();
	reason = r.failed ? "truncated header" : decode_entries(&r, snap, base);
	if (reason == NULL && r.p != r.end)
		reason = "trailing data";
	if (reason == NULL && xrep_snapshot_finish(snap) < 0)
		reason = "duplicate mailbox name or GUID";
	if (reason != NULL) {
		xrep_snapshot_free(&snap);
		*reason_r = t_strconcat("Position token is corrupted: ", reason,
					NULL);
		return XREP_TOKEN_MALFORMED;
	}
	*snap_r = snap;
	return XREP_TOKEN_OK;
}

enum xrep_token_error xrep_token_decode(const char *text, const char *username,
					struct xrep_snapshot **snap_r,
					const char **reason_r)
{
	buffer_t *buf;
	size_t len = strlen(text);

	*snap_r = NULL;
	if (len == 0 || !token_text_is_base64url(text)) {
		*reason_r = "Position token is not base64url";
		return XREP_TOKEN_MALFORMED;
	}
	buf = t_buffer_create(len / 4 * 3 + 3);
	if (base64url_decode(BASE64_DECODE_FLAG_NO_PADDING, text, len, buf) <
	    0) {
		*reason_r = "Position token is truncated";
		return XREP_TOKEN_MALFORMED;
	}
	return xrep_token_decode_binary(buf->data, buf->used, username, snap_r,
					reason_r);
}
