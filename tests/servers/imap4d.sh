# Sourced by tests/run (after tests/deps.sh): GNU mailutils imap4d for the interop tests
# (tests/fixture/imap4d.py). tb_ensure_imap4d installs Debian's mailutils-imap4d when it is
# missing and we are root; otherwise it says what to run and returns 1.
# The package pulls in an MTA (exim4): policy-rc.d keeps it and anything else stopped.
TWINBOX_IMAP4D_PACKAGES="mailutils-imap4d"

tb_ensure_imap4d() {
    local missing="" p
    for p in $TWINBOX_IMAP4D_PACKAGES; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
            missing="$missing $p"
    done
    [ -z "$missing" ] && return 0
    if [ "$(id -u)" != 0 ]; then
        echo "twinbox: imap4d tests need:$missing" >&2
        echo "twinbox: install with: sudo apt-get install$missing" >&2
        return 1
    fi
    echo "twinbox: installing$missing" >&2
    local policy=/usr/sbin/policy-rc.d created="" rc
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod 755 "$policy" && created=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            $missing >/dev/null
    rc=$?
    [ -n "$created" ] && rm -f "$policy"
    return $rc
}
