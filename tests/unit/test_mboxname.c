/* Canonical mailbox names across namespaces (protocol/mboxname.c): the mapping the engine
 * pairs mailboxes by, and the names it must refuse rather than mangle. */
#include "protocol/mboxname.h"
#include "tap.h"
#include "util/flags.h"

#include <stdlib.h>
#include <string.h>

static void canon(const struct tb_ns *ns, const char *wire, const char *want, const char *what)
{
    char *c = tb_mbox_canon(ns, wire, NULL);
    if (want)
        CHECK_STR(c, want, "%s", what);
    else
        CHECK(c == NULL, "%s: refused (got %s)", what, c ? c : "NULL");
    free(c);
}

static void wire(const struct tb_ns *ns, const char *canon, const char *want, const char *what)
{
    char *w = tb_mbox_wire(ns, canon, NULL);
    if (want)
        CHECK_STR(w, want, "%s", what);
    else
        CHECK(w == NULL, "%s: refused (got %s)", what, w ? w : "NULL");
    free(w);
}

int main(void)
{
    const struct tb_ns courier = {"INBOX.", '.', "#shared.\nshared.\n"};
    const struct tb_ns dovecot = {"", '/', NULL};
    const struct tb_ns dotted = {"", '.', "Shared/\n"};
    const struct tb_ns flat = {"", 0, NULL};
    canon(&courier, "INBOX.Work", "Work", "prefix stripped");
    canon(&courier, "INBOX.Work.Sub", "Work/Sub", "separator translated");
    canon(&courier, "inbox", "INBOX", "INBOX upper-case");
    canon(&courier, "INBOX.INBOX", NULL, "INBOX below the prefix would collide with INBOX");
    canon(&courier, "#shared.team", NULL, "shared namespace left out");
    canon(&courier, "Top", NULL, "outside the personal namespace");
    canon(&courier, "INBOX.", NULL, "the prefix itself");
    canon(&courier, "INBOX.a/b", NULL, "a '/' inside a level");
    canon(&dovecot, "Work/Sub", "Work/Sub", "'/' servers map as they are");
    canon(&dotted, "Shared/x", NULL, "other namespace of a prefix-less server");
    canon(&dotted, "a.b", "a/b", "dot hierarchy");
    wire(&courier, "Work/Sub", "INBOX.Work.Sub", "prefix added");
    wire(&courier, "INBOX", "INBOX", "INBOX stays INBOX");
    wire(&courier, "a.b", NULL, "a level holding the server's separator");
    wire(&dovecot, "a.b", "a.b", "dots are plain characters on a '/' server");
    wire(&flat, "a/b", NULL, "no hierarchy on a flat server");
    wire(&flat, "ab", "ab", "a flat name");

    bool dropped = false;
    char *f =
        tb_flags_storable("\\Seen $Todo \\Flagged", "\\Seen \\Flagged \\Deleted", false, &dropped);
    CHECK_STR(f, "\\Flagged \\Seen", "keywords left out without \\*");
    CHECK(dropped, "and reported");
    free(f);
    dropped = false;
    f = tb_flags_storable("\\Seen $Todo", "\\Seen", true, &dropped);
    CHECK_STR(f, "$Todo \\Seen", "keywords kept with \\*");
    CHECK(!dropped, "nothing dropped");
    free(f);
    f = tb_flags_union("\\Seen", "$A \\seen");
    CHECK_STR(f, "$A \\Seen", "union");
    free(f);
    return tap_done();
}
