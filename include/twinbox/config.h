/* Configuration: accounts and account pairs from the INI file or from a URL, and the
 * resolution of an account's password.
 *
 * File format (default $XDG_CONFIG_HOME/twinbox/config, else ~/.config/twinbox/config):
 *   # comment          ; comment         (at the start of a line, after optional blanks)
 *   [account NAME]     key = value ...
 *   [pair NAME]        key = value ...
 * Values are trimmed; one pair of double quotes around a value is removed. In an unquoted
 * value, blanks followed by '#' start a trailing comment (quote a value that must contain
 * " #"). Paths (password-file, tls-ca-file, state) may start with "~/". Every mistake
 * (unknown section type or key, duplicate key or section, key outside a section, bad
 * value, missing required key, pair naming an unknown account) is an error reported as
 * one line "FILE:LINE: what". Error messages never contain a password.
 *
 * Ownership: a tb_config owns its accounts and pairs and every string in them; pointers
 * returned by tb_config_account / tb_config_pair live until tb_config_free. An account
 * from tb_account_from_url is owned by the caller (tb_account_free). Passwords from
 * tb_account_password are owned by the caller and must be released with tb_password_free,
 * which wipes them. For auth = xoauth2 | oauthbearer the "password" is the OAuth access
 * token printed by oauth-token-command: the same resolution, ownership and wiping. */
#ifndef TWINBOX_CONFIG_H
#define TWINBOX_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum tb_account_type { TB_ACCOUNT_IMAP, TB_ACCOUNT_IMAPS, TB_ACCOUNT_TUNNEL };

/* RFC 7162 section 4: a client should keep command lines under 8,000 octets; Dovecot's
 * default limit is 64 KiB, others are lower. */
#define TB_DEFAULT_MAX_LINE          8000
#define TB_DEFAULT_MAX_RESPONSE_LINE (16u << 20)
#define TB_DEFAULT_MAX_MESSAGE_SIZE  ((uint64_t)128 << 20)

/* How an account authenticates (`auth`). DEFAULT: AUTHENTICATE PLAIN when the server offers
 * AUTH=PLAIN, else LOGIN. The others are required: a server that does not offer the
 * mechanism is an authentication error, never a silent fallback to another one. */
enum tb_auth {
    TB_AUTH_DEFAULT,
    TB_AUTH_PLAIN,
    TB_AUTH_LOGIN,
    TB_AUTH_XOAUTH2,
    TB_AUTH_OAUTHBEARER
};

/* compress = auto: COMPRESS only where the connection's fastest answer so far took this
 * long. Below it the link is local and faster than deflate on both ends (docs/NOTES.md).
 * Either way COMPRESS waits for the first command that moves mail (session.c). */
#define TB_COMPRESS_MIN_RTT_MS 10

/* After a successful load every field obeys its documented range; optional strings are
 * NULL when unset. Keys that do not apply to the type (e.g. host for tunnel) are refused
 * at load time, so e.g. host/user are non-NULL for imap/imaps and command for tunnel. */
struct tb_account {
    char *name; /* section name, or for a URL account the URL without query */
    enum tb_account_type type;
    char *host;                    /* imap/imaps; IPv6 literals without brackets */
    int port;                      /* 1..65535; default 143 (imap) / 993 (imaps); 0 tunnel */
    char *user;                    /* imap/imaps */
    char *password;                /* inline password (config file must then be private) */
    char *password_file;           /* first line is the password; file must be 0600-ish */
    char *password_command;        /* run by /bin/sh -c; first line of stdout */
    char *password_env;            /* name of an environment variable */
    bool starttls;                 /* imap only: true = STARTTLS required, false = plain */
    char *tls_ca_file;             /* trust these CAs instead of the system store */
    char tls_fingerprint[65];      /* SHA-256 of the leaf cert, 64 lowercase hex; "" unset */
    bool tls_verify;               /* default true */
    bool allow_plaintext_password; /* default false */
    bool compress;                 /* COMPRESS=DEFLATE when offered; default true (auto) */
    bool compress_auto;            /* auto: only over a slow link (TB_COMPRESS_MIN_RTT_MS) */
    char *command;                 /* tunnel: shell command speaking IMAP on stdin/stdout */
    int max_inflight;              /* 1..10000, default 128 */
    int timeout_s;                 /* 1..3600, default 60 */
    bool xreplicate;               /* use X-REPLICATE when offered; default true */
    size_t max_line;               /* longest command line sent (octets, literals excluded) */
    size_t max_response_line;      /* longest response line accepted (literals excluded) */
    uint64_t max_message_size;     /* larger messages are skipped, larger literals refused */
    char *source;                  /* "FILE:LINE" of its section, or "URL" */
    enum tb_auth auth;             /* imap/imaps; auth-user makes DEFAULT PLAIN */
    /* PLAIN's authentication identity (an admin or master user, whose password is used);
     * `user` is then sent as the authorization identity (the mailbox owner). NULL: the
     * user authenticates as itself. Only with auth = plain (or unset). */
    char *auth_user;
    /* xoauth2/oauthbearer (and only then, where it is required): run by /bin/sh -c; the
     * first line of stdout is the access token. Run again once when the server answers
     * that the token expired. The password keys do not apply to these mechanisms. */
    char *oauth_token_command;
    /* Throughput limits of each connection to this account, 0 = unlimited (the default).
     * Bytes are the IMAP bytes twinbox writes, before COMPRESS and TLS (mostly APPEND
     * literals); messages are APPEND commands. 0..4G and 0..100000. */
    uint64_t max_bytes_per_second;
    uint64_t max_messages_per_second;
};

/* max-delete of a pair: how much of one side a run may remove before it stops and asks for
 * --force. DEFAULT: more than 10% and more than 100 messages, or all of a side's messages
 * when it holds more than 10. */
enum tb_max_delete { TB_MAXDEL_DEFAULT, TB_MAXDEL_COUNT, TB_MAXDEL_PERCENT, TB_MAXDEL_UNLIMITED };

struct tb_pair {
    char *name;
    enum tb_max_delete max_delete;
    uint64_t max_delete_value; /* COUNT: messages; PERCENT: 0..100 */
    char *a, *b;               /* account names; both exist in the same tb_config, a != b */
    char **mailboxes;          /* fnmatch patterns, at least one; default {"*"} */
    size_t n_mailboxes;
    char **exclude; /* fnmatch patterns, possibly none */
    size_t n_exclude;
    char *state;  /* state database path, or NULL for the default */
    char *source; /* "FILE:LINE" of its section */
    /* replica = yes: both sides keep the same UIDVALIDITY, UIDs and mailbox GUIDs (Dovecot
     * with X-REPLICATE-REPLICA on both), so clients fail over with their caches intact. */
    bool replica;
    /* watch-mailboxes = INBOX, Work: the mailboxes `twinbox watch` IDLEs on (one connection
     * each, per side) where a server offers neither X-REPLICATE nor a working NOTIFY; the
     * others wait for the interval. Canonical names like mailboxes =; NULL: INBOX alone. */
    char **watch_mailboxes;
    size_t n_watch_mailboxes;
#define TB_WATCH_MAILBOXES_MAX 8
};

/* [migration NAME]: the options of `twinbox migrate` as keys (the long option names without
 * "--"; source and destination are required: account names or URLs). Kept as written and
 * interpreted by the command, which checks the values. */
struct tb_migration {
    char *name;
    char **keys, **values;
    int *lines; /* line of each key, for messages */
    size_t n;
    char *source; /* "FILE:LINE" of its section */
};

struct tb_config {
    struct tb_account **accounts; /* in file order */
    size_t n_accounts;
    struct tb_pair **pairs; /* in file order */
    size_t n_pairs;
    char *path; /* the file name used in messages */
    struct tb_migration **migrations;
    size_t n_migrations;
};

/* Reads and parses PATH. Also refuses a file holding an inline `password` when the file is
 * readable by group or others. 0 ok (*out owned by the caller), -1 error: err holds one
 * line, *out is NULL. */
int tb_config_load(const char *path, struct tb_config **out, char *err, size_t errlen);
/* Parses TEXT; FILENAME is only used in messages and as cfg->path. Same contract. */
int tb_config_parse(const char *text, const char *filename, struct tb_config **out, char *err,
                    size_t errlen);
void tb_config_free(struct tb_config *cfg); /* NULL is fine */
/* NULL when absent. */
struct tb_account *tb_config_account(const struct tb_config *cfg, const char *name);
struct tb_pair *tb_config_pair(const struct tb_config *cfg, const char *name);
struct tb_migration *tb_config_migration(const struct tb_config *cfg, const char *name);
/* $XDG_CONFIG_HOME/twinbox/config (only if absolute), else $HOME/.config/twinbox/config,
 * else the passwd entry's home. 0 ok, -1 no home directory or buffer too small. */
int tb_config_default_path(char *buf, size_t len);

/* URL forms:
 *   imap://USER@HOST[:PORT][/][?KEY=VALUE&...]   STARTTLS required unless starttls=no
 *   imaps://USER@HOST[:PORT][/][?KEY=VALUE&...]  implicit TLS
 *   tunnel:SHELL-COMMAND                         the rest, verbatim (no query, no password)
 * USER and query values are percent-decoded (USER may contain %40 for '@'; '+' stays '+').
 * HOST may be an IPv6 literal in brackets. Query keys are the account keys of the file
 * except type, host, port, user and password. The password env defaults to
 * TWINBOX_PASSWORD. A URL with a password (USER:PASS@) is refused. The account name is
 * SCHEME://USER@HOST[:PORT] (no query); source is "URL". 0 ok, -1 error in err. */
int tb_account_from_url(const char *url, struct tb_account **out, char *err, size_t errlen);
void tb_account_free(struct tb_account *a); /* only for accounts not owned by a tb_config */
bool tb_account_needs_password(const struct tb_account *a); /* false for tunnel */
bool tb_account_uses_oauth(const struct tb_account *a);     /* xoauth2 or oauthbearer */

/* For an OAuth account (tb_account_uses_oauth): runs oauth-token-command (non-zero exit, no
 * output or a token with control characters is an error) and returns its first line.
 * Otherwise the resolution order: password, password-file (refused if readable by group or
 * others), password-command (non-zero exit is an error), password-env (if set and non-empty),
 * then a prompt on /dev/tty without echo if stdin is a terminal. Otherwise an error
 * "ACCOUNT: no password configured (...)". On success *out is a malloc'd non-empty
 * string the caller releases with tb_password_free. 0 ok, -1 error (*out NULL). */
int tb_account_password(const struct tb_account *a, char **out, char *err, size_t errlen);
void tb_password_free(char *pw); /* wipes (explicit_bzero) then frees; NULL is fine */

#endif
