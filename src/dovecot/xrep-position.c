/* Inline position tokens and server-side positions (see xrep-position.h). */

#include "imap-common.h"
#include "array.h"
#include "base64.h"
#include "buffer.h"
#include "fd-util.h"
#include "hex-binary.h"
#include "ioloop.h"
#include "randgen.h"
#include "read-full.h"
#include "str.h"
#include "strnum.h"
#include "write-full.h"
#include "xrep-compat.h"
#include "mail-namespace.h"
#include "mailbox-list.h"
#include "xrep-position.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h> /* rename() */
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include <utime.h>

#define XREP_INLINE_TOKEN_MAX_DEFAULT (8 * 1024)
/* What a command line holds besides the token: tag, command name, literal
   prefix. */
#define XREP_LINE_RESERVE 1024
#define XREP_KEEP_DEFAULT 8
#define XREP_KEEP_MAX 1000

#define XREP_HANDLE_HEX_LEN 32
#define XREP_STORE_PREFIX "dovecot-xreplicate."
#define XREP_STORE_TEMP_SUFFIX ".tmp"
/* A temporary file older than this was left by a crash: removed. */
#define XREP_STORE_TEMP_MAX_AGE_SECS 3600
/* Larger stored files are not read (a position of 200,000 mailboxes with
   long names stays below). */
#define XREP_STORE_MAX_SIZE (64 * 1024 * 1024)

static bool xrep_settings_warned = FALSE;

static void settings_warn(struct mail_user *user, const char *name,
			  const char *value, const char *why)
{
	if (xrep_settings_warned)
		return;
	xrep_settings_warned = TRUE;
	e_warning(user->event,
		  "xreplicate: invalid %s=%s (%s): using the default", name,
		  value, why);
}

static bool setting_bool(struct mail_user *user, const char *name, bool def)
{
	const char *value = xrep_setting_get(user, name);

	if (value == NULL || *value == '\0')
		return def;
	if (strcasecmp(value, "yes") == 0 || strcasecmp(value, "true") == 0 ||
	    strcmp(value, "1") == 0)
		return TRUE;
	if (strcasecmp(value, "no") == 0 || strcasecmp(value, "false") == 0 ||
	    strcmp(value, "0") == 0)
		return FALSE;
	settings_warn(user, name, value, "expected yes or no");
	return def;
}

void xrep_position_settings_read(struct client *client,
				 struct xrep_position_settings *set_r)
{
	struct mail_user *user = client->user;
	uoff_t line_max = client->set->imap_max_line_length, size;
	const char *value, *error;
	unsigned int keep;

	i_zero(set_r);
	set_r->inline_max = XREP_INLINE_TOKEN_MAX_DEFAULT;
	value = xrep_setting_get(user, "xreplicate_inline_token_max");
	if (value != NULL && *value != '\0') {
		if (xrep_parse_size(value, &size, &error) < 0)
			settings_warn(user, "xreplicate_inline_token_max",
				      value, error);
		else
			set_r->inline_max = size > SSIZE_T_MAX
						    ? SSIZE_T_MAX
						    : (size_t)size;
	}
	/* never more than the server itself accepts back */
	if (line_max > 0) {
		size = line_max > XREP_LINE_RESERVE
			       ? line_max - XREP_LINE_RESERVE
			       : 0;
		if (set_r->inline_max > size)
			set_r->inline_max = size;
	}

	set_r->server_positions =
		setting_bool(user, "xreplicate_server_positions", TRUE);
	set_r->keep = XREP_KEEP_DEFAULT;
	value = xrep_setting_get(user, "xreplicate_server_positions_keep");
	if (value != NULL && *value != '\0') {
		if (str_to_uint(value, &keep) < 0 || keep < 1 ||
		    keep > XREP_KEEP_MAX) {
			settings_warn(user, "xreplicate_server_positions_keep",
				      value, "expected 1 .. 1000");
		} else {
			set_r->keep = keep;
		}
	}
}

bool xrep_position_would_be_refused(const struct xrep_position_settings *set,
				    const struct xrep_snapshot *snap,
				    const char *username)
{
	buffer_t *blob;
	bool refused;

	if (set->server_positions)
		return FALSE;
	T_BEGIN
	{
		blob = t_buffer_create(64 + array_count(&snap->boxes) * 40);
		xrep_token_encode_binary(snap, username, blob);
		refused = xrep_token_text_length(blob->used) > set->inline_max;
	}
	T_END;
	return refused;
}

static bool is_handle_hex(const char *hex)
{
	unsigned int i;

	for (i = 0; i < XREP_HANDLE_HEX_LEN; i++) {
		if (!((hex[i] >= '0' && hex[i] <= '9') ||
		      (hex[i] >= 'a' && hex[i] <= 'f')))
			return FALSE;
	}
	return hex[i] == '\0';
}

/* Where positions are kept: the mailbox list index directory (where
   Dovecot keeps dovecot.list.index: never listed as a mailbox), else the
   control directory.  Returns 1, 0 if there is none (in-memory indexes
   without a control directory), -1 on error. */
static int store_dir(struct mail_user *user, bool create, const char **dir_r,
		     const char **error_r)
{
	struct mail_namespace *ns;
	struct mailbox_list *list;
	enum mail_error error;

	ns = mail_namespace_find_inbox(user->namespaces);
	if (ns == NULL)
		ns = user->namespaces;
	if (ns == NULL)
		return 0;
	list = ns->list;
	if (mailbox_list_get_root_path(list, MAILBOX_LIST_PATH_TYPE_LIST_INDEX,
				       dir_r)) {
		if (create &&
		    mailbox_list_mkdir_missing_list_index_root(list) < 0) {
			*error_r = mailbox_list_get_last_internal_error(
				list, &error);
			return -1;
		}
		return 1;
	}
	if (mailbox_list_get_root_path(list, MAILBOX_LIST_PATH_TYPE_CONTROL,
				       dir_r))
		return 1;
	return 0;
}

static const char *store_path(const char *dir, const char *hex)
{
	return t_strconcat(dir, "/" XREP_STORE_PREFIX, hex, NULL);
}

/* Crash-safe: the file is complete and on disk under its final name before
   the handle is handed out. */
static int store_write(const char *dir, const char *path,
		       const buffer_t *blob, const char **error_r)
{
	const char *temp = t_strconcat(path, XREP_STORE_TEMP_SUFFIX, NULL);
	int fd;

	fd = open(temp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0600);
	if (fd == -1) {
		*error_r = t_strdup_printf("open(%s) failed: %m", temp);
		return -1;
	}
	if (write_full(fd, blob->data, blob->used) < 0) {
		*error_r = t_strdup_printf("write(%s) failed: %m", temp);
		i_close_fd(&fd);
		i_unlink(temp);
		return -1;
	}
	if (fsync(fd) < 0) {
		*error_r = t_strdup_printf("fsync(%s) failed: %m", temp);
		i_close_fd(&fd);
		i_unlink(temp);
		return -1;
	}
	if (close(fd) < 0) {
		*error_r = t_strdup_printf("close(%s) failed: %m", temp);
		i_unlink(temp);
		return -1;
	}
	if (rename(temp, path) < 0) {
		*error_r = t_strdup_printf("rename(%s, %s) failed: %m", temp,
					   path);
		i_unlink(temp);
		return -1;
	}
	/* the rename itself must survive a crash too */
	fd = open(dir, O_RDONLY | O_DIRECTORY);
	if (fd == -1) {
		*error_r = t_strdup_printf("open(%s) failed: %m", dir);
		return -1;
	}
	if (fsync(fd) < 0 && errno != EINVAL) {
		*error_r = t_strdup_printf("fsync(%s) failed: %m", dir);
		i_close_fd(&fd);
		return -1;
	}
	i_close_fd(&fd);
	return 0;
}

/* Read a stored position into blob.  Returns OK, FOREIGN (unknown or
   expired, or not a position file), or INTERNAL (*reason_r then has the
   error to log). */
static enum xrep_token_error store_read(const char *path, buffer_t *blob,
					const char **reason_r)
{
	struct stat st;
	void *data;
	int fd, ret;

	fd = open(path, O_RDONLY | O_NOFOLLOW);
	if (fd == -1) {
		if (errno == ENOENT || errno == ELOOP) {
			*reason_r = "Position handle is unknown or expired";
			return XREP_TOKEN_FOREIGN;
		}
		*reason_r = t_strdup_printf("open(%s) failed: %m", path);
		return XREP_TOKEN_INTERNAL;
	}
	if (fstat(fd, &st) < 0) {
		*reason_r = t_strdup_printf("fstat(%s) failed: %m", path);
		i_close_fd(&fd);
		return XREP_TOKEN_INTERNAL;
	}
	if (!S_ISREG(st.st_mode) || st.st_size > XREP_STORE_MAX_SIZE) {
		i_close_fd(&fd);
		*reason_r = "Position handle does not name a stored position";
		return XREP_TOKEN_FOREIGN;
	}
	data = buffer_append_space_unsafe(blob, st.st_size);
	ret = read_full(fd, data, st.st_size);
	if (ret < 0) {
		*reason_r = t_strdup_printf("read(%s) failed: %m", path);
		i_close_fd(&fd);
		return XREP_TOKEN_INTERNAL;
	}
	i_close_fd(&fd);
	if (ret == 0) {
		/* shrank meanwhile: not ours to use */
		*reason_r = "Stored position is truncated";
		return XREP_TOKEN_FOREIGN;
	}
	/* in use: keep it among the newest */
	(void)utime(path, NULL);
	return XREP_TOKEN_OK;
}

struct stored_position {
	const char *name;
	time_t sec;
	unsigned long nsec;
};

static int stored_position_cmp(const struct stored_position *a,
			       const struct stored_position *b)
{
	/* newest first */
	if (a->sec != b->sec)
		return a->sec > b->sec ? -1 : 1;
	if (a->nsec != b->nsec)
		return a->nsec > b->nsec ? -1 : 1;
	return strcmp(a->name, b->name);
}

/* Keep the newest positions (newest_name always among them); remove the
   rest and temporary files a crash left behind. */
static void store_prune(struct mail_user *user, const char *dir,
			unsigned int keep, const char *newest_name)
{
	ARRAY(struct stored_position) found;
	const struct stored_position *pos;
	struct stored_position *new_pos;
	const char *rest, *path;
	struct dirent *d;
	struct stat st;
	unsigned int i, count;
	size_t len;
	DIR *dirp;

	dirp = opendir(dir);
	if (dirp == NULL) {
		e_warning(user->event, "xreplicate: opendir(%s) failed: %m",
			  dir);
		return;
	}
	t_array_init(&found, 16);
	while ((d = readdir(dirp)) != NULL) {
		if (strncmp(d->d_name, XREP_STORE_PREFIX,
			    strlen(XREP_STORE_PREFIX)) != 0)
			continue;
		rest = d->d_name + strlen(XREP_STORE_PREFIX);
		len = strlen(rest);
		path = t_strconcat(dir, "/", d->d_name, NULL);
		if (len == XREP_HANDLE_HEX_LEN +
				   strlen(XREP_STORE_TEMP_SUFFIX) &&
		    strcmp(rest + XREP_HANDLE_HEX_LEN,
			   XREP_STORE_TEMP_SUFFIX) == 0) {
			if (lstat(path, &st) == 0 &&
			    st.st_mtime <
				    ioloop_time - XREP_STORE_TEMP_MAX_AGE_SECS)
				i_unlink_if_exists(path);
			continue;
		}
		if (!is_handle_hex(rest) || strcmp(d->d_name, newest_name) == 0)
			continue;
		if (lstat(path, &st) < 0 || !S_ISREG(st.st_mode))
			continue;
		new_pos = array_append_space(&found);
		new_pos->name = t_strdup(d->d_name);
		new_pos->sec = st.st_mtime;
		new_pos->nsec = ST_MTIME_NSEC(st);
	}
	if (closedir(dirp) < 0)
		e_warning(user->event, "xreplicate: closedir(%s) failed: %m",
			  dir);

	array_sort(&found, stored_position_cmp);
	pos = array_get(&found, &count);
	/* keep - 1 others besides the newest */
	for (i = keep - 1; i < count; i++)
		i_unlink_if_exists(t_strconcat(dir, "/", pos[i].name, NULL));
}

/* Is the position stored under handle text prev exactly blob? */
static bool store_same(const char *dir, const char *prev, const buffer_t *blob)
{
	const char *hex, *reason;
	buffer_t *old;

	if (prev == NULL ||
	    strncmp(prev, XREP_HANDLE_PREFIX, strlen(XREP_HANDLE_PREFIX)) != 0)
		return FALSE;
	hex = prev + strlen(XREP_HANDLE_PREFIX);
	if (!is_handle_hex(hex))
		return FALSE;
	old = t_buffer_create(blob->used);
	return store_read(store_path(dir, hex), old, &reason) ==
		       XREP_TOKEN_OK &&
	       buffer_cmp(old, blob);
}

enum xrep_position_result
xrep_position_make(struct mail_user *user,
		   const struct xrep_position_settings *set,
		   const struct xrep_snapshot *snap, const char *prev_text,
		   string_t *dest, const char **error_r)
{
	unsigned char rnd[XREP_HANDLE_HEX_LEN / 2];
	const char *dir, *hex, *path;
	buffer_t *blob;
	size_t text_len;
	int ret;

	blob = t_buffer_create(64 + array_count(&snap->boxes) * 40);
	xrep_token_encode_binary(snap, user->username, blob);
	text_len = xrep_token_text_length(blob->used);
	if (text_len <= set->inline_max) {
		base64url_encode(BASE64_ENCODE_FLAG_NO_PADDING, SIZE_MAX,
				 blob->data, blob->used, dest);
		return XREP_POSITION_OK;
	}
	if (!set->server_positions) {
		*error_r = t_strdup_printf(
			"Position too large for an inline token (%zu bytes, "
			"limit %zu) and server-side positions are disabled",
			text_len, set->inline_max);
		return XREP_POSITION_TOOBIG;
	}
	ret = store_dir(user, TRUE, &dir, error_r);
	if (ret == 0) {
		*error_r = t_strdup_printf(
			"Position too large for an inline token (%zu bytes, "
			"limit %zu) and no index or control directory to "
			"keep it in",
			text_len, set->inline_max);
		return XREP_POSITION_TOOBIG;
	}
	if (ret < 0)
		return XREP_POSITION_FAILED;

	if (store_same(dir, prev_text, blob)) {
		/* nothing changed: the same handle, touched by the read */
		str_append(dest, prev_text);
		return XREP_POSITION_OK;
	}
	random_fill(rnd, sizeof(rnd));
	hex = binary_to_hex(rnd, sizeof(rnd));
	path = store_path(dir, hex);
	if (store_write(dir, path, blob, error_r) < 0)
		return XREP_POSITION_FAILED;
	store_prune(user, dir, set->keep,
		    t_strconcat(XREP_STORE_PREFIX, hex, NULL));
	str_append(dest, XREP_HANDLE_PREFIX);
	str_append(dest, hex);
	return XREP_POSITION_OK;
}

enum xrep_token_error
xrep_position_parse(struct mail_user *user,
		    const struct xrep_position_settings *set, const char *text,
		    struct xrep_snapshot **snap_r, const char **reason_r)
{
	enum xrep_token_error ret;
	const char *hex, *dir, *error;
	buffer_t *blob;

	*snap_r = NULL;
	if (strncmp(text, XREP_HANDLE_PREFIX, strlen(XREP_HANDLE_PREFIX)) != 0)
		return xrep_token_decode(text, user->username, snap_r,
					 reason_r);

	hex = text + strlen(XREP_HANDLE_PREFIX);
	if (!is_handle_hex(hex)) {
		*reason_r = "Position handle is malformed";
		return XREP_TOKEN_MALFORMED;
	}
	if (!set->server_positions) {
		*reason_r = "Server-side positions are disabled";
		return XREP_TOKEN_FOREIGN;
	}
	switch (store_dir(user, FALSE, &dir, &error)) {
	case 1:
		break;
	case 0:
		*reason_r = "Position handle is unknown or expired";
		return XREP_TOKEN_FOREIGN;
	default:
		*reason_r = error;
		return XREP_TOKEN_INTERNAL;
	}
	blob = t_buffer_create(4096);
	ret = store_read(store_path(dir, hex), blob, reason_r);
	if (ret != XREP_TOKEN_OK)
		return ret;
	ret = xrep_token_decode_binary(blob->data, blob->used, user->username,
				       snap_r, reason_r);
	if (ret == XREP_TOKEN_MALFORMED) {
		/* the client sent a good handle; the file is damaged */
		e_warning(user->event, "xreplicate: stored position %s: %s",
			  hex, *reason_r);
		*reason_r = "Stored position is unusable";
		ret = XREP_TOKEN_FOREIGN;
	}
	return ret;
}
