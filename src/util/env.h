/* The environment handed to child processes (tunnel commands, password-command).
 *
 * A password read from an environment variable must not reach the programs twinbox starts:
 * a tunnel's imap process or a password helper would otherwise inherit it (and show it in
 * /proc/PID/environ). Children get this process's environment minus every variable named
 * TWINBOX_PASSWORD or TWINBOX_PASSWORD_*, and minus every name given to tb_env_hide (the
 * password-env of an account once it was read). The variables stay in this process, which
 * may need them again (watch re-reads its passwords each run). Thread-safe. */
#ifndef TWINBOX_UTIL_ENV_H
#define TWINBOX_UTIL_ENV_H

/* Remembers NAME as secret for the rest of the process's life. */
void tb_env_hide(const char *name);
/* A NULL-terminated copy of environ without the hidden variables; the caller frees the array
 * (not the strings, which belong to environ) once the child is started. */
char **tb_env_child(void);

#endif
