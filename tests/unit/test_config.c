/* Configuration: INI parsing and validation, URL accounts, password resolution. */
#include "twinbox/config.h"
#include "tap.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char err[512];
static char tmpdir[] = "/tmp/tb-config-test-XXXXXX";

#define BASE "[account x]\ntype = imaps\nhost = h\nuser = u\n"
#define FP   "3f1c2d4e5f60718293a4b5c6d7e8f90112233445566778899aabbccddeeff001"

/* Parses TEXT (file name "config"); CHECKs success. The caller frees the result. */
static struct tb_config *ok(const char *text, const char *what)
{
    struct tb_config *c = NULL;
    int rc = tb_config_parse(text, "config", &c, err, sizeof(err));
    CHECK(rc == 0 && c, "%s (err: %s)", what, rc ? err : "");
    return c;
}

/* CHECKs that TEXT is refused with a message containing WANT. */
static void bad(const char *text, const char *want, const char *what)
{
    struct tb_config *c = (struct tb_config *)1;
    int rc = tb_config_parse(text, "config", &c, err, sizeof(err));
    CHECK(rc < 0 && !c && strstr(err, want), "%s refused: got '%s'", what, err);
    if (rc == 0)
        tb_config_free(c);
}

/* One extra line appended to a valid imaps account. */
static void bad_key(const char *line, const char *want)
{
    char text[512];
    snprintf(text, sizeof(text), BASE "%s\n", line);
    bad(text, want, line);
}

static struct tb_account *acct_with(const char *line, struct tb_config **cfg)
{
    char text[512];
    snprintf(text, sizeof(text), BASE "%s\n", line);
    char what[256];
    snprintf(what, sizeof(what), "%s", line);
    for (char *q = what; (q = strchr(q, '\n')) != NULL;)
        *q = ' '; /* one TAP line per test point */
    *cfg = ok(text, what);
    return *cfg ? tb_config_account(*cfg, "x") : NULL;
}

static void test_defaults_and_example(void)
{
    struct tb_config *c = ok("# example\n"
                             "; also a comment\n"
                             "\n"
                             "[account work]\n"
                             "type = imaps\n"
                             "host = imap.example.org\n"
                             "user = alice@example.org\n"
                             "password-file = /p/work.pass   # must not be group readable\n"
                             "compress = yes\n"
                             "\n"
                             "[account laptop]\n"
                             "  # indented comment\n"
                             "type = tunnel\n"
                             "command = /usr/lib/dovecot/imap -o mail_location=maildir:~/Mail\n"
                             "\n"
                             "[pair mail]\n"
                             "a = work\n"
                             "b = laptop\n"
                             "mailboxes = *\n"
                             "exclude = Trash, Junk\n",
                             "example config parses");
    if (!c)
        return;
    CHECK(c->n_accounts == 2 && c->n_pairs == 1, "two accounts, one pair");
    CHECK_STR(c->path, "config", "path recorded");
    struct tb_account *w = tb_config_account(c, "work");
    CHECK(w && w->type == TB_ACCOUNT_IMAPS, "work is imaps");
    CHECK(w && w->port == 993, "imaps default port 993");
    CHECK_STR(w ? w->host : "", "imap.example.org", "host");
    CHECK_STR(w ? w->user : "", "alice@example.org", "user with @");
    CHECK_STR(w ? w->password_file : "", "/p/work.pass", "trailing ' # comment' dropped");
    CHECK_STR(w ? w->source : "", "config:4", "source is file:line of the section");
    CHECK(w && w->tls_verify && w->compress && w->xreplicate && !w->allow_plaintext_password,
          "boolean defaults");
    CHECK(w && w->max_inflight == 512 && w->timeout_s == 60, "numeric defaults");
    CHECK(w && w->tls_fingerprint[0] == '\0' && !w->tls_ca_file && !w->password,
          "unset options are empty");
    struct tb_account *l = tb_config_account(c, "laptop");
    CHECK(l && l->type == TB_ACCOUNT_TUNNEL && !tb_account_needs_password(l),
          "tunnel needs no password");
    CHECK(w && tb_account_needs_password(w), "imaps needs a password");
    CHECK_STR(l ? l->command : "", "/usr/lib/dovecot/imap -o mail_location=maildir:~/Mail",
              "tunnel command kept verbatim");
    struct tb_pair *p = tb_config_pair(c, "mail");
    CHECK(p && strcmp(p->a, "work") == 0 && strcmp(p->b, "laptop") == 0, "pair a/b");
    CHECK(p && p->n_mailboxes == 1 && strcmp(p->mailboxes[0], "*") == 0, "mailboxes *");
    CHECK(p && p->n_exclude == 2 && strcmp(p->exclude[0], "Trash") == 0 &&
              strcmp(p->exclude[1], "Junk") == 0,
          "exclude list split and trimmed");
    CHECK(p && !p->state, "state unset");
    CHECK_STR(p ? p->source : "", "config:16", "pair source");
    CHECK(!tb_config_account(c, "nope") && !tb_config_pair(c, "work"), "lookups miss");
    tb_config_free(c);

    c = ok("[account i]\ntype = IMAP\nhost = h\nuser = u\n", "imap account");
    CHECK(c && c->accounts[0]->port == 143 && c->accounts[0]->starttls,
          "imap: port 143, STARTTLS required by default");
    tb_config_free(c);
    tb_config_free(NULL);
}

static void test_syntax(void)
{
    struct tb_config *c;
    c = ok("\xef\xbb\xbf[account x]\r\ntype = imaps\r\nhost = h\r\nuser = \"a b\"\r\n",
           "BOM and CRLF");
    CHECK_STR(c ? c->accounts[0]->user : "", "a b", "quotes removed, inner blank kept");
    tb_config_free(c);
    c = ok(BASE "password = \"x # y\" # comment\n", "quoted value with ' #'");
    CHECK_STR(c ? c->accounts[0]->password : "", "x # y", "quoted ' #' kept");
    tb_config_free(c);
    c = ok(BASE "password = \"a\"b\"\n", "quote inside quoted value");
    CHECK_STR(c ? c->accounts[0]->password : "", "a\"b", "inner quote kept");
    tb_config_free(c);
    c = ok(BASE "password = a#b;c\n", "'#' without blank before is data");
    CHECK_STR(c ? c->accounts[0]->password : "", "a#b;c", "a#b;c kept");
    tb_config_free(c);

    bad("[account x]\ntype = imaps\nhots = h\n", "config:3: account 'x': unknown key 'hots'",
        "unknown key, exact message");
    bad("host = h\n", "config:1: key 'host' outside of a section", "key outside a section");
    bad("# c\n[mailbox x]\n", "config:2: unknown section type 'mailbox'", "unknown section");
    bad("[account]\n", "config:1:", "section without name");
    bad("[account a b]\n", "config:1:", "section name with blank");
    bad("[account x\n", "config:1: section header without ']'", "unterminated header");
    bad("[account x] junk\n", "config:1: text after section header", "junk after header");
    bad(BASE "just words\n", "config:5: expected 'key = value'", "line without '='");
    bad(BASE " = v\n", "config:5: missing key", "missing key");
    bad(BASE "Host = v\n", "config:5: bad key 'Host'", "keys are lower case");
    bad(BASE "host = h2\n", "config:5: account 'x': duplicate key 'host' (first on line 3)",
        "duplicate key");
    bad(BASE "[account x]\n", "config:5: duplicate section [account x] (first at config:1)",
        "duplicate section");
    bad(BASE "password = \"abc\n", "config:5: password: unterminated quoted value",
        "unterminated quote");
    bad(BASE "user2 = \"\"\n", "unknown key 'user2'", "unknown key with empty value");
    bad_key("password = \"\"", "password: empty value");
    bad_key("command = # only a comment", "empty value");
    c = ok(BASE "[pair x]\na = x\nb = y\n[account y]\ntype = tunnel\ncommand = c\n",
           "account and pair may share a name; pair may precede its accounts");
    tb_config_free(c);
}

static void test_values(void)
{
    struct tb_config *c;
    struct tb_account *a;
    a = acct_with("port = 1", &c);
    CHECK(a && a->port == 1, "port 1");
    tb_config_free(c);
    a = acct_with("port = 65535", &c);
    CHECK(a && a->port == 65535, "port 65535");
    tb_config_free(c);
    bad_key("port = 0", "config:5: account 'x': port: '0' is not a number in 1..65535");
    bad_key("port = 65536", "port: '65536'");
    bad_key("port = 99999999999999999999", "port:");
    bad_key("port = -1", "port: '-1'");
    bad_key("port = 14 3", "port: '14 3'");
    bad_key("port = abc", "port: 'abc'");
    a = acct_with("max-inflight = 10000", &c);
    CHECK(a && a->max_inflight == 10000, "max-inflight 10000");
    tb_config_free(c);
    a = acct_with("max-inflight = 1", &c);
    CHECK(a && a->max_inflight == 1, "max-inflight 1");
    tb_config_free(c);
    bad_key("max-inflight = 0", "max-inflight: '0'");
    bad_key("max-inflight = 10001", "max-inflight: '10001'");
    a = acct_with("timeout = 3600", &c);
    CHECK(a && a->timeout_s == 3600, "timeout 3600");
    tb_config_free(c);
    a = acct_with("timeout = 1", &c);
    CHECK(a && a->timeout_s == 1, "timeout 1");
    tb_config_free(c);
    bad_key("timeout = 0", "timeout: '0'");
    bad_key("timeout = 3601", "timeout: '3601'");
    bad_key("timeout = 5s", "timeout: '5s'");

    static const char *const yes[] = {"yes", "true", "on", "1", "YES", "True"};
    static const char *const no[] = {"no", "false", "off", "0", "NO", "Off"};
    char line[128];
    for (size_t i = 0; i < 6; i++) {
        snprintf(line, sizeof(line), "allow-plaintext-password = %s", yes[i]);
        a = acct_with(line, &c);
        CHECK(a && a->allow_plaintext_password, "boolean '%s' is true", yes[i]);
        tb_config_free(c);
        snprintf(line, sizeof(line), "compress = %s", no[i]);
        a = acct_with(line, &c);
        CHECK(a && !a->compress, "boolean '%s' is false", no[i]);
        tb_config_free(c);
    }
    a = acct_with("tls-verify = no\nxreplicate = off", &c);
    CHECK(a && !a->tls_verify && !a->xreplicate, "tls-verify and xreplicate off");
    tb_config_free(c);
    static const char *const bools[] = {"tls-verify", "allow-plaintext-password", "compress",
                                        "xreplicate"};
    for (size_t i = 0; i < 4; i++) {
        snprintf(line, sizeof(line), "%s = maybe", bools[i]);
        char want[128];
        snprintf(want, sizeof(want), "%s: 'maybe' is not yes or no", bools[i]);
        bad_key(line, want);
    }
    bad("[account x]\ntype = imap\nhost = h\nuser = u\nstarttls = perhaps\n",
        "starttls: 'perhaps' is not yes or no", "starttls bad boolean");

    a = acct_with("tls-ca-file = /etc/ca.pem\npassword-env = MY_PW_1", &c);
    CHECK(a && a->tls_ca_file && strcmp(a->tls_ca_file, "/etc/ca.pem") == 0, "tls-ca-file");
    CHECK(a && a->password_env && strcmp(a->password_env, "MY_PW_1") == 0, "password-env");
    tb_config_free(c);
    bad_key("password-env = 1ABC", "password-env: '1ABC' is not an environment variable name");
    bad_key("password-env = A-B", "password-env: 'A-B'");
    a = acct_with("password-command = pass show mail\npassword-file = ~/pw", &c);
    CHECK_STR(a ? a->password_command : "", "pass show mail", "password-command");
    CHECK_STR(a ? a->password_file : "", "/home/tester/pw", "~/ expanded from HOME");
    tb_config_free(c);
    bad_key("password-file = ~bob/pw", "'~user' paths are not supported");
    bad("[account x]\ntype = pop3\n", "config:2: account 'x': type: 'pop3' is not imap, imaps",
        "bad type");
    bad("[account x]\nhost = h\n", "config:1: account 'x': missing 'type'", "missing type");
    bad("[account x]\ntype = imaps\nhost = a b\n", "host: 'a b' is not a host name",
        "host with blank");
    bad_key("host = [::1]", "config:5: account 'x': duplicate key 'host'");
    c = ok("[account x]\ntype = imaps\nuser = u\nhost = [::1]\n", "bracketed IPv6 host");
    CHECK_STR(c ? c->accounts[0]->host : "", "::1", "brackets stripped");
    tb_config_free(c);
}

static void test_fingerprint(void)
{
    static const struct {
        const char *in;
        bool good;
    } cases[] = {
        {FP, true},
        {"3F1C2D4E5F60718293A4B5C6D7E8F90112233445566778899AABBCCDDEEFF001", true},
        {"sha256:" FP, true},
        {"SHA256:" FP, true},
        {"3F:1C:2D:4E:5F:60:71:82:93:A4:B5:C6:D7:E8:F9:01:12:23:34:45:56:67:78:89:9A:AB:BC:CD:"
         "DE:EF:F0:01",
         true},
        {"sha256:3f:1c:2d:4e:5f:60:71:82:93:a4:b5:c6:d7:e8:f9:01:12:23:34:45:56:67:78:89:9a:ab:"
         "bc:cd:de:ef:f0:01",
         true},
        {"3f1c2d4e5f60718293a4b5c6d7e8f90112233445566778899aabbccddeeff00", false},
        {FP "1", false},
        {"zz1c2d4e5f60718293a4b5c6d7e8f90112233445566778899aabbccddeeff001", false},
        {"3f1:c2d4e5f60718293a4b5c6d7e8f90112233445566778899aabbccddeeff001", false},
        {"3f:1c2d:4e:5f:60:71:82:93:a4:b5:c6:d7:e8:f9:01:12:23:34:45:56:67:78:89:9a:ab:bc:cd:"
         "de:ef:f0:01:",
         false},
        {"sha1:" FP, false},
        {"sha256:", false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char text[512];
        snprintf(text, sizeof(text), BASE "tls-fingerprint = %s\n", cases[i].in);
        struct tb_config *c = NULL;
        int rc = tb_config_parse(text, "config", &c, err, sizeof(err));
        if (cases[i].good)
            CHECK(rc == 0 && strcmp(c->accounts[0]->tls_fingerprint, FP) == 0,
                  "fingerprint %zu normalized", i);
        else
            CHECK(rc < 0 && strstr(err, "config:5: account 'x': tls-fingerprint:"),
                  "fingerprint %zu refused (%s)", i, err);
        tb_config_free(c);
    }
}

static void test_validation(void)
{
    bad("[account x]\ntype = imaps\nuser = u\n[account y]\n",
        "config:1: account 'x': type imaps needs 'host'", "imaps needs host (section line)");
    bad("[account x]\ntype = imap\nhost = h\n", "config:1: account 'x': type imap needs 'user'",
        "imap needs user");
    bad("[account t]\ntype = tunnel\n", "config:1: account 't': type tunnel needs 'command'",
        "tunnel needs command");
    bad("[account t]\ntype = tunnel\ncommand = c\nhost = h\n",
        "config:4: account 't': 'host' does not apply to type tunnel", "tunnel with host");
    bad("[account t]\ntype = tunnel\ncommand = c\npassword-file = /f\n",
        "config:4: account 't': 'password-file' does not apply", "tunnel with password-file");
    bad_key("command = c", "config:5: account 'x': 'command' applies only to type tunnel");
    bad_key("starttls = no", "config:5: account 'x': 'starttls' applies only to type imap");
    bad("[account x]\ntype = imap\nhost = h\nuser = u\nstarttls = no\ntls-verify = no\n",
        "config:6: account 'x': 'tls-verify' has no effect with starttls = no",
        "tls key with starttls = no");
    struct tb_config *c =
        ok("[account x]\ntype = imap\nhost = h\nuser = u\nstarttls = no\nport = 1143\n"
           "allow-plaintext-password = yes\n",
           "plain imap");
    CHECK(c && !c->accounts[0]->starttls && c->accounts[0]->port == 1143 &&
              c->accounts[0]->allow_plaintext_password,
          "starttls = no, port, allow-plaintext-password");
    tb_config_free(c);

    const char *two = "[account a]\ntype = tunnel\ncommand = c\n"
                      "[account b]\ntype = tunnel\ncommand = d\n";
    char text[512];
    snprintf(text, sizeof(text), "%s[pair p]\na = a\nb = nope\n", two);
    bad(text, "config:7: pair 'p': b = nope: no [account nope] section", "unknown account b");
    snprintf(text, sizeof(text), "%s[pair p]\na = zz\nb = b\n", two);
    bad(text, "config:7: pair 'p': a = zz: no [account zz]", "unknown account a");
    snprintf(text, sizeof(text), "%s[pair p]\na = a\nb = a\n", two);
    bad(text, "config:7: pair 'p': a and b are the same account", "a == b");
    snprintf(text, sizeof(text), "%s[pair p]\na = a\n", two);
    bad(text, "config:7: pair 'p': missing 'b'", "missing b");
    snprintf(text, sizeof(text), "%s[pair p]\na = a\nb = b\nfolders = *\n", two);
    bad(text, "config:10: pair 'p': unknown key 'folders'", "unknown pair key");
    snprintf(text, sizeof(text), "%s[pair p]\na = a\nb = b\na = b\n", two);
    bad(text, "config:10: pair 'p': duplicate key 'a' (first on line 8)", "duplicate pair key");
    snprintf(text, sizeof(text), "%s[pair p]\na = a\nb = b\n[pair p]\n", two);
    bad(text, "config:10: duplicate section [pair p] (first at config:7)", "duplicate pair");
    snprintf(text, sizeof(text), "%s[pair p]\na = a\nb = b\nmailboxes = INBOX,,Sent\n", two);
    bad(text, "config:10: pair 'p': mailboxes: empty pattern", "empty mailbox pattern");
    snprintf(text, sizeof(text), "%s[pair p]\na = a\nb = b\nmailboxes =\n", two);
    bad(text, "config:10: pair 'p': mailboxes: empty value", "empty mailboxes");

    snprintf(text, sizeof(text),
             "%s[pair p]\na = a\nb = b\nmailboxes = INBOX , Archive/*\nexclude =\n"
             "state = ~/st.db\n",
             two);
    c = ok(text, "pair with every key");
    struct tb_pair *p = c ? tb_config_pair(c, "p") : NULL;
    CHECK(p && p->n_mailboxes == 2 && strcmp(p->mailboxes[0], "INBOX") == 0 &&
              strcmp(p->mailboxes[1], "Archive/*") == 0,
          "mailboxes list");
    CHECK(p && p->n_exclude == 0 && !p->exclude, "empty exclude is no patterns");
    CHECK_STR(p ? p->state : "", "/home/tester/st.db", "state path expanded");
    tb_config_free(c);
}

static int write_file(const char *name, const char *content, mode_t mode, char *path, size_t len)
{
    snprintf(path, len, "%s/%s", tmpdir, name);
    unlink(path);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        return -1;
    ssize_t n = write(fd, content, strlen(content));
    close(fd);
    return n == (ssize_t)strlen(content) && chmod(path, mode) == 0 ? 0 : -1;
}

static void test_load(void)
{
    char path[512];
    struct tb_config *c = (struct tb_config *)1;
    snprintf(path, sizeof(path), "%s/missing", tmpdir);
    CHECK(tb_config_load(path, &c, err, sizeof(err)) < 0 && !c &&
              strstr(err, "No such file or directory"),
          "missing file: %s", err);
    write_file("inline", BASE "password = Sekr1t\n", 0644, path, sizeof(path));
    CHECK(tb_config_load(path, &c, err, sizeof(err)) < 0 && strstr(err, "readable by group") &&
              strstr(err, ":1: account 'x'") && !strstr(err, "Sekr1t"),
          "inline password in a 0644 file refused without echo: %s", err);
    chmod(path, 0600);
    CHECK(tb_config_load(path, &c, err, sizeof(err)) == 0 && c &&
              strcmp(c->accounts[0]->password, "Sekr1t") == 0,
          "inline password in a 0600 file accepted");
    CHECK(c && strcmp(c->path, path) == 0, "cfg->path is the loaded path");
    tb_config_free(c);
    write_file("open", BASE, 0644, path, sizeof(path));
    CHECK(tb_config_load(path, &c, err, sizeof(err)) == 0, "0644 file without password is fine");
    tb_config_free(c);
    write_file("typo", "[account x]\ntype = imaps\nhots = h\n", 0600, path, sizeof(path));
    char want[600];
    snprintf(want, sizeof(want), "%s:3: account 'x': unknown key 'hots'", path);
    CHECK(tb_config_load(path, &c, err, sizeof(err)) < 0 && strcmp(err, want) == 0,
          "load error names FILE:LINE: %s", err);
    CHECK(tb_config_load(tmpdir, &c, err, sizeof(err)) < 0 && strstr(err, "not a regular file"),
          "directory refused: %s", err);

    char buf[256];
    setenv("XDG_CONFIG_HOME", "/xdg", 1);
    CHECK(tb_config_default_path(buf, sizeof(buf)) == 0 && strcmp(buf, "/xdg/twinbox/config") == 0,
          "default path from XDG_CONFIG_HOME");
    setenv("XDG_CONFIG_HOME", "rel", 1);
    CHECK(tb_config_default_path(buf, sizeof(buf)) == 0 &&
              strcmp(buf, "/home/tester/.config/twinbox/config") == 0,
          "relative XDG_CONFIG_HOME ignored");
    unsetenv("XDG_CONFIG_HOME");
    CHECK(tb_config_default_path(buf, sizeof(buf)) == 0 &&
              strcmp(buf, "/home/tester/.config/twinbox/config") == 0,
          "default path from HOME");
    CHECK(tb_config_default_path(buf, 10) < 0, "too small buffer refused");
}

static struct tb_account *url_ok(const char *url, const char *what)
{
    struct tb_account *a = NULL;
    int rc = tb_account_from_url(url, &a, err, sizeof(err));
    CHECK(rc == 0 && a, "%s (err: %s)", what, rc ? err : "");
    return a;
}

static void url_bad(const char *url, const char *want, const char *secret, const char *what)
{
    struct tb_account *a = (struct tb_account *)1;
    int rc = tb_account_from_url(url, &a, err, sizeof(err));
    CHECK(rc < 0 && !a && strstr(err, want) && (!secret || !strstr(err, secret)),
          "%s refused: got '%s'", what, err);
    if (rc == 0)
        tb_account_free(a);
}

static void test_url(void)
{
    struct tb_account *a = url_ok("imap://alice@mail.example.org", "imap URL");
    CHECK(a && a->type == TB_ACCOUNT_IMAP && a->port == 143 && a->starttls, "imap defaults");
    CHECK_STR(a ? a->host : "", "mail.example.org", "host");
    CHECK_STR(a ? a->user : "", "alice", "user");
    CHECK_STR(a ? a->password_env : "", "TWINBOX_PASSWORD", "password env default");
    CHECK_STR(a ? a->source : "", "URL", "source URL");
    CHECK_STR(a ? a->name : "", "imap://alice@mail.example.org", "name is the URL");
    CHECK(a && tb_account_needs_password(a), "imap URL needs a password");
    tb_account_free(a);

    a = url_ok("imaps://alice%40example.org@imap.example.org:1993/", "imaps with %40 and port");
    CHECK(a && a->type == TB_ACCOUNT_IMAPS && a->port == 1993, "imaps port 1993");
    CHECK_STR(a ? a->user : "", "alice@example.org", "%%40 decoded");
    CHECK_STR(a ? a->name : "", "imaps://alice%40example.org@imap.example.org:1993",
              "name without trailing slash");
    tb_account_free(a);
    a = url_ok("IMAPS://bob@h", "scheme is case-insensitive");
    CHECK(a && a->type == TB_ACCOUNT_IMAPS && a->port == 993, "imaps default port 993");
    tb_account_free(a);

    a = url_ok("imaps://bob@[::1]:10993", "IPv6 with port");
    CHECK_STR(a ? a->host : "", "::1", "IPv6 host without brackets");
    CHECK(a && a->port == 10993, "IPv6 port");
    CHECK_STR(a ? a->name : "", "imaps://bob@[::1]:10993", "IPv6 name keeps brackets");
    tb_account_free(a);
    a = url_ok("imap://bob@[2001:db8::1]", "IPv6 without port");
    CHECK_STR(a ? a->host : "", "2001:db8::1", "IPv6 host");
    tb_account_free(a);

    a = url_ok("imap://u@127.0.0.1:1143/?starttls=no&allow-plaintext-password=yes&timeout=5"
               "&max-inflight=7&compress=off&xreplicate=0",
               "query keys");
    CHECK(a && !a->starttls && a->allow_plaintext_password && a->timeout_s == 5 &&
              a->max_inflight == 7 && !a->compress && !a->xreplicate,
          "query keys applied");
    CHECK_STR(a ? a->name : "", "imap://u@127.0.0.1:1143", "name without query");
    tb_account_free(a);
    a = url_ok("imaps://u@h?tls-fingerprint=sha256%3A" FP "&tls-ca-file=%2Fetc%2Fca%20x.pem"
               "&tls-verify=no",
               "query without '/', percent-encoded values");
    CHECK(a && strcmp(a->tls_fingerprint, FP) == 0 && !a->tls_verify, "fingerprint in query");
    CHECK_STR(a ? a->tls_ca_file : "", "/etc/ca x.pem", "value percent-decoded");
    tb_account_free(a);
    a = url_ok("imaps://u@h/?password-command=pass+show+x&", "password-command in query");
    CHECK_STR(a ? a->password_command : "", "pass+show+x", "'+' is not a space");
    CHECK(a && !a->password_env, "no default env when a source is given");
    tb_account_free(a);
    a = url_ok("imaps://u@h/?password-env=MYPW", "password-env in query");
    CHECK_STR(a ? a->password_env : "", "MYPW", "password-env from query");
    tb_account_free(a);

    url_bad("imap://alice:Sekr1t@h", "contains a password", "Sekr1t", "user:pass@ refused");
    url_bad("imap://alice:Sekr1t@h", "TWINBOX_PASSWORD", NULL, "refusal names TWINBOX_PASSWORD");
    url_bad("imaps://alice:Se/kr?1t@h", "URL:", "kr", "password with / and ? not echoed");
    url_bad("imaps://alice:Se/kr1t@h", "contains a password", "kr1t", "password with '/'");
    url_bad("imaps://u@h/?password=Sekr1t", "TWINBOX_PASSWORD", "Sekr1t", "password= refused");
    url_bad("imaps://u@h/?host=x", "'host' is part of the URL", NULL, "host= refused");
    url_bad("imaps://u@h/?type=imap", "'type' is part of the URL", NULL, "type= refused");
    url_bad("imaps://u@h/?hots=x", "imaps://u@h: unknown key 'hots'", NULL, "unknown key");
    url_bad("imaps://u@h/?timeout=5&timeout=6", "duplicate key 'timeout'", NULL, "duplicate");
    url_bad("imaps://u@h/?timeout=0", "timeout: '0'", NULL, "bad value");
    url_bad("imaps://u@h/?compress", "without '='", NULL, "query item without '='");
    url_bad("imaps://u@h/?compress=%zz", "percent-encoding", NULL, "bad escape in query");
    url_bad("imaps://u@h/?starttls=no", "'starttls' applies only to type imap", NULL,
            "starttls on imaps");
    url_bad("imap://u@h/?starttls=no&tls-verify=no", "no effect with starttls = no", NULL,
            "tls key with starttls=no");
    url_bad("imap://u@h/?command=x", "'command' applies only to type tunnel", NULL, "command");
    url_bad("imap://u@h:0", "port: '0'", NULL, "port 0");
    url_bad("imap://u@h:65536", "port: '65536'", NULL, "port 65536");
    url_bad("imap://u@h:", "port: empty value", NULL, "empty port");
    url_bad("imap://h", "needs a user", NULL, "missing user");
    url_bad("imap://@h", "empty user", NULL, "empty user");
    url_bad("imap://u%4@h", "bad percent-encoding", NULL, "bad escape in user");
    url_bad("imap://u%00x@h", "bad percent-encoding", NULL, "encoded NUL");
    url_bad("imap://u@", "bad or missing host", NULL, "missing host");
    url_bad("imap://u@bad host", "bad or missing host", NULL, "host with blank");
    url_bad("imap://u@[zz::1]", "bad IPv6", NULL, "bad IPv6");
    url_bad("imap://u@[::1", "bad IPv6", NULL, "unterminated IPv6");
    url_bad("imap://u@[::1]x", "after ']'", NULL, "junk after IPv6");
    url_bad("imap://u@h/INBOX", "unexpected path", NULL, "path refused");
    url_bad("imap://u@h#frag", "unexpected path or fragment", NULL, "fragment refused");
    url_bad("pop3://u@h", "unsupported scheme", NULL, "other scheme");
    url_bad("work", "unsupported scheme", NULL, "not a URL");

    a = url_ok("tunnel:/usr/lib/dovecot/imap -o mail_location=maildir:~/Mail?x", "tunnel URL");
    CHECK(a && a->type == TB_ACCOUNT_TUNNEL && !tb_account_needs_password(a),
          "tunnel needs no password");
    CHECK_STR(a ? a->command : "", "/usr/lib/dovecot/imap -o mail_location=maildir:~/Mail?x",
              "command verbatim");
    CHECK_STR(a ? a->name : "", "tunnel:/usr/lib/dovecot/imap -o mail_location=maildir:~/Mail?x",
              "tunnel name is the URL");
    CHECK(a && !a->password_env && !a->host, "tunnel has no network fields");
    tb_account_free(a);
    url_bad("tunnel:", "needs a command", NULL, "empty tunnel");
    url_bad("tunnel:   ", "needs a command", NULL, "blank tunnel");
    tb_account_free(NULL);
}

/* Resolves the password of a one-account config whose extra lines are EXTRA. */
static int resolve(const char *extra, char **pw)
{
    char text[1024];
    snprintf(text, sizeof(text), BASE "%s", extra);
    struct tb_config *c = NULL;
    *pw = NULL;
    if (tb_config_parse(text, "config", &c, err, sizeof(err)) < 0)
        return -2;
    int rc = tb_account_password(c->accounts[0], pw, err, sizeof(err));
    tb_config_free(c);
    return rc;
}

static void pw_ok(const char *extra, const char *want, const char *what)
{
    char *pw;
    int rc = resolve(extra, &pw);
    CHECK(rc == 0 && pw && strcmp(pw, want) == 0, "%s (err: %s)", what, rc ? err : "");
    tb_password_free(pw);
}

static void pw_bad(const char *extra, const char *want, const char *secret, const char *what)
{
    char *pw;
    int rc = resolve(extra, &pw);
    CHECK(rc == -1 && !pw && strstr(err, want) && (!secret || !strstr(err, secret)),
          "%s refused: got '%s'", what, err);
    tb_password_free(pw);
}

static void test_password(void)
{
    char path[512], line[700];
    pw_ok("password = inline\n", "inline", "inline password");

    write_file("pw644", "Sekr1t\n", 0644, path, sizeof(path));
    snprintf(line, sizeof(line), "password-file = %s\n", path);
    pw_bad(line, "readable by group or others", "Sekr1t", "0644 password file refused");
    write_file("pw640", "Sekr1t\n", 0640, path, sizeof(path));
    snprintf(line, sizeof(line), "password-file = %s\n", path);
    pw_bad(line, "chmod 600", "Sekr1t", "0640 password file refused");
    write_file("pw600", "Sekr1t\nsecond line\n", 0600, path, sizeof(path));
    snprintf(line, sizeof(line), "password-file = %s\n", path);
    pw_ok(line, "Sekr1t", "0600 password file: first line");
    write_file("pwcrlf", "pw crlf\r\n", 0400, path, sizeof(path));
    snprintf(line, sizeof(line), "password-file = %s\n", path);
    pw_ok(line, "pw crlf", "CRLF stripped, blanks kept");
    write_file("pwnonl", "nonl", 0600, path, sizeof(path));
    snprintf(line, sizeof(line), "password-file = %s\n", path);
    pw_ok(line, "nonl", "file without final newline");
    write_file("pwempty", "\nSekr1t\n", 0600, path, sizeof(path));
    snprintf(line, sizeof(line), "password-file = %s\n", path);
    pw_bad(line, "the first line is empty", "Sekr1t", "empty first line");
    snprintf(line, sizeof(line), "password-file = %s/none\n", tmpdir);
    pw_bad(line, "No such file or directory", NULL, "missing password file");
    snprintf(line, sizeof(line), "password-file = %s\n", tmpdir);
    pw_bad(line, "not a regular file", NULL, "directory as password file");

    pw_ok("password-command = printf 'pw\\n'\n", "pw", "password-command");
    pw_ok("password-command = printf 'one\\ntwo\\n'\n", "one", "first line of output");
    pw_bad("password-command = echo Sekr1t; exit 3\n", "password-command failed (exit status 3)",
           "Sekr1t", "failing command, output not echoed");
    pw_bad("password-command = false\n", "exit status 1", NULL, "false");
    pw_bad("password-command = printf ''\n", "printed no password", NULL, "no output");
    pw_bad("password-command = kill -9 $$\n", "killed by signal 9", NULL, "killed command");
    pw_ok("password-command = yes long | head -c 100000; exit 0\n", "long",
          "large output drained, first line kept");

    setenv("TB_TEST_PW", "from env", 1);
    pw_ok("password-env = TB_TEST_PW\n", "from env", "password-env");
    unsetenv("TB_TEST_PW");
    pw_bad("password-env = TB_TEST_PW\n", "environment variable TB_TEST_PW is not set", NULL,
           "unset env, no terminal");
    setenv("TB_TEST_PW", "", 1);
    pw_bad("password-env = TB_TEST_PW\n", "TB_TEST_PW is not set", NULL, "empty env");
    pw_bad("", "x: no password configured", NULL, "no source at all");

    /* Resolution order. */
    setenv("TB_TEST_PW", "env", 1);
    snprintf(line, sizeof(line), "password-file = %s/pw600\npassword = inline\n", tmpdir);
    pw_ok(line, "inline", "password before password-file");
    snprintf(line, sizeof(line), "password-command = echo cmd\npassword-file = %s/pw600\n", tmpdir);
    pw_ok(line, "Sekr1t", "password-file before password-command");
    pw_ok("password-env = TB_TEST_PW\npassword-command = echo cmd\n", "cmd",
          "password-command before password-env");
    unsetenv("TB_TEST_PW");

    struct tb_account *a = NULL;
    char *pw = NULL;
    tb_account_from_url("imaps://u@h", &a, err, sizeof(err));
    setenv("TWINBOX_PASSWORD", "urlpw", 1);
    CHECK(a && tb_account_password(a, &pw, err, sizeof(err)) == 0 && strcmp(pw, "urlpw") == 0,
          "URL account reads TWINBOX_PASSWORD");
    tb_password_free(pw);
    unsetenv("TWINBOX_PASSWORD");
    CHECK(a && tb_account_password(a, &pw, err, sizeof(err)) < 0 && !pw &&
              strcmp(err, "imaps://u@h: no password configured (set password-file, "
                          "password-command or TWINBOX_PASSWORD)") == 0,
          "URL account without password: %s", err);
    tb_account_free(a);
    tb_password_free(NULL);
}

static void cleanup(void)
{
    static const char *const names[] = {"inline", "open",   "typo",   "pw644",  "pw640",
                                        "pw600",  "pwcrlf", "pwnonl", "pwempty"};
    char path[512];
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", tmpdir, names[i]);
        unlink(path);
    }
    rmdir(tmpdir);
}

/* Limits (max-line, max-response-line, max-message-size) and the pair's max-delete. */
static void test_limits(void)
{
    struct tb_config *c;
    struct tb_account *a = acct_with("", &c);
    CHECK(a && a->max_line == 8000 && a->max_response_line == (16u << 20) &&
              a->max_message_size == ((uint64_t)128 << 20),
          "limits default to 8000 / 16M / 128M");
    tb_config_free(c);
    a = acct_with("max-line = 4K\nmax-message-size = 2G\nmax-response-line = 1M", &c);
    CHECK(a && a->max_line == 4096 && a->max_message_size == ((uint64_t)2 << 30) &&
              a->max_response_line == (1u << 20),
          "sizes take K, M and G");
    tb_config_free(c);
    bad_key("max-line = 999", "max-line");
    bad_key("max-line = 2M", "max-line");
    bad_key("max-message-size = 5G", "max-message-size");
    bad_key("max-message-size = 1x", "max-message-size");
    bad_key("max-response-line = 18446744073709551617", "max-response-line");
    const char *pair = BASE "[account y]\ntype = imaps\nhost = h\nuser = u\n"
                            "[pair p]\na = x\nb = y\n";
    char text[512];
    const char *good[][3] = {{"", "0", "0"},
                             {"max-delete = 250\n", "1", "250"},
                             {"max-delete = 5%\n", "2", "5"},
                             {"max-delete = unlimited\n", "3", "0"}};
    for (size_t i = 0; i < 4; i++) {
        snprintf(text, sizeof(text), "%s%s", pair, good[i][0]);
        c = ok(text, "a max-delete setting");
        struct tb_pair *p = c ? tb_config_pair(c, "p") : NULL;
        CHECK(p && p->max_delete == (enum tb_max_delete)atoi(good[i][1]) &&
                  p->max_delete_value == (uint64_t)atoi(good[i][2]),
              "max-delete '%s' read", good[i][1]);
        tb_config_free(c);
    }
    const char *wrong[] = {"max-delete = 101%\n", "max-delete = -1\n", "max-delete = 5 %\n",
                           "max-delete = lots\n"};
    for (size_t i = 0; i < 4; i++) {
        snprintf(text, sizeof(text), "%s%s", pair, wrong[i]);
        bad(text, "max-delete", "a bad max-delete");
    }
}

int main(void)
{
    /* Deterministic environment: no terminal to prompt on, a known home. */
    if (!freopen("/dev/null", "r", stdin))
        return 1;
    setenv("HOME", "/home/tester", 1);
    unsetenv("XDG_CONFIG_HOME");
    unsetenv("TWINBOX_PASSWORD");
    if (!mkdtemp(tmpdir))
        return 1;
    test_defaults_and_example();
    test_syntax();
    test_values();
    test_fingerprint();
    test_validation();
    test_load();
    test_url();
    test_password();
    test_limits();
    cleanup();
    return tap_done();
}
