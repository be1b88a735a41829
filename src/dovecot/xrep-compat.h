#ifndef XREP_COMPAT_H
#define XREP_COMPAT_H

/* The differences between the Dovecot 2.3 and 2.4 plugin APIs that the
   plugin meets, in one place. Everything else compiles unchanged against
   both: command_register(), client_add_capability(), the mailbox list and
   storage APIs, and lib-index's transaction log view and modseq helpers that
   xrep-delta.c reads.

   Settings. 2.3 reads a plugin's settings from the plugin { } section with
   mail_user_plugin_getenv(). 2.4 has neither: every setting is declared in
   a struct setting_parser_info (xrep-settings.c), the config process learns
   the names from a settings module installed under MODULEDIR/settings, and
   the plugin reads them with settings_get(). The values keep their 2.3
   meaning and syntax: they are declared as strings and parsed by the plugin
   (xrep-position.c), so an invalid value is warned about and the default
   used on both versions. */

#include "mail-user.h"

#if DOVECOT_VERSION_MAJOR > 2 ||                                               \
	(DOVECOT_VERSION_MAJOR == 2 && DOVECOT_VERSION_MINOR >= 4)
#define XREP_DOVECOT_24
#endif

#ifdef XREP_DOVECOT_24
#include "str-parse.h"

/* The value of the plugin setting `name` (one of xreplicate_*), or NULL
   when it is not set. Allocated from the data stack. */
const char *xrep_setting_get(struct mail_user *user, const char *name);

static inline int xrep_parse_size(const char *value, uoff_t *size_r,
				  const char **error_r)
{
	return str_parse_get_size(value, size_r, error_r);
}
#else
#include "settings-parser.h"

static inline const char *xrep_setting_get(struct mail_user *user,
					   const char *name)
{
	return mail_user_plugin_getenv(user, name);
}

static inline int xrep_parse_size(const char *value, uoff_t *size_r,
				  const char **error_r)
{
	return settings_get_size(value, size_r, error_r);
}
#endif

#endif
