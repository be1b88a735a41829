#include "twinbox/state.h"

#include "state/state_internal.h"

#include "util/buf.h"

#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define SCHEMA_VERSION 5

static const char *schema_v1 =
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
    "CREATE TABLE mailbox ("
    "  id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, subscribed INTEGER NOT NULL,"
    "  uidvalidity_a INTEGER NOT NULL, uidnext_a INTEGER NOT NULL, hms_a INTEGER NOT NULL,"
    "  uidvalidity_b INTEGER NOT NULL, uidnext_b INTEGER NOT NULL, hms_b INTEGER NOT NULL);"
    "CREATE TABLE message ("
    "  mailbox INTEGER NOT NULL REFERENCES mailbox(id) ON DELETE CASCADE,"
    "  uid_a INTEGER NOT NULL, uid_b INTEGER NOT NULL, flags TEXT NOT NULL,"
    "  PRIMARY KEY (mailbox, uid_a));"
    "CREATE UNIQUE INDEX message_b ON message(mailbox, uid_b);";

/* v2: copies in flight. A row is written before a copy batch and removed with the pass
 * that recorded the copies; rows of another run are that run's unfinished copies, whose
 * APPEND the server may still complete after the crash (see tb_state_intents). */
static const char *schema_v2 = "CREATE TABLE intent ("
                               "  mailbox TEXT NOT NULL, run TEXT NOT NULL, side INTEGER NOT NULL,"
                               "  ident TEXT NOT NULL, size INTEGER NOT NULL,"
                               "  internaldate INTEGER NOT NULL, created INTEGER NOT NULL);"
                               "CREATE INDEX intent_mailbox ON intent(mailbox);";

/* v3: X-REPLICATE positions. Per side, the token (meta "xrep.token.a"/"xrep.token.b") and
 * per mailbox the HIGHESTMODSEQ that token holds for it, kept only where it equals the
 * state's own: only then is the server's delta relative to the state's base flags. */
static const char *schema_v3 = "CREATE TABLE xrep_mailbox ("
                               "  side INTEGER NOT NULL, name TEXT NOT NULL,"
                               "  hms INTEGER NOT NULL, PRIMARY KEY (side, name));";

/* v4: messages that could not be copied (the destination refused them, or the source could
 * not deliver them), so that one message never blocks a pair and is not lost either: the
 * UIDNEXT recorded past it does not hide it. See tb_state_skip_put. */
static const char *schema_v4 =
    "CREATE TABLE skipped ("
    "  mailbox TEXT NOT NULL, side INTEGER NOT NULL, uidvalidity INTEGER NOT NULL,"
    "  uid INTEGER NOT NULL, size INTEGER NOT NULL, msgid TEXT NOT NULL, flags TEXT NOT NULL,"
    "  reason TEXT NOT NULL, permanent INTEGER NOT NULL, attempts INTEGER NOT NULL,"
    "  run TEXT NOT NULL, first INTEGER NOT NULL, last INTEGER NOT NULL,"
    "  PRIMARY KEY (mailbox, side, uid));";

/* v5: replica mode's UID reservations (see tb_state_reserve_put, state/reserve.c). */
static const char *schema_v5 = "CREATE TABLE reserve ("
                               "  mailbox TEXT PRIMARY KEY, run TEXT NOT NULL,"
                               "  uid INTEGER NOT NULL);";

static int exec(struct tb_state *st, const char *sql)
{
    return sqlite3_exec(st->db, sql, NULL, NULL, NULL) == SQLITE_OK ? 0 : -1;
}

static int user_version(struct tb_state *st)
{
    sqlite3_stmt *s;
    int v = -1;
    if (sqlite3_prepare_v2(st->db, "PRAGMA user_version", -1, &s, NULL) != SQLITE_OK)
        return -1;
    if (sqlite3_step(s) == SQLITE_ROW)
        v = sqlite3_column_int(s, 0);
    sqlite3_finalize(s);
    return v;
}

int tb_state_open(const char *path, struct tb_state **out, char *err, size_t errlen)
{
    *out = NULL;
    /* Create the file ourselves so it is private from the first byte. */
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        snprintf(err, errlen, "state %s: %s", path, strerror(errno));
        return -1;
    }
    close(fd);
    struct tb_state *st = tb_xcalloc(1, sizeof(*st));
    if (sqlite3_open_v2(path, &st->db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "state %s: %s", path, sqlite3_errmsg(st->db));
        tb_state_close(st);
        return -1;
    }
    sqlite3_busy_timeout(st->db, 10000);
    /* A 1 MiB page cache instead of SQLite's 2 MB: a first sync's inserts filled it while
     * the copy window was full (heaptrack, 5,000 messages at 20 Mbit/s: 2.2 MB of 19.5 at
     * the peak). The kernel caches the file anyway: at 100,000 messages the initial sync
     * took 4.47 s of CPU against 4.70 with the default cache (one run each). */
    if (exec(st, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON; "
                 "PRAGMA cache_size=-1024") < 0) {
        snprintf(err, errlen, "state %s: %s", path, sqlite3_errmsg(st->db));
        tb_state_close(st);
        return -1;
    }
    int v = user_version(st);
    if (v > SCHEMA_VERSION || v < 0) {
        snprintf(err, errlen, "state %s: schema version %d is not supported (expected %d)", path, v,
                 SCHEMA_VERSION);
        tb_state_close(st);
        return -1;
    }
    /* Each step upgrades by one version in its own transaction. */
    static const char **steps[] = {&schema_v1, &schema_v2, &schema_v3, &schema_v4, &schema_v5};
    for (; v < SCHEMA_VERSION; v++) {
        char bump[64];
        snprintf(bump, sizeof(bump), "PRAGMA user_version = %d", v + 1);
        if (exec(st, "BEGIN") < 0 || exec(st, *steps[v]) < 0 || exec(st, bump) < 0 ||
            exec(st, "COMMIT") < 0) {
            snprintf(err, errlen, "state %s: cannot create schema version %d: %s", path, v + 1,
                     sqlite3_errmsg(st->db));
            tb_state_close(st);
            return -1;
        }
    }
    /* Not a schema version (older twinbox versions open the file unchanged): an index
     * for tb_state_intent_drop, which otherwise scans every intent of the mailbox for
     * each copy found, quadratic when a crashed run left 100,000 of them. */
    if (exec(st, "CREATE INDEX IF NOT EXISTS intent_match ON intent(mailbox, side, ident)") < 0) {
        snprintf(err, errlen, "state %s: cannot create an index: %s", path, sqlite3_errmsg(st->db));
        tb_state_close(st);
        return -1;
    }
    *out = st;
    return 0;
}

void tb_state_close(struct tb_state *st)
{
    if (!st)
        return;
    tb_state_stmts_free(st);
    sqlite3_close(st->db);
    free(st);
}

int tb_state_lock(const char *db_path, int *fd, char *err, size_t errlen)
{
    char lock[4096];
    snprintf(lock, sizeof(lock), "%s.lock", db_path);
    *fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (*fd < 0) {
        snprintf(err, errlen, "lock %s: %s", lock, strerror(errno));
        return -1;
    }
    if (flock(*fd, LOCK_EX | LOCK_NB) < 0) {
        int e = errno;
        close(*fd);
        *fd = -1;
        if (e == EWOULDBLOCK) {
            snprintf(err, errlen, "another twinbox run holds %s", lock);
            return 1;
        }
        snprintf(err, errlen, "lock %s: %s", lock, strerror(e));
        return -1;
    }
    return 0;
}

void tb_state_unlock(int fd)
{
    if (fd >= 0)
        close(fd); /* releases the flock */
}

static int mkdirs(char *path)
{
    for (char *p = path + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = 0;
        int r = mkdir(path, 0700);
        *p = '/';
        if (r < 0 && errno != EEXIST)
            return -1;
    }
    return 0;
}

int tb_state_default_path(const char *pair, char *buf, size_t len)
{
    return tb_state_path_for(pair, true, buf, len);
}

int tb_state_path_for(const char *pair, bool create, char *buf, size_t len)
{
    const char *xdg = getenv("XDG_STATE_HOME");
    const char *home = getenv("HOME");
    int n;
    if (xdg && xdg[0] == '/')
        n = snprintf(buf, len, "%s/twinbox/%s.db", xdg, pair);
    else if (home && home[0])
        n = snprintf(buf, len, "%s/.local/state/twinbox/%s.db", home, pair);
    else
        return -1;
    if (n < 0 || (size_t)n >= len)
        return -1;
    return create ? mkdirs(buf) : 0;
}

/* One cached statement without parameters, run to completion. */
static int run_sql(struct tb_state *st, const char *sql)
{
    sqlite3_stmt *s = tb_state_stmt(st, sql);
    return s ? tb_state_run(st, s) : -1;
}

int tb_state_begin(struct tb_state *st)
{
    return run_sql(st, "BEGIN IMMEDIATE");
}

int tb_state_commit(struct tb_state *st)
{
    return run_sql(st, "COMMIT");
}

void tb_state_rollback(struct tb_state *st)
{
    run_sql(st, "ROLLBACK");
}

const char *tb_state_error(struct tb_state *st)
{
    return sqlite3_errmsg(st->db);
}

static void fill_mailbox(sqlite3_stmt *s, void *elem)
{
    struct tb_state_mailbox *m = elem;
    m->id = sqlite3_column_int64(s, 0);
    m->name = tb_xstrdup((const char *)sqlite3_column_text(s, 1));
    m->subscribed = sqlite3_column_int(s, 2) != 0;
    for (int k = 0; k < 2; k++) {
        m->side[k].uidvalidity = (uint32_t)sqlite3_column_int64(s, 3 + 3 * k);
        m->side[k].uidnext = (uint32_t)sqlite3_column_int64(s, 4 + 3 * k);
        m->side[k].highestmodseq = (uint64_t)sqlite3_column_int64(s, 5 + 3 * k);
    }
}

int tb_state_mailboxes(struct tb_state *st, struct tb_state_mailbox **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    sqlite3_stmt *s = tb_state_stmt(st, "SELECT id, name, subscribed, uidvalidity_a, uidnext_a,"
                                        " hms_a, uidvalidity_b, uidnext_b, hms_b FROM mailbox"
                                        " ORDER BY name");
    if (!s)
        return -1;
    void *v;
    int r = tb_state_collect(st, s, sizeof(**out), fill_mailbox, &v, n);
    *out = v;
    return r;
}

void tb_state_mailboxes_free(struct tb_state_mailbox *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i].name);
    free(v);
}

int tb_state_mailbox_put(struct tb_state *st, struct tb_state_mailbox *mb)
{
    sqlite3_stmt *s = tb_state_stmt(
        st, mb->id ? "UPDATE mailbox SET name=?1, subscribed=?2, uidvalidity_a=?3, uidnext_a=?4,"
                     " hms_a=?5, uidvalidity_b=?6, uidnext_b=?7, hms_b=?8 WHERE id=?9"
                   : "INSERT INTO mailbox (name, subscribed, uidvalidity_a, uidnext_a, hms_a,"
                     " uidvalidity_b, uidnext_b, hms_b) VALUES (?1,?2,?3,?4,?5,?6,?7,?8)");
    if (!s)
        return -1;
    sqlite3_bind_text(s, 1, mb->name, -1, SQLITE_STATIC);
    sqlite3_bind_int(s, 2, mb->subscribed);
    for (int k = 0; k < 2; k++) {
        sqlite3_bind_int64(s, 3 + 3 * k, mb->side[k].uidvalidity);
        sqlite3_bind_int64(s, 4 + 3 * k, mb->side[k].uidnext);
        sqlite3_bind_int64(s, 5 + 3 * k, (sqlite3_int64)mb->side[k].highestmodseq);
    }
    if (mb->id)
        sqlite3_bind_int64(s, 9, mb->id);
    if (tb_state_run(st, s) < 0)
        return -1;
    if (!mb->id)
        mb->id = sqlite3_last_insert_rowid(st->db);
    return 0;
}

/* sql (static storage) with ?1 = id and, when text is given, ?2 = text. */
static int exec_id(struct tb_state *st, const char *sql, int64_t id, const char *text)
{
    sqlite3_stmt *s = tb_state_stmt(st, sql);
    if (!s)
        return -1;
    sqlite3_bind_int64(s, 1, id);
    if (text)
        sqlite3_bind_text(s, 2, text, -1, SQLITE_STATIC);
    return tb_state_run(st, s);
}

int tb_state_mailbox_delete(struct tb_state *st, int64_t id)
{
    /* Intents are kept by name: a later mailbox of that name must not inherit them. */
    if (exec_id(st, "DELETE FROM intent WHERE mailbox=(SELECT name FROM mailbox WHERE id=?1)", id,
                NULL) < 0 ||
        exec_id(st, "DELETE FROM skipped WHERE mailbox=(SELECT name FROM mailbox WHERE id=?1)", id,
                NULL) < 0)
        return -1;
    return exec_id(st, "DELETE FROM mailbox WHERE id=?1", id, NULL);
}

int tb_state_mailbox_rename(struct tb_state *st, int64_t id, const char *name)
{
    /* A renamed mailbox keeps its messages, so a crashed run's copies into it are still
     * to be recognised there. */
    if (exec_id(st,
                "UPDATE intent SET mailbox=?2 WHERE mailbox=(SELECT name FROM mailbox "
                "WHERE id=?1)",
                id, name) < 0 ||
        exec_id(st,
                "UPDATE skipped SET mailbox=?2 WHERE mailbox=(SELECT name FROM mailbox "
                "WHERE id=?1)",
                id, name) < 0)
        return -1;
    return exec_id(st, "UPDATE mailbox SET name=?2 WHERE id=?1", id, name);
}

int tb_state_message_count(struct tb_state *st, int64_t mailbox, uint64_t *n)
{
    *n = 0;
    sqlite3_stmt *s = tb_state_stmt(st, "SELECT COUNT(*) FROM message WHERE mailbox=?1");
    if (!s)
        return -1;
    sqlite3_bind_int64(s, 1, mailbox);
    int r = sqlite3_step(s);
    if (r == SQLITE_ROW)
        *n = (uint64_t)sqlite3_column_int64(s, 0);
    tb_state_done(st, s);
    return r == SQLITE_ROW ? 0 : -1;
}

static void fill_count(sqlite3_stmt *s, void *elem)
{
    struct tb_state_count *c = elem;
    c->mailbox = sqlite3_column_int64(s, 0);
    c->n = (uint64_t)sqlite3_column_int64(s, 1);
}

int tb_state_message_counts(struct tb_state *st, struct tb_state_count **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    sqlite3_stmt *s = tb_state_stmt(st, "SELECT mailbox, COUNT(*) FROM message GROUP BY mailbox"
                                        " ORDER BY mailbox");
    if (!s)
        return -1;
    void *v;
    int r = tb_state_collect(st, s, sizeof(**out), fill_count, &v, n);
    *out = v;
    return r;
}

int tb_state_msgs_clear(struct tb_state *st, int64_t mailbox)
{
    return exec_id(st, "DELETE FROM message WHERE mailbox=?1", mailbox, NULL);
}

static void fill_msg(sqlite3_stmt *s, void *elem)
{
    struct tb_state_msg *m = elem;
    m->uid[0] = (uint32_t)sqlite3_column_int64(s, 0);
    m->uid[1] = (uint32_t)sqlite3_column_int64(s, 1);
    m->flags = tb_xstrdup((const char *)sqlite3_column_text(s, 2));
}

int tb_state_messages(struct tb_state *st, int64_t mailbox, struct tb_state_msg **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    sqlite3_stmt *s = tb_state_stmt(st, "SELECT uid_a, uid_b, flags FROM message WHERE mailbox=?1"
                                        " ORDER BY uid_a");
    if (!s)
        return -1;
    sqlite3_bind_int64(s, 1, mailbox);
    void *v;
    int r = tb_state_collect(st, s, sizeof(**out), fill_msg, &v, n);
    *out = v;
    return r;
}

void tb_state_messages_free(struct tb_state_msg *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i].flags);
    free(v);
}

int tb_state_msg_put(struct tb_state *st, int64_t mailbox, uint32_t uid_a, uint32_t uid_b,
                     const char *flags)
{
    sqlite3_stmt *s = tb_state_stmt(st, "INSERT OR REPLACE INTO message (mailbox, uid_a, uid_b,"
                                        " flags) VALUES (?1, ?2, ?3, ?4)");
    if (!s)
        return -1;
    sqlite3_bind_int64(s, 1, mailbox);
    sqlite3_bind_int64(s, 2, uid_a);
    sqlite3_bind_int64(s, 3, uid_b);
    sqlite3_bind_text(s, 4, flags, -1, SQLITE_STATIC);
    return tb_state_run(st, s);
}

int tb_state_msg_delete(struct tb_state *st, int64_t mailbox, uint32_t uid_a)
{
    sqlite3_stmt *s = tb_state_stmt(st, "DELETE FROM message WHERE mailbox=?1 AND uid_a=?2");
    if (!s)
        return -1;
    sqlite3_bind_int64(s, 1, mailbox);
    sqlite3_bind_int64(s, 2, uid_a);
    return tb_state_run(st, s);
}

int tb_state_intent_add(struct tb_state *st, const char *mailbox, const char *run, int side,
                        const char *ident, uint32_t size, int64_t internaldate)
{
    sqlite3_stmt *s =
        tb_state_stmt(st, "INSERT INTO intent (mailbox, run, side, ident, size, internaldate,"
                          " created) VALUES (?1, ?2, ?3, ?4, ?5, ?6, strftime('%s','now'))");
    if (!s)
        return -1;
    sqlite3_bind_text(s, 1, mailbox, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, run, -1, SQLITE_STATIC);
    sqlite3_bind_int(s, 3, side);
    sqlite3_bind_text(s, 4, ident ? ident : "", -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 5, size);
    sqlite3_bind_int64(s, 6, internaldate);
    return tb_state_run(st, s);
}

static void fill_intent(sqlite3_stmt *s, void *elem)
{
    struct tb_state_intent *i = elem;
    i->side = sqlite3_column_int(s, 0);
    i->ident = tb_xstrdup((const char *)sqlite3_column_text(s, 1));
    i->size = (uint32_t)sqlite3_column_int64(s, 2);
    i->internaldate = sqlite3_column_int64(s, 3);
}

int tb_state_intents(struct tb_state *st, const char *mailbox, const char *run,
                     struct tb_state_intent **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    sqlite3_stmt *s = tb_state_stmt(st, "SELECT side, ident, size, internaldate FROM intent"
                                        " WHERE mailbox = ?1 AND run <> ?2");
    if (!s)
        return -1;
    sqlite3_bind_text(s, 1, mailbox, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, run, -1, SQLITE_STATIC);
    void *v;
    int r = tb_state_collect(st, s, sizeof(**out), fill_intent, &v, n);
    *out = v;
    return r;
}

void tb_state_intents_free(struct tb_state_intent *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i].ident);
    free(v);
}

int tb_state_intents_done(struct tb_state *st, const char *mailbox, const char *run,
                          int64_t max_age)
{
    sqlite3_stmt *s = tb_state_stmt(st, "DELETE FROM intent WHERE mailbox = ?1 AND (run = ?2 OR"
                                        " created < strftime('%s','now') - ?3)");
    if (!s)
        return -1;
    sqlite3_bind_text(s, 1, mailbox, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, run, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, max_age);
    return tb_state_run(st, s);
}

int tb_state_intent_drop(struct tb_state *st, const char *mailbox, const char *run,
                         const struct tb_state_intent *i)
{
    sqlite3_stmt *s =
        tb_state_stmt(st, "DELETE FROM intent WHERE rowid = (SELECT rowid FROM intent"
                          " WHERE mailbox = ?1 AND run <> ?2 AND side = ?3 AND ident = ?4"
                          " AND size = ?5 AND internaldate = ?6 LIMIT 1)");
    if (!s)
        return -1;
    sqlite3_bind_text(s, 1, mailbox, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, run, -1, SQLITE_STATIC);
    sqlite3_bind_int(s, 3, i->side);
    sqlite3_bind_text(s, 4, i->ident, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 5, i->size);
    sqlite3_bind_int64(s, 6, i->internaldate);
    return tb_state_run(st, s);
}

/* ---- X-REPLICATE positions ---- */

int tb_state_xrep_token(struct tb_state *st, int side, char **token)
{
    *token = NULL;
    sqlite3_stmt *s = tb_state_stmt(st, "SELECT value FROM meta WHERE key=?1");
    if (!s)
        return -1;
    sqlite3_bind_text(s, 1, side ? "xrep.token.b" : "xrep.token.a", -1, SQLITE_STATIC);
    int r = sqlite3_step(s);
    if (r == SQLITE_ROW)
        *token = tb_xstrdup((const char *)sqlite3_column_text(s, 0));
    tb_state_done(st, s);
    return r == SQLITE_ROW || r == SQLITE_DONE ? 0 : -1;
}

int tb_state_xrep_set(struct tb_state *st, int side, const char *token)
{
    const char *key = side ? "xrep.token.b" : "xrep.token.a";
    if (exec_id(st, "DELETE FROM xrep_mailbox WHERE side=?1", side, NULL) < 0)
        return -1;
    if (!token)
        return exec_id(st, "DELETE FROM meta WHERE key=?2", 0, key);
    sqlite3_stmt *s = tb_state_stmt(st, "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)");
    if (!s)
        return -1;
    sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, token, -1, SQLITE_TRANSIENT);
    return tb_state_run(st, s);
}

int tb_state_xrep_mailbox_put(struct tb_state *st, int side, const char *name, uint64_t hms)
{
    sqlite3_stmt *s = tb_state_stmt(
        st, "INSERT OR REPLACE INTO xrep_mailbox (side, name, hms) VALUES (?1,?2,?3)");
    if (!s)
        return -1;
    sqlite3_bind_int(s, 1, side);
    sqlite3_bind_text(s, 2, name, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(s, 3, (sqlite3_int64)hms);
    return tb_state_run(st, s);
}

int tb_state_xrep_mailbox(struct tb_state *st, int side, const char *name, uint64_t *hms)
{
    *hms = 0;
    sqlite3_stmt *s = tb_state_stmt(st, "SELECT hms FROM xrep_mailbox WHERE side=?1 AND name=?2");
    if (!s)
        return -1;
    sqlite3_bind_int(s, 1, side);
    sqlite3_bind_text(s, 2, name, -1, SQLITE_TRANSIENT);
    int r = sqlite3_step(s);
    if (r == SQLITE_ROW)
        *hms = (uint64_t)sqlite3_column_int64(s, 0);
    tb_state_done(st, s);
    return r == SQLITE_ROW || r == SQLITE_DONE ? 0 : -1;
}
