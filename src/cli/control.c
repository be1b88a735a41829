/* The daemon's control socket: a Unix stream socket (directory 0700, socket 0600, so only
 * the daemon's user connects) with a line protocol. A client sends one command line and
 * reads the answer until the daemon closes the connection:
 *   "status\n"  ->  one JSON document (control_json.c) and "\n"
 * Anything else gets {"error": "..."}. A client gets 2 s to send its line and to read the
 * answer; the daemon serves one client at a time from its main thread. */
#include "cli/daemon.h"

#include "twinbox/log.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

int tb_control_default_path(char *buf, size_t len)
{
    const char *run = getenv("XDG_RUNTIME_DIR"), *state = getenv("XDG_STATE_HOME");
    const char *home = getenv("HOME");
    int n;
    if (run && run[0] == '/')
        n = snprintf(buf, len, "%s/twinbox/control", run);
    else if (state && state[0] == '/')
        n = snprintf(buf, len, "%s/twinbox/control", state);
    else if (home && home[0] == '/')
        n = snprintf(buf, len, "%s/.local/state/twinbox/control", home);
    else
        return -1;
    return n < 0 || (size_t)n >= len ? -1 : 0;
}

static int address(const char *path, struct sockaddr_un *sa)
{
    memset(sa, 0, sizeof(*sa));
    sa->sun_family = AF_UNIX;
    if (strlen(path) >= sizeof(sa->sun_path))
        return -1;
    memcpy(sa->sun_path, path, strlen(path) + 1);
    return 0;
}

/* A connected socket to path, or -1 (errno set). */
static int dial(const char *path)
{
    struct sockaddr_un sa;
    if (address(path, &sa) < 0) {
        errno = ENAMETOOLONG;
        return -1;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

/* The socket's directory and its parents, the last one 0700. */
static int make_dir(const char *path)
{
    char dir[sizeof(((struct sockaddr_un *)0)->sun_path)];
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash || slash == dir)
        return 0;
    *slash = 0;
    for (char *p = dir + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = 0;
        if (mkdir(dir, 0700) < 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    if (mkdir(dir, 0700) < 0 && errno != EEXIST)
        return -1;
    struct stat sb;
    if (stat(dir, &sb) < 0 || !S_ISDIR(sb.st_mode))
        return -1;
    /* Ours and open to others (a RuntimeDirectory made 0755, say): close it. */
    if (sb.st_uid == geteuid() && (sb.st_mode & 077))
        chmod(dir, 0700);
    return 0;
}

int tb_control_listen(const char *path)
{
    struct sockaddr_un sa;
    if (address(path, &sa) < 0) {
        tb_log_error("control socket %s: path too long (at most %zu bytes)", path,
                     sizeof(sa.sun_path) - 1);
        return -1;
    }
    if (make_dir(path) < 0) {
        tb_log_error("control socket %s: cannot create its directory: %s", path, strerror(errno));
        return -1;
    }
    int other = dial(path);
    if (other >= 0) {
        close(other);
        tb_log_error("control socket %s: another twinbox watch answers there (give --control "
                     "PATH to run a second one)",
                     path);
        return -1;
    }
    unlink(path); /* stale: its daemon is gone */
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    /* Called before any worker thread exists, so the umask change is seen by no one else. */
    mode_t old = umask(0177);
    int ok = fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 && listen(fd, 16) == 0;
    umask(old);
    if (!ok) {
        tb_log_error("control socket %s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    chmod(path, 0600);
    return fd;
}

static void answer(int fd, const char *text)
{
    size_t len = strlen(text), off = 0;
    while (off < len) {
        ssize_t n = send(fd, text + off, len - off, MSG_NOSIGNAL);
        if (n <= 0)
            return; /* gone, or too slow (SO_SNDTIMEO) */
        off += (size_t)n;
    }
}

void tb_control_serve(struct tb_daemon *d, int listen_fd)
{
    int fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0)
        return;
    struct timeval tv = {2, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    char line[256];
    size_t n = 0;
    while (n < sizeof(line) - 1) {
        ssize_t r = recv(fd, line + n, sizeof(line) - 1 - n, 0);
        if (r <= 0)
            break;
        n += (size_t)r;
        if (memchr(line, '\n', n))
            break;
    }
    line[n] = 0;
    line[strcspn(line, "\r\n")] = 0;
    if (strcmp(line, "status") == 0) {
        char *doc = tb_daemon_status_json(d);
        answer(fd, doc);
        answer(fd, "\n");
        free(doc);
    } else {
        answer(fd, "{\"error\": \"unknown command (try status)\"}\n");
    }
    close(fd);
}

int tb_control_query(const char *path, const char *cmd)
{
    int fd = dial(path);
    if (fd < 0 && (errno == ENOENT || errno == ECONNREFUSED || errno == ENAMETOOLONG))
        return 1; /* no socket, or its daemon is gone */
    if (fd < 0) {
        tb_log_error("control socket %s: %s", path, strerror(errno));
        return -1;
    }
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    char req[64];
    snprintf(req, sizeof(req), "%s\n", cmd);
    answer(fd, req);
    char buf[8192];
    ssize_t r;
    size_t total = 0;
    while ((r = recv(fd, buf, sizeof(buf), 0)) > 0) {
        fwrite(buf, 1, (size_t)r, stdout);
        total += (size_t)r;
    }
    int e = errno;
    close(fd);
    if (r < 0 || total == 0) {
        tb_log_error("control socket %s: no answer from the daemon%s%s", path, r < 0 ? ": " : "",
                     r < 0 ? strerror(e) : "");
        return -1;
    }
    return 0;
}
