# Sourced by tests/run (after tests/deps.sh): makes a private Cyrus IMAP 3.6 available to
# tests/fixture/cyrus.py without touching the system's Dovecot.
#
# The package cyrus-imapd declares `Conflicts: imap-server` (which dovecot-imapd provides):
# installing it would REMOVE Dovecot. So only its non-conflicting parts are installed
# (cyrus-common has the master process and the tools, sasl2-bin saslpasswd2), and
# cyrus-imapd itself is downloaded and unpacked with dpkg-deb -x into a cache directory
# outside the git clone; the fixture runs the imapd binary from there.
#
#   TWINBOX_SERVER_CACHE   cache root (default /var/cache/twinbox-test-servers);
#                          Cyrus goes to $TWINBOX_SERVER_CACHE/cyrus

TB_CYRUS_PACKAGES="cyrus-common cyrus-admin cyrus-clients sasl2-bin libsasl2-modules libwrap0"

tb_cyrus_dir() {
    echo "${TWINBOX_SERVER_CACHE:-/var/cache/twinbox-test-servers}/cyrus"
}

# Prints the missing Debian packages (none: empty line).
tb_cyrus_missing_packages() {
    local missing="" p
    for p in $TB_CYRUS_PACKAGES; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
            missing="$missing $p"
    done
    echo "$missing"
}

# True when the unpacked cyrus-imapd matches the installed cyrus-common.
tb_cyrus_unpacked() {
    local dir want
    dir=$(tb_cyrus_dir)
    want=$(dpkg-query -W -f='${Version}' cyrus-common 2>/dev/null) || return 1
    [ -x "$dir/usr/lib/cyrus/bin/imapd" ] && [ -f "$dir/.version" ] &&
        [ "$(cat "$dir/.version")" = "$want" ]
}

_tb_cyrus_apt() {
    # Waits for a concurrent apt/dpkg instead of failing on its lock.
    apt-get -o DPkg::Lock::Timeout=600 "$@"
}

# Simulates the install: fails when apt cannot, or would remove anything (Dovecot above all).
# shellcheck disable=SC2086  # $1: a list of package names, split on purpose
_tb_cyrus_safe() {
    local sim
    sim=$(_tb_cyrus_apt -s install -y --no-install-recommends $1 2>&1) || return 1
    if echo "$sim" | grep -q '^Remv '; then
        echo "twinbox: refusing to install$1: apt would remove:" >&2
        echo "$sim" | grep '^Remv ' >&2
        return 2
    fi
}

# shellcheck disable=SC2086  # $1: a list of package names, split on purpose
_tb_cyrus_install() {
    local rc=0
    _tb_cyrus_safe "$1" || rc=$?
    [ $rc = 2 ] && return 1
    echo "twinbox: installing$1" >&2
    if [ $rc = 0 ] &&
        _tb_cyrus_apt install -y -qq --no-install-recommends $1 >/dev/null 2>&1; then
        return 0
    fi
    # Unknown packages or stale lists (a 404): update once and try again.
    _tb_cyrus_apt update -qq >/dev/null && _tb_cyrus_safe "$1" &&
        _tb_cyrus_apt install -y -qq --no-install-recommends $1 >/dev/null
}

_tb_cyrus_unpack() {
    local dir version tmp rc=0
    dir=$(tb_cyrus_dir)
    version=$(dpkg-query -W -f='${Version}' cyrus-common) || return 1
    mkdir -p "$(dirname "$dir")" || return 1
    tmp=$(mktemp -d "$(dirname "$dir")/.cyrus-XXXXXX") || return 1
    mkdir "$tmp/deb" "$tmp/root"
    # apt-get download as root fetches as user _apt: it must be able to write there.
    chmod 755 "$tmp" && chmod 777 "$tmp/deb"
    if ! (cd "$tmp/deb" && _tb_cyrus_apt download -qq "cyrus-imapd=$version" >/dev/null 2>&1); then
        _tb_cyrus_apt update -qq >/dev/null &&
            (cd "$tmp/deb" && _tb_cyrus_apt download -qq "cyrus-imapd=$version" >/dev/null) ||
            rc=1
    fi
    if [ $rc = 0 ]; then
        dpkg-deb -x "$tmp"/deb/cyrus-imapd_*.deb "$tmp/root" &&
            [ -x "$tmp/root/usr/lib/cyrus/bin/imapd" ] &&
            echo "$version" > "$tmp/root/.version" && chmod 755 "$tmp/root" || rc=1
    fi
    if [ $rc = 0 ]; then
        # Replace a stale copy in one rename (a concurrent unpacker's copy is as good).
        if [ -e "$dir" ]; then
            mv "$dir" "$tmp/old" 2>/dev/null || true
        fi
        mv -T "$tmp/root" "$dir" 2>/dev/null || tb_cyrus_unpacked || rc=1
    fi
    rm -rf "$tmp"
    [ $rc = 0 ] || echo "twinbox: could not download/unpack cyrus-imapd $version" >&2
    return $rc
}

# Installs what is missing (as root); otherwise prints what to run and returns 1.
tb_ensure_cyrus() {
    local missing
    missing=$(tb_cyrus_missing_packages)
    if [ -z "$missing" ] && tb_cyrus_unpacked; then
        return 0
    fi
    if [ "$(id -u)" != 0 ]; then
        echo "twinbox: Cyrus IMAP for the tests is not set up (missing:${missing:- unpacked cyrus-imapd in $(tb_cyrus_dir)})" >&2
        echo "twinbox: run as root: bash -c '. tests/servers/cyrus.sh; tb_ensure_cyrus'" >&2
        return 1
    fi
    (
        export DEBIAN_FRONTEND=noninteractive
        # cyrus-common and exim4 would start system services: policy-rc.d keeps them
        # stopped; the tests run their own private instances.
        policy=/usr/sbin/policy-rc.d created=""
        if [ ! -e "$policy" ]; then
            printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod 755 "$policy" && created=1
        fi
        rc=0
        if [ -n "$missing" ]; then
            _tb_cyrus_install "$missing" || rc=1
        fi
        [ $rc = 0 ] && { tb_cyrus_unpacked || _tb_cyrus_unpack || rc=1; }
        [ -n "$created" ] && rm -f "$policy"
        exit $rc
    )
}
