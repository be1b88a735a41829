/* Minimal TAP producer for twinbox's C unit tests.
 * Each CHECK is one TAP test point; tap_done() prints the plan and returns the exit code. */
#ifndef TWINBOX_TESTS_TAP_H
#define TWINBOX_TESTS_TAP_H

#include <stdio.h>
#include <string.h>

static int tap_n, tap_failed;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        int tap_ok_ = !!(cond);                                                                    \
        tap_n++;                                                                                   \
        if (!tap_ok_)                                                                              \
            tap_failed++;                                                                          \
        printf("%s %d - ", tap_ok_ ? "ok" : "not ok", tap_n);                                      \
        printf(__VA_ARGS__);                                                                       \
        printf("\n");                                                                              \
        if (!tap_ok_)                                                                              \
            printf("#   failed at %s:%d: %s\n", __FILE__, __LINE__, #cond);                        \
        fflush(stdout);                                                                            \
    } while (0)

#define CHECK_STR(a, b, ...) CHECK(((a) && (b) && strcmp((a), (b)) == 0), __VA_ARGS__)

static inline int tap_done(void)
{
    printf("1..%d\n", tap_n);
    return tap_failed ? 1 : 0;
}

#endif
