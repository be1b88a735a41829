# Sourced by tests/run (after tests/deps.sh): hoodiecrow, the in-memory scriptable IMAP
# server from npm (package hoodiecrow-imap), for the interop tests
# (tests/fixture/hoodiecrow.py). tb_ensure_hoodiecrow installs Debian's nodejs and npm
# when node is missing and we are root, then `npm install`s hoodiecrow-imap into
# $TWINBOX_SERVER_CACHE/hoodiecrow (default /var/cache/twinbox-test-servers/hoodiecrow),
# outside the git clone; an existing install there is reused. The fixture finds it there
# (or through TWINBOX_HOODIECROW_DIR).
TWINBOX_HOODIECROW_VERSION="2.1.0"

tb_hoodiecrow_dir() {
    echo "${TWINBOX_SERVER_CACHE:-/var/cache/twinbox-test-servers}/hoodiecrow"
}

tb_ensure_hoodiecrow() {
    local dir
    dir=$(tb_hoodiecrow_dir)
    if [ -f "$dir/node_modules/hoodiecrow-imap/package.json" ] && command -v node >/dev/null; then
        return 0
    fi
    if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
        if [ "$(id -u)" != 0 ]; then
            echo "twinbox: hoodiecrow tests need node and npm: sudo apt-get install nodejs npm" >&2
            return 1
        fi
        echo "twinbox: installing nodejs npm" >&2
        local policy=/usr/sbin/policy-rc.d created="" rc
        if [ ! -e "$policy" ]; then
            printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod 755 "$policy" && created=1
        fi
        DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
                nodejs npm >/dev/null
        rc=$?
        [ -n "$created" ] && rm -f "$policy"
        [ $rc = 0 ] || return $rc
    fi
    if ! mkdir -p "$dir" 2>/dev/null || [ ! -w "$dir" ]; then
        echo "twinbox: cannot write $dir: set TWINBOX_SERVER_CACHE to a writable directory" >&2
        return 1
    fi
    echo "twinbox: npm install hoodiecrow-imap@$TWINBOX_HOODIECROW_VERSION into $dir" >&2
    [ -f "$dir/package.json" ] || printf '{"name":"twinbox-test-hoodiecrow","private":true}\n' \
        > "$dir/package.json"
    (cd "$dir" && npm install --no-audit --no-fund --loglevel=error \
        "hoodiecrow-imap@$TWINBOX_HOODIECROW_VERSION" >/dev/null)
}
