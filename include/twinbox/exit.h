/* Process exit codes (documented in man/twinbox.1). Cron jobs and daemons branch on them:
 * TEMPFAIL means "retry later", the others need a person. */
#ifndef TWINBOX_EXIT_H
#define TWINBOX_EXIT_H

enum tb_exit {
    TB_EXIT_OK = 0,
    TB_EXIT_INTERNAL = 1, /* a bug or resource exhaustion */
    TB_EXIT_USAGE = 2,    /* bad command line */
    TB_EXIT_CONFIG = 3,   /* configuration file or account definition */
    TB_EXIT_AUTH = 4,     /* login refused, or TLS certificate not trusted */
    TB_EXIT_TEMPFAIL = 5, /* network, timeout, server unavailable or misbehaving: retry */
    TB_EXIT_LOCKED = 6,   /* another twinbox run holds this pair's lock */
    TB_EXIT_CONFLICT = 7, /* data needs a person's decision */
};

#endif
