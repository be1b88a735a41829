/* Dovecot 2.4: the plugin's settings (see xrep-compat.h).

   This file is compiled twice: into the plugin, which reads the settings, and
   into a module of its own, libxreplicate_settings.so, installed in
   MODULEDIR/settings, from which Dovecot's config process learns the
   setting names (without it, 2.4 refuses xreplicate_* settings as unknown).
   Settings go at the top level of dovecot.conf, or in a filter such as
   protocol imap { }:

     xreplicate_inline_token_max = 8k
     xreplicate_server_positions = yes
     xreplicate_server_positions_keep = 8 */

#include "lib.h"
#include "settings.h"
#include "settings-parser.h"
#include "mail-user.h"
#include "xrep-compat.h"

struct xrep_settings {
	pool_t pool;
	const char *xreplicate_inline_token_max;
	const char *xreplicate_server_positions;
	const char *xreplicate_server_positions_keep;
};

#undef DEF
#define DEF(name)                                                              \
	SETTING_DEFINE_STRUCT_STR_NOVARS(#name, name, struct xrep_settings)

static const struct setting_define xrep_setting_defines[] = {
	DEF(xreplicate_inline_token_max),
	DEF(xreplicate_server_positions),
	DEF(xreplicate_server_positions_keep),
	SETTING_DEFINE_LIST_END,
};

/* Empty means unset: the plugin applies its own defaults. */
static const struct xrep_settings xrep_default_settings = {
	.xreplicate_inline_token_max = "",
	.xreplicate_server_positions = "",
	.xreplicate_server_positions_keep = "",
};

const struct setting_parser_info xrep_setting_parser_info = {
	.name = "xreplicate",
	.defines = xrep_setting_defines,
	.defaults = &xrep_default_settings,
	.struct_size = sizeof(struct xrep_settings),
	.pool_offset1 = 1 + offsetof(struct xrep_settings, pool),
};

/* What the config process looks for in a settings module
   (<module name>_set_infos, <module name>_version). */
extern const struct setting_parser_info *const xreplicate_settings_set_infos[];
const struct setting_parser_info *const xreplicate_settings_set_infos[] = {
	&xrep_setting_parser_info,
	NULL,
};
extern const char *xreplicate_settings_version;
const char *xreplicate_settings_version = DOVECOT_ABI_VERSION;

static bool xrep_settings_error_logged = FALSE;

const char *xrep_setting_get(struct mail_user *user, const char *name)
{
	const struct xrep_settings *set;
	const char *error, *value = NULL;
	unsigned int i;

	if (settings_get(user->event, &xrep_setting_parser_info, 0, &set,
			 &error) < 0) {
		/* The settings module is not installed: nothing can have
		   been configured (the config process would have refused
		   the names), so the defaults are right. Said once. */
		if (!xrep_settings_error_logged) {
			xrep_settings_error_logged = TRUE;
			e_warning(
				user->event,
				"xreplicate: %s (is libxreplicate_settings.so "
				"installed in the settings module directory?): "
				"using the defaults",
				error);
		}
		return NULL;
	}
	for (i = 0; xrep_setting_defines[i].key != NULL; i++) {
		if (strcmp(xrep_setting_defines[i].key, name) == 0) {
			value = *(const char *const *)CONST_PTR_OFFSET(
				set, xrep_setting_defines[i].offset);
			break;
		}
	}
	i_assert(xrep_setting_defines[i].key != NULL);
	value = *value == '\0' ? NULL : t_strdup(value);
	settings_free(set);
	return value;
}
