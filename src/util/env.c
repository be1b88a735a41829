#include "util/env.h"

#include "util/buf.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

extern char **environ;

/* Migrations of several accounts run in threads (migrate --jobs): the list is shared. */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static char **hidden; /* names, owned */
static size_t n_hidden;

void tb_env_hide(const char *name)
{
    pthread_mutex_lock(&mu);
    bool known = false;
    for (size_t i = 0; i < n_hidden && !known; i++)
        known = strcmp(hidden[i], name) == 0;
    if (!known) {
        hidden = tb_xrealloc(hidden, (n_hidden + 1) * sizeof(*hidden));
        hidden[n_hidden++] = tb_xstrdup(name);
    }
    pthread_mutex_unlock(&mu);
}

static bool name_is(const char *entry, const char *name, size_t len)
{
    return strncmp(entry, name, len) == 0 && entry[len] == '=';
}

static bool is_hidden(const char *entry)
{
    static const char prefix[] = "TWINBOX_PASSWORD";
    size_t pl = sizeof(prefix) - 1;
    if (strncmp(entry, prefix, pl) == 0 && (entry[pl] == '=' || entry[pl] == '_'))
        return true;
    for (size_t i = 0; i < n_hidden; i++)
        if (name_is(entry, hidden[i], strlen(hidden[i])))
            return true;
    return false;
}

char **tb_env_child(void)
{
    size_t n = 0;
    for (char **e = environ; e && *e; e++)
        n++;
    char **child = tb_xcalloc(n + 1, sizeof(*child));
    size_t k = 0;
    pthread_mutex_lock(&mu);
    for (char **e = environ; e && *e; e++)
        if (!is_hidden(*e))
            child[k++] = *e;
    pthread_mutex_unlock(&mu);
    child[k] = NULL;
    return child;
}
