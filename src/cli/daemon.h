/* `twinbox watch` as a daemon: one worker thread per pair, each with its own uv loop,
 * state database and connections (the engine keeps no global state; see daemon.c for
 * what else was checked for threads). The main thread owns signals (signalfd), the
 * control socket and reloads; workers only touch shared data under struct tb_daemon's
 * mutex.
 *
 * Ownership: the daemon owns every worker (active or retiring) and every loaded
 * configuration (struct tb_cfg_ref). A worker borrows its pair and accounts from the
 * configuration it was started with, which lives until the last worker using it is freed:
 * a reload that leaves a pair untouched keeps its worker, its thread and its
 * connections on the old configuration. */
#ifndef TWINBOX_CLI_DAEMON_H
#define TWINBOX_CLI_DAEMON_H

#include "twinbox/error.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct tb_config;
struct tb_pair;

enum tb_worker_state {
    TB_W_STARTING, /* thread created; waiting for a predecessor or a host slot */
    TB_W_SYNCING,  /* a run is in progress */
    TB_W_WAITING,  /* between runs: watching for a change, or the interval */
    TB_W_BACKOFF,  /* a run failed for a reason that may pass: retry after a delay */
    TB_W_PARKED,   /* configuration or authentication error: retried on reload */
    TB_W_STOPPED,  /* the thread has ended (or is about to) */
};
const char *tb_worker_state_name(enum tb_worker_state s);

/* A loaded configuration shared by the workers started from it. */
struct tb_cfg_ref {
    struct tb_config *cfg;
    unsigned refs; /* under the daemon's mutex */
};

/* Propagation histogram buckets (seconds); the +Inf bucket is count. */
#define TB_PROP_BUCKETS 10
extern const double tb_prop_bounds[TB_PROP_BUCKETS];

/* What a worker has done, for status and metrics: written by the worker under the
 * daemon's mutex, copied out under it. */
struct tb_pair_stats {
    enum tb_worker_state state;
    int64_t since;        /* unix time the state was entered */
    int64_t last_run;     /* unix time the last run ended; 0 none yet */
    int64_t last_success; /* unix time of the last run with exit 0; 0 none */
    int last_code;        /* exit code of the last run */
    char last_text[768];  /* its error line, or "ok" */
    char last_error[768]; /* the last failure's line ("" none); kept after recovery */
    int64_t next_run;     /* unix time the next run starts at the latest; 0 unknown */
    bool change_pending;  /* a wake-up saw a change the running/next run carries */
    uint64_t runs, runs_ok, runs_failed, copied, bytes, errors;
    uint64_t prop_count, prop_buckets[TB_PROP_BUCKETS];
    double prop_sum;
};

struct tb_daemon;

struct tb_worker {
    struct tb_daemon *d;
    struct tb_cfg_ref *ref;
    const struct tb_pair *pair; /* borrowed from ref->cfg */
    char hosts[2][256];         /* server host of each side ("" for tunnels): the slots */
    pthread_t thread;
    bool started, joined;
    volatile sig_atomic_t stop; /* set by the main thread: end after the current run */
    atomic_bool exited;         /* the thread's last act */
    bool retiring;              /* removed or replaced by a reload */
    struct tb_worker *prev;     /* a replaced worker this one waits for (same state file) */
    int final_code;             /* exit code of its last run, for --max-runs */
    struct tb_pair_stats st;    /* under d->mu */
    struct tb_worker *next;
};

struct tb_daemon {
    pthread_mutex_t mu;
    pthread_cond_t cv; /* host slots released, workers exited */
    const char *config_path;
    const char **only; /* PAIR arguments, or NULL: every pair */
    size_t n_only;
    double interval;
    long max_runs;
    unsigned max_per_host;
    const char *metrics_path; /* or NULL */
    pthread_mutex_t metrics_mu;
    struct tb_worker *workers; /* active and retiring, newest first */
    struct {
        char host[256];
        unsigned n;
    } hosts[256]; /* concurrent runs per host; hosts past the table are unbounded */
    size_t n_hosts;
    int64_t started;
};

/* The stop flag is a volatile sig_atomic_t because tb_watch_wait polls it through that
 * type; the daemon's own accesses are atomic, so the main thread's write and a worker's
 * reads are ordered. */
static inline bool tb_worker_stopping(struct tb_worker *w)
{
    return __atomic_load_n(&w->stop, __ATOMIC_ACQUIRE) != 0;
}
static inline void tb_worker_stop(struct tb_worker *w)
{
    __atomic_store_n(&w->stop, 1, __ATOMIC_RELEASE);
}

/* daemon.c: workers and configurations. */
void tb_daemon_init(struct tb_daemon *d);
/* Starts a worker for each pair of cfg that is wanted and not already served by an
 * identical one; stops those whose pair is gone or changed. Takes cfg (freed once
 * unused). Returns how many pairs are served. */
size_t tb_daemon_apply(struct tb_daemon *d, struct tb_config *cfg);
/* Sets every worker's stop flag. */
void tb_daemon_stop_all(struct tb_daemon *d);
/* Joins and frees workers that ended and are not needed by a successor; returns how many
 * active (not retiring) workers are still running. */
size_t tb_daemon_reap(struct tb_daemon *d);
/* Stops, joins and frees everything. */
void tb_daemon_free(struct tb_daemon *d);
/* Under d->mu: sets the state (and its since time). */
void tb_worker_set_state(struct tb_worker *w, enum tb_worker_state s);

/* daemon_hosts.c: the bound on concurrent runs per server host. Blocks until every host
 * of w has a free slot (true) or w->stop is set (false). */
bool tb_hosts_take(struct tb_worker *w);
void tb_hosts_release(struct tb_worker *w);

/* daemon_worker.c: the thread body. */
void *tb_worker_main(void *ud);

/* control_json.c: the status document (one JSON object), malloc'd. */
char *tb_daemon_status_json(struct tb_daemon *d);

/* metrics.c: rewrites d->metrics_path (temp file + rename); errors are logged once. */
void tb_metrics_write(struct tb_daemon *d);

/* control.c: the control socket. The default path: $XDG_RUNTIME_DIR/twinbox/control, else
 * $XDG_STATE_HOME/twinbox/control, else ~/.local/state/twinbox/control. */
int tb_control_default_path(char *buf, size_t len);
/* Creates the directory (0700) and listens (0600); -1 with the error logged. A path on
 * which another daemon answers is refused; a stale socket is replaced. */
int tb_control_listen(const char *path);
/* Serves one accepted client: reads one command line, answers, closes. */
void tb_control_serve(struct tb_daemon *d, int listen_fd);
/* Client: sends "status\n" to the daemon at path and copies its answer to stdout.
 * 0 ok, 1 no daemon answers there, -1 error (logged). */
int tb_control_query(const char *path, const char *cmd);

#endif
