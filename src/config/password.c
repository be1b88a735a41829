/* Password resolution: inline, file, command, environment, terminal prompt, in that order;
 * for OAuth accounts the access token from oauth-token-command instead.
 *
 * Every buffer that held secret bytes is wiped (explicit_bzero) before it is freed, and no
 * message contains secret bytes: errors name the account, the source and the cause only.
 * The result is a malloc'd string owned by the caller and released with tb_password_free. */
#include "twinbox/config.h"

#include "config/config_internal.h"
#include "util/buf.h"
#include "util/env.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

extern char **environ;

/* A password longer than this is certainly a mistake (a key file, a binary). */
#define MAX_SECRET 4096

#define fail(a, err, errlen, ...) tb_config_fail(err, errlen, (a)->name, __VA_ARGS__)

/* Copies the first line of BUF[0..N) (without "\n" or "\r\n") into a new string, or returns
 * NULL if that line is empty. */
static char *first_line(const char *buf, size_t n)
{
    const char *nl = memchr(buf, '\n', n);
    size_t len = nl ? (size_t)(nl - buf) : n;
    if (len && buf[len - 1] == '\r')
        len--;
    return len ? tb_xstrndup(buf, len) : NULL;
}

/* Reads FD until EOF; keeps at most the first CAP bytes in BUF but drains the rest so a
 * writing child is never blocked or killed by SIGPIPE. Returns the bytes kept, or -1. */
static ssize_t read_all(int fd, char *buf, size_t cap, bool *truncated)
{
    size_t n = 0;
    char sink[512];
    *truncated = false;
    for (;;) {
        char *dst = n < cap ? buf + n : sink;
        size_t room = n < cap ? cap - n : sizeof(sink);
        ssize_t r = read(fd, dst, room);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -1;
        if (r == 0)
            break;
        if (dst == sink) {
            explicit_bzero(sink, sizeof(sink));
            *truncated = true;
        } else {
            n += (size_t)r;
        }
    }
    return (ssize_t)n;
}

static int from_file(const struct tb_account *a, char **out, char *err, size_t errlen)
{
    const char *path = a->password_file;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return fail(a, err, errlen, "password-file %s: %s", path, strerror(errno));
    /* Checked on the open descriptor: the file we read is the file whose mode we saw. */
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int e = errno;
        close(fd);
        return fail(a, err, errlen, "password-file %s: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return fail(a, err, errlen, "password-file %s: not a regular file", path);
    }
    if (st.st_mode & (S_IRGRP | S_IROTH)) {
        close(fd);
        return fail(a, err, errlen,
                    "password-file %s is readable by group or others: refusing to use it "
                    "(chmod 600 %s)",
                    path, path);
    }
    char *buf = tb_xmalloc(MAX_SECRET);
    bool truncated;
    ssize_t n = read_all(fd, buf, MAX_SECRET, &truncated);
    int e = errno;
    close(fd);
    int rc = 0;
    if (n < 0)
        rc = fail(a, err, errlen, "password-file %s: %s", path, strerror(e));
    else if (!memchr(buf, '\n', (size_t)n) && truncated)
        rc = fail(a, err, errlen, "password-file %s: first line longer than %d bytes", path,
                  MAX_SECRET);
    else if (!(*out = first_line(buf, (size_t)n)))
        rc = fail(a, err, errlen, "password-file %s: the first line is empty", path);
    explicit_bzero(buf, MAX_SECRET);
    free(buf);
    return rc;
}

/* Runs CMD by /bin/sh -c with the scrubbed environment and returns the first line of its
 * stdout. KEY ("password-command", "oauth-token-command") and WHAT ("password", "token")
 * name the source in messages; the output itself never appears in one. */
static int from_command(const struct tb_account *a, const char *cmd, const char *key,
                        const char *what, char **out, char *err, size_t errlen)
{
    int pfd[2];
    if (pipe2(pfd, O_CLOEXEC) < 0)
        return fail(a, err, errlen, "%s: pipe: %s", key, strerror(errno));
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, pfd[1], STDOUT_FILENO);
    /* The child gets default SIGPIPE handling and an empty signal mask even if this
     * process ignores or blocks signals (libuv programs often ignore SIGPIPE). */
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    sigset_t def, none;
    sigemptyset(&def);
    sigaddset(&def, SIGPIPE);
    sigemptyset(&none);
    posix_spawnattr_setsigdefault(&attr, &def);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
    char *argv[] = {(char *)"sh", (char *)"-c", (char *)cmd, NULL};
    pid_t pid;
    char **env = tb_env_child();
    int src = posix_spawn(&pid, "/bin/sh", &fa, &attr, argv, env);
    free(env);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    close(pfd[1]);
    if (src != 0) {
        close(pfd[0]);
        return fail(a, err, errlen, "%s: cannot run /bin/sh: %s", key, strerror(src));
    }
    char *buf = tb_xmalloc(MAX_SECRET);
    bool truncated;
    ssize_t n = read_all(pfd[0], buf, MAX_SECRET, &truncated);
    int e = errno;
    close(pfd[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    int rc = 0;
    if (n < 0)
        rc = fail(a, err, errlen, "%s: reading its output: %s", key, strerror(e));
    else if (WIFSIGNALED(status))
        rc = fail(a, err, errlen, "%s was killed by signal %d", key, WTERMSIG(status));
    else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        rc = fail(a, err, errlen, "%s failed (exit status %d)", key,
                  WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    else if (!memchr(buf, '\n', (size_t)n) && truncated)
        rc = fail(a, err, errlen, "%s: first line longer than %d bytes", key, MAX_SECRET);
    else if (!(*out = first_line(buf, (size_t)n)))
        rc = fail(a, err, errlen, "%s printed no %s", key, what);
    explicit_bzero(buf, MAX_SECRET);
    free(buf);
    return rc;
}

/* An access token goes between \x01 separators of the SASL message (RFC 7628): a control
 * character in it would end a field early or smuggle another one in. */
static int oauth_token(const struct tb_account *a, char **out, char *err, size_t errlen)
{
    int rc =
        from_command(a, a->oauth_token_command, "oauth-token-command", "token", out, err, errlen);
    if (rc < 0)
        return -1;
    for (const unsigned char *q = (const unsigned char *)*out; *q; q++) {
        if (*q < 0x20 || *q == 0x7f) {
            tb_password_free(*out);
            *out = NULL;
            return fail(a, err, errlen, "oauth-token-command printed control characters");
        }
    }
    return 0;
}

/* Set by the prompt's temporary handlers so read() returns and the terminal gets its echo
 * back before the signal is re-raised with the original disposition. */
static volatile sig_atomic_t prompt_signal;

static void on_prompt_signal(int sig)
{
    prompt_signal = sig;
}

static void write_all(int fd, const char *s, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, s, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return;
        s += w;
        n -= (size_t)w;
    }
}

static int from_tty(const struct tb_account *a, char **out, char *err, size_t errlen)
{
    int fd = open("/dev/tty", O_RDWR | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return fail(a, err, errlen, "cannot open /dev/tty to ask for the password: %s",
                    strerror(errno));
    struct termios old;
    if (tcgetattr(fd, &old) < 0) {
        int e = errno;
        close(fd);
        return fail(a, err, errlen, "/dev/tty: %s", strerror(e));
    }
    static const int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};
    enum { NSIG_ = sizeof(sigs) / sizeof(sigs[0]) };
    struct sigaction sa, saved[NSIG_];
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_prompt_signal; /* no SA_RESTART: read() must return EINTR */
    sigemptyset(&sa.sa_mask);
    prompt_signal = 0;
    for (int i = 0; i < NSIG_; i++)
        sigaction(sigs[i], &sa, &saved[i]);

    struct tb_buf prompt;
    tb_buf_init(&prompt);
    tb_buf_printf(&prompt, "Password for %s: ", a->name);
    write_all(fd, prompt.data, prompt.len);
    tb_buf_free(&prompt);
    struct termios noecho = old;
    noecho.c_lflag &= ~(tcflag_t)(ECHO | ECHOE | ECHOK | ECHONL);
    tcsetattr(fd, TCSAFLUSH, &noecho);

    char buf[MAX_SECRET];
    size_t n = 0;
    bool eol = false;
    while (!prompt_signal && n < sizeof(buf)) {
        char c;
        ssize_t r = read(fd, &c, 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        if (c == '\n' || c == '\r') {
            eol = true;
            break;
        }
        buf[n++] = c;
    }
    tcsetattr(fd, TCSAFLUSH, &old);
    write_all(fd, "\n", 1);
    close(fd);
    for (int i = 0; i < NSIG_; i++)
        sigaction(sigs[i], &saved[i], NULL);

    int rc = 0;
    if (prompt_signal) {
        raise(prompt_signal); /* with the original disposition: usually terminates */
        rc = fail(a, err, errlen, "password prompt interrupted");
    } else if (!eol && n == sizeof(buf)) {
        rc = fail(a, err, errlen, "password longer than %d bytes", MAX_SECRET);
    } else if (n == 0) {
        rc = fail(a, err, errlen, "no password entered");
    } else {
        *out = tb_xstrndup(buf, n);
    }
    explicit_bzero(buf, sizeof(buf));
    return rc;
}

int tb_account_password(const struct tb_account *a, char **out, char *err, size_t errlen)
{
    *out = NULL;
    if (err && errlen)
        err[0] = '\0';
    if (tb_account_uses_oauth(a))
        return oauth_token(a, out, err, errlen);
    if (a->password) {
        *out = tb_xstrdup(a->password);
        return 0;
    }
    if (a->password_file)
        return from_file(a, out, err, errlen);
    if (a->password_command)
        return from_command(a, a->password_command, "password-command", "password", out, err,
                            errlen);
    if (a->password_env) {
        tb_env_hide(a->password_env); /* never passed on to a child process */
        const char *v = getenv(a->password_env);
        if (v && *v) {
            *out = tb_xstrdup(v);
            return 0;
        }
    }
    if (isatty(STDIN_FILENO))
        return from_tty(a, out, err, errlen);
    /* TWINBOX_PASSWORD is only a default for URL accounts: suggesting it for an account of
     * the file would be wrong (one variable cannot serve both accounts of a pair). */
    if (a->password_env && strcmp(a->password_env, "TWINBOX_PASSWORD") != 0)
        return fail(a, err, errlen,
                    "no password: environment variable %s is not set and standard input is "
                    "not a terminal",
                    a->password_env);
    if (a->source && strcmp(a->source, "URL") == 0)
        return fail(a, err, errlen,
                    "no password configured (set password-file, password-command or "
                    "TWINBOX_PASSWORD)");
    return fail(a, err, errlen,
                "no password configured (set password, password-file, password-command or "
                "password-env)");
}

void tb_password_free(char *pw)
{
    if (!pw)
        return;
    explicit_bzero(pw, strlen(pw));
    free(pw);
}
