/* INI configuration: parsing, and the checks that tie sections together (pairs must name
 * existing accounts). Per-key parsing and account validation live in account.c.
 *
 * The parser is line based and strict: anything it does not understand is an error with
 * FILE:LINE, because a silently ignored typo in a sync tool can mean mail going to the
 * wrong place. Values are copied out of the line buffer, so the config owns every string. */
#include "config/config_internal.h"
#include "util/buf.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_CONFIG_SIZE (1024 * 1024)

enum pair_key {
    P_A,
    P_B,
    P_MAILBOXES,
    P_EXCLUDE,
    P_STATE,
    P_MAX_DELETE,
    P_REPLICA,
    P_WATCH_MAILBOXES,
    P_COUNT
};
static const char *const pair_key_names[P_COUNT] = {
    "a", "b", "mailboxes", "exclude", "state", "max-delete", "replica", "watch-mailboxes"};

/* max-delete = N | N% | unlimited (see tb_max_delete). */
static int parse_max_delete(const char *v, struct tb_pair *pr)
{
    if (strcasecmp(v, "unlimited") == 0) {
        pr->max_delete = TB_MAXDEL_UNLIMITED;
        return 0;
    }
    uint64_t n = 0;
    const char *q = v;
    for (; *q >= '0' && *q <= '9'; q++) {
        n = n * 10 + (uint64_t)(*q - '0');
        if (n > 1000000000000ull)
            return -1;
    }
    if (q == v)
        return -1;
    if (*q == '%' && q[1] == 0 && n <= 100) {
        pr->max_delete = TB_MAXDEL_PERCENT;
    } else if (*q == 0) {
        pr->max_delete = TB_MAXDEL_COUNT;
    } else {
        return -1;
    }
    pr->max_delete_value = n;
    return 0;
}

/* ---- the INI parser -------------------------------------------------------------------- */

struct parser {
    const char *file;
    struct tb_config *cfg;
    char *err;
    size_t errlen;
    /* The open section, if any; its account/pair is already in cfg (so it is freed with it
     * on error) and is checked when the next section starts or the text ends. */
    enum { SEC_NONE, SEC_ACCOUNT, SEC_PAIR, SEC_MIGRATION } sec;
    int sec_line;
    struct tb_account *acct;
    struct tb_pair *pair;
    struct tb_migration *mig;
    int key_line[TB_K_COUNT]; /* line a key was set on; 0 = not set */
    int pair_key_line[P_COUNT];
};

static int fail(struct parser *p, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(struct parser *p, int line, const char *fmt, ...)
{
    if (!p->err || !p->errlen)
        return -1;
    int off = snprintf(p->err, p->errlen, "%s:%d: ", p->file, line);
    if (off >= 0 && (size_t)off < p->errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(p->err + off, p->errlen - (size_t)off, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        s[--n] = '\0';
    return s;
}

/* Is S empty, blanks only, or blanks then a '#' comment? */
static bool only_comment(const char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    return *s == '\0' || *s == '#';
}

/* RAW is everything after '='. Returns the value (pointing into RAW) or NULL on a bad
 * quote. A quoted value ends at the first '"' followed by nothing but blanks or a comment,
 * so passwords may contain '"' and " #" when quoted. */
static char *unquote(char *raw)
{
    char *v = raw;
    while (*v == ' ' || *v == '\t')
        v++;
    if (*v == '"') {
        for (char *q = v + 1; (q = strchr(q, '"')) != NULL; q++) {
            if (only_comment(q + 1)) {
                *q = '\0';
                return v + 1;
            }
        }
        return NULL;
    }
    for (char *q = v; *q; q++) {
        if (*q == '#' && (q == v || q[-1] == ' ' || q[-1] == '\t')) {
            *q = '\0';
            break;
        }
    }
    return trim(v);
}

static bool valid_name(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (isspace((unsigned char)*s) || iscntrl((unsigned char)*s) || strchr("[]\"'=#;", *s))
            return false;
    return true;
}

static char *source_of(const char *file, int line)
{
    struct tb_buf b;
    tb_buf_init(&b);
    tb_buf_printf(&b, "%s:%d", file, line);
    char *s = tb_xstrdup(tb_buf_cstr(&b));
    tb_buf_free(&b);
    return s;
}

static void pair_free(struct tb_pair *pr)
{
    if (!pr)
        return;
    free(pr->name);
    free(pr->a);
    free(pr->b);
    for (size_t i = 0; i < pr->n_mailboxes; i++)
        free(pr->mailboxes[i]);
    free(pr->mailboxes);
    for (size_t i = 0; i < pr->n_exclude; i++)
        free(pr->exclude[i]);
    free(pr->exclude);
    for (size_t i = 0; i < pr->n_watch_mailboxes; i++)
        free(pr->watch_mailboxes[i]);
    free(pr->watch_mailboxes);
    free(pr->state);
    free(pr->source);
    free(pr);
}

/* Splits a comma-separated list; empty items are errors, an empty list is fine. */
static int split_list(char *v, char ***out, size_t *n)
{
    *out = NULL;
    *n = 0;
    if (!*v)
        return 0;
    for (char *item = v;;) {
        char *comma = strchr(item, ',');
        if (comma)
            *comma = '\0';
        char *t = trim(item);
        if (!*t)
            return -1; /* caller frees what was collected */
        *out = tb_xrealloc(*out, (*n + 1) * sizeof(**out));
        (*out)[(*n)++] = tb_xstrdup(t);
        if (!comma)
            return 0;
        item = comma + 1;
    }
}

static int end_section(struct parser *p)
{
    if (p->sec == SEC_ACCOUNT) {
        bool set[TB_K_COUNT];
        for (int k = 0; k < TB_K_COUNT; k++)
            set[k] = p->key_line[k] != 0;
        char why[256];
        int bad;
        if (tb_account_check(p->acct, set, &bad, why, sizeof(why)) < 0)
            return fail(p, bad >= 0 ? p->key_line[bad] : p->sec_line, "account '%s': %s",
                        p->acct->name, why);
    } else if (p->sec == SEC_MIGRATION) {
        static const char *const need[] = {"source", "destination"};
        for (size_t i = 0; i < 2; i++) {
            bool have = false;
            for (size_t j = 0; j < p->mig->n && !have; j++)
                have = strcmp(p->mig->keys[j], need[i]) == 0;
            if (!have)
                return fail(p, p->sec_line, "migration '%s': missing '%s' (an account or URL)",
                            p->mig->name, need[i]);
        }
    } else if (p->sec == SEC_PAIR) {
        for (int k = P_A; k <= P_B; k++)
            if (!p->pair_key_line[k])
                return fail(p, p->sec_line, "pair '%s': missing '%s' (an account name)",
                            p->pair->name, pair_key_names[k]);
        if (!p->pair_key_line[P_MAILBOXES]) {
            p->pair->mailboxes = tb_xmalloc(sizeof(char *));
            p->pair->mailboxes[0] = tb_xstrdup("*");
            p->pair->n_mailboxes = 1;
        }
    }
    p->sec = SEC_NONE;
    return 0;
}

static int begin_section(struct parser *p, int line, char *s)
{
    char *close = strchr(s, ']');
    if (!close)
        return fail(p, line, "section header without ']'");
    if (!only_comment(close + 1))
        return fail(p, line, "text after section header");
    *close = '\0';
    char *kind = trim(s + 1);
    char *name = kind + strcspn(kind, " \t");
    if (*name)
        *name++ = '\0';
    name = trim(name);
    bool is_acct = strcmp(kind, "account") == 0, is_mig = strcmp(kind, "migration") == 0;
    if (!is_acct && !is_mig && strcmp(kind, "pair") != 0)
        return fail(p, line, "unknown section type '%.64s' (expected account, pair or migration)",
                    kind);
    if (!valid_name(name))
        return fail(p, line, "[%s NAME]: bad or missing name '%.64s'", kind, name);
    if (end_section(p) < 0)
        return -1;
    struct tb_config *c = p->cfg;
    if (is_mig) {
        struct tb_migration *old = tb_config_migration(c, name);
        if (old)
            return fail(p, line, "duplicate section [migration %s] (first at %s)", name,
                        old->source);
        struct tb_migration *m = tb_xcalloc(1, sizeof(*m));
        m->name = tb_xstrdup(name);
        m->source = source_of(p->file, line);
        c->migrations = tb_xrealloc(c->migrations, (c->n_migrations + 1) * sizeof(*c->migrations));
        c->migrations[c->n_migrations++] = m;
        p->mig = m;
        p->sec = SEC_MIGRATION;
    } else if (is_acct) {
        struct tb_account *old = tb_config_account(c, name);
        if (old)
            return fail(p, line, "duplicate section [account %s] (first at %s)", name, old->source);
        struct tb_account *a = tb_account_new();
        a->name = tb_xstrdup(name);
        a->source = source_of(p->file, line);
        c->accounts = tb_xrealloc(c->accounts, (c->n_accounts + 1) * sizeof(*c->accounts));
        c->accounts[c->n_accounts++] = a;
        p->acct = a;
        p->sec = SEC_ACCOUNT;
        memset(p->key_line, 0, sizeof(p->key_line));
    } else {
        struct tb_pair *old = tb_config_pair(c, name);
        if (old)
            return fail(p, line, "duplicate section [pair %s] (first at %s)", name, old->source);
        struct tb_pair *pr = tb_xcalloc(1, sizeof(*pr));
        pr->name = tb_xstrdup(name);
        pr->source = source_of(p->file, line);
        c->pairs = tb_xrealloc(c->pairs, (c->n_pairs + 1) * sizeof(*c->pairs));
        c->pairs[c->n_pairs++] = pr;
        p->pair = pr;
        p->sec = SEC_PAIR;
        memset(p->pair_key_line, 0, sizeof(p->pair_key_line));
    }
    p->sec_line = line;
    return 0;
}

static int pair_key(struct parser *p, int line, const char *key, char *v)
{
    struct tb_pair *pr = p->pair;
    int k = 0;
    while (k < P_COUNT && strcmp(key, pair_key_names[k]) != 0)
        k++;
    if (k == P_COUNT)
        return fail(p, line, "pair '%s': unknown key '%.64s'", pr->name, key);
    if (p->pair_key_line[k])
        return fail(p, line, "pair '%s': duplicate key '%s' (first on line %d)", pr->name, key,
                    p->pair_key_line[k]);
    p->pair_key_line[k] = line;
    if (!*v && k != P_EXCLUDE)
        return fail(p, line, "pair '%s': %s: empty value", pr->name, key);
    switch (k) {
    case P_A:
    case P_B:
        if (!valid_name(v))
            return fail(p, line, "pair '%s': %s: '%.64s' is not an account name", pr->name, key, v);
        *(k == P_A ? &pr->a : &pr->b) = tb_xstrdup(v);
        return 0;
    case P_MAILBOXES:
        if (split_list(v, &pr->mailboxes, &pr->n_mailboxes) < 0)
            return fail(p, line, "pair '%s': mailboxes: empty pattern in list", pr->name);
        return 0;
    case P_EXCLUDE:
        if (split_list(v, &pr->exclude, &pr->n_exclude) < 0)
            return fail(p, line, "pair '%s': exclude: empty pattern in list", pr->name);
        return 0;
    case P_MAX_DELETE:
        if (parse_max_delete(v, pr) < 0)
            return fail(p, line,
                        "pair '%s': max-delete: '%.64s' is not a number, a percentage (0%%..100%%) "
                        "or unlimited",
                        pr->name, v);
        return 0;
    case P_REPLICA:
        if (tb_config_parse_bool(v, &pr->replica) < 0)
            return fail(p, line, "pair '%s': replica: '%.64s' is not yes or no", pr->name, v);
        return 0;
    case P_WATCH_MAILBOXES:
        /* One IDLE connection per name and side (servers limit connections per user). */
        if (split_list(v, &pr->watch_mailboxes, &pr->n_watch_mailboxes) < 0)
            return fail(p, line, "pair '%s': watch-mailboxes: empty name in list", pr->name);
        if (pr->n_watch_mailboxes > TB_WATCH_MAILBOXES_MAX)
            return fail(p, line, "pair '%s': watch-mailboxes: more than %d mailboxes", pr->name,
                        TB_WATCH_MAILBOXES_MAX);
        return 0;
    default: {
        char why[256];
        if (tb_config_expand_path(v, &pr->state, why, sizeof(why)) < 0)
            return fail(p, line, "pair '%s': state: %s", pr->name, why);
        return 0;
    }
    }
}

static int account_key(struct parser *p, int line, const char *key, const char *v)
{
    struct tb_account *a = p->acct;
    int k = tb_account_key(key);
    if (k < 0)
        return fail(p, line, "account '%s': unknown key '%.64s'", a->name, key);
    if (p->key_line[k])
        return fail(p, line, "account '%s': duplicate key '%s' (first on line %d)", a->name, key,
                    p->key_line[k]);
    p->key_line[k] = line;
    char why[256];
    if (tb_account_set(a, k, v, why, sizeof(why)) < 0)
        return fail(p, line, "account '%s': %s", a->name, why);
    return 0;
}

/* Keys a migration may repeat (each is one more rule or pattern). */
static bool repeatable(const char *key)
{
    return strcmp(key, "map") == 0 || strcmp(key, "only") == 0 || strcmp(key, "exclude") == 0;
}

static int migration_key(struct parser *p, int line, const char *key, const char *v)
{
    struct tb_migration *m = p->mig;
    for (size_t i = 0; i < m->n && !repeatable(key); i++)
        if (strcmp(m->keys[i], key) == 0)
            return fail(p, line, "migration '%s': duplicate key '%s' (first on line %d)", m->name,
                        key, m->lines[i]);
    m->keys = tb_xrealloc(m->keys, (m->n + 1) * sizeof(*m->keys));
    m->values = tb_xrealloc(m->values, (m->n + 1) * sizeof(*m->values));
    m->lines = tb_xrealloc(m->lines, (m->n + 1) * sizeof(*m->lines));
    m->keys[m->n] = tb_xstrdup(key);
    m->values[m->n] = tb_xstrdup(v);
    m->lines[m->n++] = line;
    return 0;
}

static int parse_line(struct parser *p, int line, char *s)
{
    s = trim(s);
    if (!*s || *s == '#' || *s == ';')
        return 0;
    if (*s == '[')
        return begin_section(p, line, s);
    char *eq = strchr(s, '=');
    if (!eq)
        return fail(p, line, "expected 'key = value' or '[section]'");
    *eq = '\0';
    char *key = trim(s);
    if (!*key)
        return fail(p, line, "missing key before '='");
    for (const char *q = key; *q; q++)
        if (!(islower((unsigned char)*q) || isdigit((unsigned char)*q) || *q == '-'))
            return fail(p, line, "bad key '%.64s'", key);
    if (p->sec == SEC_NONE)
        return fail(p, line, "key '%s' outside of a section", key);
    char *v = unquote(eq + 1);
    if (!v)
        return fail(p, line, "%s: unterminated quoted value", key);
    if (p->sec == SEC_MIGRATION)
        return migration_key(p, line, key, v);
    return p->sec == SEC_ACCOUNT ? account_key(p, line, key, v) : pair_key(p, line, key, v);
}

/* Cross-section checks, once every section is known. */
static int check_pairs(struct parser *p)
{
    struct tb_config *c = p->cfg;
    for (size_t i = 0; i < c->n_pairs; i++) {
        struct tb_pair *pr = c->pairs[i];
        const char *side[2] = {pr->a, pr->b};
        for (int k = 0; k < 2; k++) {
            if (!tb_config_account(c, side[k])) {
                snprintf(p->err, p->errlen, "%s: pair '%s': %s = %s: no [account %s] section",
                         pr->source, pr->name, k ? "b" : "a", side[k], side[k]);
                return -1;
            }
        }
        if (strcmp(pr->a, pr->b) == 0) {
            snprintf(p->err, p->errlen, "%s: pair '%s': a and b are the same account '%s'",
                     pr->source, pr->name, pr->a);
            return -1;
        }
    }
    return 0;
}

int tb_config_parse(const char *text, const char *filename, struct tb_config **out, char *err,
                    size_t errlen)
{
    *out = NULL;
    if (err && errlen)
        err[0] = '\0';
    struct tb_config *c = tb_xcalloc(1, sizeof(*c));
    c->path = tb_xstrdup(filename);
    struct parser p = {.file = filename, .cfg = c, .err = err, .errlen = err ? errlen : 0};
    char dummy[1];
    if (!p.err) { /* check_pairs writes unconditionally */
        p.err = dummy;
        p.errlen = sizeof(dummy);
    }
    if (strncmp(text, "\xef\xbb\xbf", 3) == 0) /* UTF-8 byte order mark */
        text += 3;
    int line = 0, rc = 0;
    for (const char *s = text; *s && rc == 0;) {
        line++;
        size_t len = strcspn(s, "\n");
        char *buf = tb_xstrndup(s, len);
        if (len && buf[len - 1] == '\r')
            buf[len - 1] = '\0';
        rc = parse_line(&p, line, buf);
        /* Lines can hold an inline password: do not leave copies in freed memory. */
        explicit_bzero(buf, len);
        free(buf);
        s += len;
        if (*s == '\n')
            s++;
    }
    if (rc == 0)
        rc = end_section(&p);
    if (rc == 0)
        rc = check_pairs(&p);
    if (rc < 0) {
        tb_config_free(c);
        return -1;
    }
    *out = c;
    return 0;
}

/* Reads the whole file (at most MAX_CONFIG_SIZE) into B. 0 ok, -1 with the reason in ERR. */
static int read_file(int fd, const char *path, struct tb_buf *b, char *err, size_t errlen)
{
    for (;;) {
        tb_buf_reserve(b, 4096);
        ssize_t r = read(fd, b->data + b->len, 4096);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            snprintf(err, errlen, "%s: %s", path, strerror(errno));
            return -1;
        }
        if (r == 0)
            break;
        b->len += (size_t)r;
        if (b->len > MAX_CONFIG_SIZE) {
            snprintf(err, errlen, "%s: larger than %d bytes", path, MAX_CONFIG_SIZE);
            return -1;
        }
    }
    if (memchr(b->data, '\0', b->len)) {
        snprintf(err, errlen, "%s: contains a NUL byte: not a text file", path);
        return -1;
    }
    return 0;
}

int tb_config_load(const char *path, struct tb_config **out, char *err, size_t errlen)
{
    char dummy[1];
    if (!err || !errlen) {
        err = dummy;
        errlen = sizeof(dummy);
    }
    *out = NULL;
    err[0] = '\0';
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    /* fstat on the descriptor we read from, so the mode checked is that of the file parsed. */
    struct stat st;
    if (fstat(fd, &st) < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "%s: not a regular file", path);
        close(fd);
        return -1;
    }
    struct tb_buf b;
    tb_buf_init(&b);
    /* Sized up front so the text is not copied around by reallocs (it may hold passwords). */
    if (st.st_size < MAX_CONFIG_SIZE)
        tb_buf_reserve(&b, (size_t)st.st_size + 1);
    int rc = read_file(fd, path, &b, err, errlen);
    close(fd);
    if (rc == 0)
        rc = tb_config_parse(tb_buf_cstr(&b), path, out, err, errlen);
    /* The text may hold inline passwords. */
    if (b.data)
        explicit_bzero(b.data, b.cap);
    tb_buf_free(&b);
    if (rc < 0)
        return -1;
    if (st.st_mode & (S_IRGRP | S_IROTH)) {
        for (size_t i = 0; i < (*out)->n_accounts; i++) {
            struct tb_account *a = (*out)->accounts[i];
            if (a->password) {
                snprintf(err, errlen,
                         "%s: account '%s': 'password' in a file readable by group or others "
                         "(chmod 600 %s, or use password-file or password-command)",
                         a->source, a->name, path);
                tb_config_free(*out);
                *out = NULL;
                return -1;
            }
        }
    }
    return 0;
}

void tb_config_free(struct tb_config *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->n_accounts; i++)
        tb_account_free(c->accounts[i]);
    free(c->accounts);
    for (size_t i = 0; i < c->n_pairs; i++)
        pair_free(c->pairs[i]);
    free(c->pairs);
    for (size_t i = 0; i < c->n_migrations; i++) {
        struct tb_migration *m = c->migrations[i];
        for (size_t j = 0; j < m->n; j++) {
            free(m->keys[j]);
            free(m->values[j]);
        }
        free(m->keys);
        free(m->values);
        free(m->lines);
        free(m->name);
        free(m->source);
        free(m);
    }
    free(c->migrations);
    free(c->path);
    free(c);
}

struct tb_account *tb_config_account(const struct tb_config *c, const char *name)
{
    for (size_t i = 0; i < c->n_accounts; i++)
        if (strcmp(c->accounts[i]->name, name) == 0)
            return c->accounts[i];
    return NULL;
}

struct tb_migration *tb_config_migration(const struct tb_config *c, const char *name)
{
    for (size_t i = 0; i < c->n_migrations; i++)
        if (strcmp(c->migrations[i]->name, name) == 0)
            return c->migrations[i];
    return NULL;
}

struct tb_pair *tb_config_pair(const struct tb_config *c, const char *name)
{
    for (size_t i = 0; i < c->n_pairs; i++)
        if (strcmp(c->pairs[i]->name, name) == 0)
            return c->pairs[i];
    return NULL;
}

int tb_config_default_path(char *buf, size_t len)
{
    const char *xdg = getenv("XDG_CONFIG_HOME");
    int n;
    /* The XDG spec says relative values are invalid and must be ignored. */
    if (xdg && xdg[0] == '/') {
        n = snprintf(buf, len, "%s/twinbox/config", xdg);
    } else {
        const char *home = getenv("HOME");
        if (!home || !*home) {
            struct passwd *pw = getpwuid(getuid());
            home = pw ? pw->pw_dir : NULL;
        }
        if (!home || !*home)
            return -1;
        n = snprintf(buf, len, "%s/.config/twinbox/config", home);
    }
    return n < 0 || (size_t)n >= len ? -1 : 0;
}
