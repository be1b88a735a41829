/* `twinbox migrate SRC DST`: one-way account migration on the sync engine.
 *
 * The engine runs with side a = SRC only read (EXAMINE, BODY.PEEK, every write refused by
 * the store) and side b = DST. Its state is the migration's own SQLite file, by default
 * $XDG_STATE_HOME/twinbox/migrate-<hash of both accounts>.db, so a rerun copies only
 * what is new on SRC, updates flags changed there, and finds the copies a killed run left
 * by their recorded intents: no duplicate, nothing missing. Messages already on DST are
 * paired by identity on the first run. A dry run works on a copy of the state, so nothing
 * is written anywhere. */
#include "cli/migrate.h"
#include "cli/verdict.h"

#include "sync/engine.h"
#include "twinbox/config.h"
#include "twinbox/error.h"
#include "twinbox/exit.h"
#include "twinbox/log.h"
#include "twinbox/state.h"
#include "util/buf.h"
#include "util/mutf7.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static int usage(void)
{
    tb_log_error("usage: twinbox migrate SRC DST [--dry-run] [--delete] [--force] "
                 "[--state FILE] [--only PATTERN]... [--exclude PATTERN]... [--since DATE] "
                 "[--before DATE] [--max-age DAYS] [--max-size BYTES] [--map FROM=TO]... "
                 "[--rename sXREXTOX] [--into FOLDER] [--include-all-mail] [--no-special-use-map] "
                 "[--subscribed-only] "
                 "[--password-file-src|-dst FILE] [--password-command-src|-dst CMD] "
                 "[--max-bytes-per-second N] [--max-messages-per-second N]");
    return TB_EXIT_USAGE;
}

/* YYYY-MM-DD (UTC midnight) to seconds since the epoch; -1 when malformed. */
static int64_t parse_date(const char *s)
{
    struct tm tm = {0};
    char tail;
    if (sscanf(s, "%4d-%2d-%2d%c", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tail) != 3 ||
        tm.tm_year < 1970 || tm.tm_mon < 1 || tm.tm_mon > 12 || tm.tm_mday < 1 || tm.tm_mday > 31)
        return -1;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return (int64_t)timegm(&tm);
}

/* A non-negative decimal number without sign or suffix; false when malformed. */
static bool parse_count(const char *s, uint64_t max, uint64_t *out)
{
    char *end;
    errno = 0;
    if (!s[0] || s[0] == '-' || s[0] == '+')
        return false;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v > max)
        return false;
    *out = v;
    return true;
}

/* --map FROM=TO: canonical names ('/' separated), neither empty. */
static bool add_map(struct tb_migrate_args *m, const char *v)
{
    const char *eq = strchr(v, '=');
    if (!eq || eq == v || !eq[1] || m->map.n >= MAX_PATTERNS)
        return false;
    char *copy = tb_xstrdup(v);
    copy[eq - v] = 0;
    m->map_buf[m->map.n] = copy;
    m->map_from[m->map.n] = copy;
    m->map_to[m->map.n++] = copy + (eq - v) + 1;
    return true;
}

/* --rename sXREXTOX with any delimiter X (names hold '/', so e.g. s|^Old|New|). */
static bool set_rename(struct tb_migrate_args *m, const char *v)
{
    if (v[0] != 's' || !v[1] || m->rename_buf)
        return false;
    char delim = v[1];
    const char *re = v + 2, *mid = strchr(re, delim);
    if (!mid || mid == re)
        return false;
    const char *end = strchr(mid + 1, delim);
    if (!end || end[1])
        return false;
    size_t rl = (size_t)(mid - re), tl = (size_t)(end - mid - 1);
    m->rename_buf = tb_xmalloc(rl + tl + 2);
    memcpy(m->rename_buf, re, rl);
    m->rename_buf[rl] = 0;
    memcpy(m->rename_buf + rl + 1, mid + 1, tl);
    m->rename_buf[rl + 1 + tl] = 0;
    m->map.rename_re = m->rename_buf;
    m->map.rename_to = m->rename_buf + rl + 1;
    regex_t rx;
    if (regcomp(&rx, m->map.rename_re, REG_EXTENDED) != 0)
        return false;
    regfree(&rx);
    return true;
}

/* --max-bytes-per-second / --max-messages-per-second: DST's account keys of the same names
 * (DST receives the APPENDs), replacing what its configuration says; UINT64_MAX = not
 * given. Set while the command line is parsed, before any migration (thread) starts. */
static uint64_t dst_limit[2] = {UINT64_MAX, UINT64_MAX};

/* A folder name or pattern as typed (UTF-8) in the wire form canonical names use (modified
 * UTF-7); NULL when it is not valid UTF-8. */
static const char *wire_arg(struct tb_migrate_args *m, const char *v)
{
    bool ascii = true;
    for (const char *p = v; *p && ascii; p++)
        ascii = (unsigned char)*p < 0x80;
    if (ascii)
        return v;
    if (m->n_owned >= sizeof(m->owned) / sizeof(*m->owned))
        return NULL;
    char *w = tb_utf8_to_mutf7(v);
    if (w)
        m->owned[m->n_owned++] = w;
    return w;
}

/* Options taking a value; false with a message for a bad one. */
static bool value_opt(struct tb_migrate_args *m, const char *opt, const char *v)
{
    uint64_t n;
    int64_t t;
    const char *w = wire_arg(m, v);
    if (!w && (strcmp(opt, "--only") == 0 || strcmp(opt, "--exclude") == 0 ||
               strcmp(opt, "--map") == 0 || strcmp(opt, "--into") == 0)) {
        tb_log_error("migrate: %s: '%s' is not UTF-8", opt, v);
        return false;
    }
    if (w && (strcmp(opt, "--only") == 0 || strcmp(opt, "--exclude") == 0 ||
              strcmp(opt, "--map") == 0 || strcmp(opt, "--into") == 0))
        v = w;
    if (strcmp(opt, "--state") == 0)
        m->state = v;
    else if (strcmp(opt, "--only") == 0 && m->n_only < MAX_PATTERNS)
        m->only[m->n_only++] = (char *)v;
    else if (strcmp(opt, "--exclude") == 0 && m->n_exclude < MAX_PATTERNS)
        m->exclude[m->n_exclude++] = (char *)v;
    else if (strcmp(opt, "--password-file-src") == 0 || strcmp(opt, "--password-file-dst") == 0)
        m->pw_file[opt[16] == 'd'] = v;
    else if (strcmp(opt, "--password-command-src") == 0 ||
             strcmp(opt, "--password-command-dst") == 0)
        m->pw_cmd[opt[19] == 'd'] = v;
    else if ((strcmp(opt, "--since") == 0 || strcmp(opt, "--before") == 0) &&
             (t = parse_date(v)) >= 0)
        *(strcmp(opt, "--since") == 0 ? &m->o.since : &m->o.before) = t;
    else if (strcmp(opt, "--max-age") == 0 && parse_count(v, 100000, &n))
        m->o.since = (int64_t)time(NULL) - (int64_t)n * 86400;
    else if (strcmp(opt, "--max-size") == 0 && parse_count(v, UINT64_MAX, &n) && n > 0)
        m->o.max_size = n;
    else if (strcmp(opt, "--report") == 0)
        m->report = v;
    else if (strcmp(opt, "--accounts") == 0)
        m->accounts = v;
    else if (strcmp(opt, "--jobs") == 0 && parse_count(v, 256, &n) && n > 0)
        m->jobs = (unsigned)n;
    else if (strcmp(opt, "--max-per-host") == 0 && parse_count(v, 256, &n) && n > 0)
        m->per_host = (unsigned)n;
    else if (strcmp(opt, "--retries") == 0 && parse_count(v, 1000, &n))
        m->retries = (unsigned)n;
    else if (strcmp(opt, "--max-bytes-per-second") == 0 && parse_count(v, (uint64_t)4 << 30, &n))
        dst_limit[0] = n;
    else if (strcmp(opt, "--max-messages-per-second") == 0 && parse_count(v, 100000, &n))
        dst_limit[1] = n;
    else if (strcmp(opt, "--map") == 0 && add_map(m, v))
        ;
    else if (strcmp(opt, "--rename") == 0 && set_rename(m, v))
        ;
    else if (strcmp(opt, "--into") == 0 && v[0] && v[0] != '/' && v[strlen(v) - 1] != '/')
        m->map.into = v;
    else {
        tb_log_error("migrate: bad value for %s: '%s'", opt, v);
        return false;
    }
    return true;
}

static int parse_args(int argc, char **argv, struct tb_migrate_args *m)
{
    size_t n_sides = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--dry-run") == 0)
            m->o.dry_run = true;
        else if (strcmp(a, "--delete") == 0)
            m->o.mirror = true;
        else if (strcmp(a, "--force") == 0)
            m->o.force = true;
        else if (strcmp(a, "--include-all-mail") == 0)
            m->map.include_all = true;
        else if (strcmp(a, "--no-special-use-map") == 0)
            m->map.no_special = true;
        else if (strcmp(a, "--subscribed-only") == 0)
            m->map.subscribed_only = true;
        else if (a[0] == '-' && a[1] == '-' && i + 1 < argc) {
            if (!value_opt(m, a, argv[++i]))
                return TB_EXIT_USAGE;
        } else if (a[0] == '-' || n_sides == 2)
            return usage();
        else
            m->side[n_sides++] = a;
    }
    if (n_sides != (m->accounts ? 0u : 2u) || (m->accounts && m->state))
        return usage();
    if (m->o.since && m->o.before && m->o.before <= m->o.since) {
        tb_log_error("migrate: --before is not after --since");
        return TB_EXIT_USAGE;
    }
    m->o.one_way = true;
    m->o.source = 0;
    m->map.from = m->map_from;
    m->map.to = m->map_to;
    m->o.map = &m->map;
    return TB_EXIT_OK;
}

/* Replaces an account's password source: an option, else $TWINBOX_PASSWORD_SRC/_DST when
 * set, else what the account (or $TWINBOX_PASSWORD for a URL) says. */
static void password_source(struct tb_account *acct, const char *file, const char *cmd,
                            const char *env)
{
    if (!file && !cmd && !(env && getenv(env)))
        return;
    if (acct->password)
        explicit_bzero(acct->password, strlen(acct->password));
    free(acct->password);
    free(acct->password_file);
    free(acct->password_command);
    free(acct->password_env);
    acct->password = acct->password_file = acct->password_command = acct->password_env = NULL;
    if (file)
        acct->password_file = tb_xstrdup(file);
    else if (cmd)
        acct->password_command = tb_xstrdup(cmd);
    else
        acct->password_env = tb_xstrdup(env);
}

/* One side: the account found, its password source replaced as the options say, then its
 * password read. */
static int load_side(const struct tb_cli *cli, const struct tb_migrate_args *m, int k,
                     struct tb_cli_account *out)
{
    int rc = tb_cli_account_find(cli, m->side[k], out);
    if (rc != TB_EXIT_OK)
        return rc;
    if (k == 1 && dst_limit[0] != UINT64_MAX)
        out->acct->max_bytes_per_second = dst_limit[0];
    if (k == 1 && dst_limit[1] != UINT64_MAX)
        out->acct->max_messages_per_second = dst_limit[1];
    password_source(out->acct, m->pw_file[k], m->pw_cmd[k],
                    m->pw_env[k]   ? m->pw_env[k]
                    : m->o.one_way ? (k ? "TWINBOX_PASSWORD_DST" : "TWINBOX_PASSWORD_SRC")
                                   : (k ? "TWINBOX_PASSWORD_B" : "TWINBOX_PASSWORD_A"));
    return tb_cli_account_unlock(out);
}

/* The default state file: one per (SRC, DST) account pair, named by a digest of both. */
static int state_path(const struct tb_migrate_args *m, const struct tb_cli_account s[2], char *buf,
                      size_t len)
{
    if (m->state) {
        snprintf(buf, len, "%s", m->state);
        return 0;
    }
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    char key[2048];
    snprintf(key, sizeof(key), "%s\n%s\n%s\n%s", s[0].acct->name,
             s[0].acct->user ? s[0].acct->user : "", s[1].acct->name,
             s[1].acct->user ? s[1].acct->user : "");
    EVP_Digest(key, strlen(key), md, &mdlen, EVP_sha256(), NULL);
    char name[64];
    int at = snprintf(name, sizeof(name), "%s-", m->o.one_way ? "migrate" : "sync");
    for (unsigned i = 0; i < 8; i++)
        snprintf(name + at + 2 * i, 3, "%02x", md[i]);
    return tb_state_path_for(name, !m->o.dry_run, buf, len);
}

/* A dry run reads a copy of the state (or none), so that nothing is written anywhere. */
static int dry_copy(const char *path, char *tmp, size_t len)
{
    const char *dir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(tmp, len, "%s/twinbox-dry-XXXXXX", dir);
    int out = mkstemp(tmp);
    if (out < 0)
        return -1;
    int in = open(path, O_RDONLY | O_CLOEXEC);
    char buf[65536];
    ssize_t n = 0;
    while (in >= 0 && (n = read(in, buf, sizeof(buf))) > 0)
        if (write(out, buf, (size_t)n) != n) {
            n = -1;
            break;
        }
    if (in >= 0)
        close(in);
    close(out);
    return n < 0 ? -1 : 0;
}

/* Temporary failures (a dropped connection, a server asking to slow down) end a run; the
 * run is resumable, so the migration starts it again after a pause: exponential from 2 s,
 * with jitter, at most 5 minutes, or what the server suggested; up to --retries times
 * (default 10). Each retry is one line; the last line counts them. */
static int run_with_retries(const struct tb_migrate_args *m, const struct tb_pair *pair,
                            const struct tb_account *acct[2], const char *pws[2], const char *path,
                            struct tb_cli_result *total)
{
    int rc = TB_EXIT_OK;
    unsigned retries = 0;
    for (;;) {
        struct tb_cli_result res = {0};
        if (m->o.verdict == tb_verdicts_collect)
            tb_verdicts_free(m->o.verdict_ud); /* only the last run's verdict counts */
        rc = tb_cli_run_pair(pair, acct, pws, path, &m->o, &res);
        const struct tb_error e = res.err;
        if (total) {
            total->err = res.err;
            total->copied += res.copied;
            total->matched += res.matched;
            total->skipped = res.skipped;
            total->bytes += res.bytes;
        }
        if (rc != TB_EXIT_TEMPFAIL || retries >= m->retries || m->o.dry_run)
            break;
        uint64_t ms = 2000ull << (retries < 8 ? retries : 8);
        const char *hint = strcasestr(e.msg, "Suggested Backoff Time: ");
        uint64_t suggested = hint ? strtoull(hint + 24, NULL, 10) : 0;
        if (suggested > ms)
            ms = suggested;
        if (ms > 300000)
            ms = 300000;
        ms = ms / 2 + (uint64_t)rand() % (ms / 2 + 1); /* jitter: [ms/2, ms] */
        if (m->retry_scale)
            ms = ms * m->retry_scale / 1000;
        retries++;
        tb_log_warn("migrate: temporary failure; resuming in %.1f s (retry %u of %u)",
                    (double)ms / 1000, retries, m->retries);
        struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
    if (retries)
        printf("%s: %u temporary failure%s survived (reconnected and resumed)\n", pair->name,
               retries, retries == 1 ? "" : "s");
    return rc;
}

int tb_migrate_one(const struct tb_cli *cli, const struct tb_migrate_args *m, const char *label,
                   struct tb_cli_result *res)
{
    int rc = TB_EXIT_OK;
    struct tb_cli_account s[2] = {{0}, {0}};
    for (int k = 0; k < 2 && rc == TB_EXIT_OK; k++)
        rc = load_side(cli, m, k, &s[k]);
    char path[4096], tmp[4200] = "";
    if (rc == TB_EXIT_OK && state_path(m, s, path, sizeof(path)) < 0) {
        tb_log_error("%s: cannot create the state directory", label);
        rc = TB_EXIT_CONFIG;
    }
    if (rc == TB_EXIT_OK && m->o.dry_run && dry_copy(path, tmp, sizeof(tmp)) < 0) {
        tb_log_error("%s: cannot copy the state for a dry run: %s", label, strerror(errno));
        rc = TB_EXIT_CONFIG;
    }
    if (rc == TB_EXIT_OK) {
        char *all[] = {"*"};
        struct tb_pair pair = {.name = (char *)label,
                               .a = s[0].acct->name,
                               .b = s[1].acct->name,
                               .mailboxes = m->n_only ? (char **)m->only : all,
                               .n_mailboxes = m->n_only ? m->n_only : 1,
                               .exclude = (char **)m->exclude,
                               .n_exclude = m->n_exclude};
        if (!m->o.dry_run)
            fprintf(stderr, "twinbox: %s: state %s\n", label, path);
        const struct tb_account *acct[2] = {s[0].acct, s[1].acct};
        const char *pws[2] = {s[0].password, s[1].password};
        struct tb_verdicts col = {0};
        struct tb_migrate_args with = *m;
        if (m->o.one_way && !m->o.dry_run) {
            with.o.verdict = tb_verdicts_collect;
            with.o.verdict_ud = &col;
        }
        rc = run_with_retries(&with, &pair, acct, pws, m->o.dry_run ? tmp : path, res);
        if (rc == TB_EXIT_OK && with.o.verdict)
            rc = tb_verdicts_print(&col, label, m->report, s[0].acct->name, s[1].acct->name);
        tb_verdicts_free(&col);
    }
    if (tmp[0]) {
        static const char *const ext[] = {"", "-wal", "-shm", ".lock"};
        for (size_t i = 0; i < 4; i++) {
            char f[4300];
            snprintf(f, sizeof(f), "%s%s", tmp, ext[i]);
            unlink(f);
        }
    }
    tb_cli_account_free(&s[0]);
    tb_cli_account_free(&s[1]);
    return rc;
}

static bool is_flag(const char *a)
{
    static const char *const flags[] = {
        "--dry-run",        "--delete", "--force", "--include-all-mail", "--no-special-use-map",
        "--subscribed-only"};
    for (size_t i = 0; i < sizeof(flags) / sizeof(*flags); i++)
        if (strcmp(a, flags[i]) == 0)
            return true;
    return false;
}

/* `migrate NAME [options]`: the keys of [migration NAME] become options placed before the
 * command line's (so the command line wins for single values and adds to lists). Returns
 * an exit code; *argv2 (owned strings in *owned) replaces argv when a section was used. */
static int expand_migration(const struct tb_cli *cli, int argc, char **argv, int *argc2,
                            char ***argv2, struct tb_config **cfg, struct tb_migrate_args *m)
{
    int pos = -1, n_pos = 0;
    for (int i = 0; i < argc; i++) {
        if (argv[i][0] == '-' && !is_flag(argv[i]))
            i++; /* its value */
        else if (argv[i][0] != '-' && n_pos++ == 0)
            pos = i;
    }
    if (n_pos != 1 || tb_cli_is_url(argv[pos]))
        return TB_EXIT_OK;
    char path[4096];
    int rc = tb_cli_config_load(cli, cfg, path, sizeof(path));
    if (rc != TB_EXIT_OK)
        return rc;
    const struct tb_migration *mig = tb_config_migration(*cfg, argv[pos]);
    if (!mig) {
        tb_log_error("%s: no [migration %s] section", path, argv[pos]);
        return TB_EXIT_CONFIG;
    }
    char **v = tb_xcalloc(2 * mig->n + (size_t)argc + 3, sizeof(char *));
    int n = 0;
    for (int pass = 0; pass < 2; pass++) /* source, destination first */
        for (size_t i = 0; i < mig->n; i++)
            if (strcmp(mig->keys[i], pass ? "destination" : "source") == 0)
                v[n++] = mig->values[i];
    for (size_t i = 0; i < mig->n; i++) {
        const char *k = mig->keys[i];
        if (strcmp(k, "source") == 0 || strcmp(k, "destination") == 0)
            continue;
        char opt[80];
        snprintf(opt, sizeof(opt), "--%s", k);
        if (is_flag(opt) && strcmp(mig->values[i], "yes") != 0 &&
            strcmp(mig->values[i], "no") != 0) {
            tb_log_error("%s:%d: migration '%s': %s: want yes or no", path, mig->lines[i],
                         mig->name, k);
            free(v);
            return TB_EXIT_CONFIG;
        }
        if (is_flag(opt) && strcmp(mig->values[i], "no") == 0)
            continue;
        if (m->n_owned >= sizeof(m->owned) / sizeof(*m->owned)) {
            tb_log_error("%s: migration '%s': too many keys", path, mig->name);
            free(v);
            return TB_EXIT_CONFIG;
        }
        char *o = tb_xstrdup(opt); /* freed with the other owned strings of m */
        m->owned[m->n_owned++] = o;
        v[n++] = o;
        if (!is_flag(opt))
            v[n++] = mig->values[i];
    }
    for (int i = 0; i < argc; i++)
        if (i != pos)
            v[n++] = argv[i];
    *argc2 = n;
    *argv2 = v;
    return TB_EXIT_OK;
}

int tb_cmd_migrate(const struct tb_cli *cli, int argc, char **argv)
{
    struct tb_migrate_args m = {.retries = 10, .jobs = 4};
    const char *scale = getenv("TWINBOX_TEST_RETRY_SCALE");
    m.retry_scale = scale ? strtoull(scale, NULL, 10) : 0;
    srand((unsigned)time(NULL) ^ (unsigned)getpid());
    struct tb_config *cfg = NULL;
    char **argv2 = NULL;
    int argc2 = 0;
    int rc = expand_migration(cli, argc, argv, &argc2, &argv2, &cfg, &m);
    if (rc == TB_EXIT_OK)
        rc = argv2 ? parse_args(argc2, argv2, &m) : parse_args(argc, argv, &m);
    if (rc == TB_EXIT_OK)
        rc = m.accounts ? tb_migrate_many(cli, &m) : tb_migrate_one(cli, &m, "migrate", NULL);
    for (size_t i = 0; i < m.map.n; i++)
        free(m.map_buf[i]);
    for (size_t i = 0; i < m.n_owned; i++)
        free(m.owned[i]);
    free(m.rename_buf);
    free(argv2);
    tb_config_free(cfg);
    return rc;
}
