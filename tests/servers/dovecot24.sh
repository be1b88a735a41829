# Sourced by tests/run (after tests/deps.sh): builds Dovecot 2.4.1 from the vendored source
# (../shared/vendor/dovecot-2.4.1.tar.gz beside the clone) so the X-REPLICATE plugin and the
# fixture (tests/fixture/dovecot.py, version="2.4") can run against it. Debian 12 ships
# only 2.3.19. The build takes about 10 minutes on two cores, offline, and is kept:
#
#   TWINBOX_SERVER_CACHE         cache root (default /var/cache/twinbox-test-servers);
#                                the install goes to $TWINBOX_SERVER_CACHE/dovecot-2.4.1
#   TWINBOX_DOVECOT24_TARBALL    the source tarball (default: ../shared/vendor of the clone)
#
# An install is complete when its .complete file names the tarball's sha256; anything
# else is rebuilt. The build runs in a temporary directory next to the cache and is moved
# into place in one rename, so a killed build never leaves a half install behind.
# `make` would download three Unicode data files; they come from Debian's unicode-data.

TB_DOVECOT24_VERSION=2.4.1
TB_DOVECOT24_SHA256=9c4bce8f89dc60ccc422a285730d7970df65f529d1bb748ff885dfdf95dcefb2
TB_DOVECOT24_PACKAGES="build-essential autoconf automake libtool bison flex gettext pkg-config
libssl-dev zlib1g-dev unicode-data"

tb_dovecot24_dir() {
    echo "${TWINBOX_SERVER_CACHE:-/var/cache/twinbox-test-servers}/dovecot-$TB_DOVECOT24_VERSION"
}

tb_dovecot24_tarball() {
    if [ -n "${TWINBOX_DOVECOT24_TARBALL:-}" ]; then
        echo "$TWINBOX_DOVECOT24_TARBALL"
        return
    fi
    # The clone's parent: this file is sourced from the clone's root (tests/run cd's there),
    # but find the clone from this file's own path so any working directory works.
    local here
    here=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
    echo "$here/../shared/vendor/dovecot-$TB_DOVECOT24_VERSION.tar.gz"
}

# True when a complete install of this tarball is in the cache.
tb_dovecot24_ready() {
    local dir
    dir=$(tb_dovecot24_dir)
    [ -x "$dir/sbin/dovecot" ] && [ -x "$dir/libexec/dovecot/imap" ] &&
        [ -f "$dir/lib/dovecot/dovecot-config" ] && [ -f "$dir/.complete" ] &&
        [ "$(cat "$dir/.complete")" = "$TB_DOVECOT24_SHA256" ]
}

tb_dovecot24_missing_packages() {
    local missing="" p
    for p in $TB_DOVECOT24_PACKAGES; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
            missing="$missing $p"
    done
    echo "$missing"
}

# shellcheck disable=SC2086  # $1: a list of package names, split on purpose
_tb_dovecot24_install() {
    echo "twinbox: installing$1" >&2
    local policy=/usr/sbin/policy-rc.d created="" rc=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod 755 "$policy" && created=1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends $1 \
        >/dev/null 2>&1 ||
        { apt-get -o DPkg::Lock::Timeout=600 update -qq >/dev/null &&
            apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends $1 \
                >/dev/null; } || rc=1
    [ -n "$created" ] && rm -f "$policy"
    return $rc
}

# Builds into a temporary directory and moves the install into place. Its output goes to
# $tmp/build.log (kept as DIR.log when the build fails).
_tb_dovecot24_build() {
    local dir tarball tmp src sum rc=0 started
    dir=$(tb_dovecot24_dir)
    tarball=$(tb_dovecot24_tarball)
    if [ ! -f "$tarball" ]; then
        echo "twinbox: Dovecot $TB_DOVECOT24_VERSION source not found: $tarball" >&2
        echo "twinbox: set TWINBOX_DOVECOT24_TARBALL to dovecot-$TB_DOVECOT24_VERSION.tar.gz" >&2
        return 1
    fi
    sum=$(sha256sum "$tarball" | cut -d' ' -f1)
    if [ "$sum" != "$TB_DOVECOT24_SHA256" ]; then
        echo "twinbox: $tarball: sha256 $sum, expected $TB_DOVECOT24_SHA256" >&2
        return 1
    fi
    mkdir -p "$(dirname "$dir")" || return 1
    tmp=$(mktemp -d "$(dirname "$dir")/.dovecot24-XXXXXX") || return 1
    started=$(date +%s)
    echo "twinbox: building Dovecot $TB_DOVECOT24_VERSION into $dir (about 10 minutes," \
        "log: $tmp/build.log)" >&2
    # The install prefix is the final directory (Dovecot compiles its paths in); `make
    # install DESTDIR=` stages it in the temporary directory first.
    (
        set -e
        cd "$tmp"
        tar -xzf "$tarball"
        src="$tmp/dovecot-$TB_DOVECOT24_VERSION"
        cp /usr/share/unicode/UnicodeData.txt "$src/src/lib/"
        cp /usr/share/unicode/auxiliary/WordBreakProperty.txt "$src/src/lib-language/"
        cp /usr/share/unicode/PropList.txt "$src/src/lib-language/"
        cd "$src"
        ./autogen.sh
        ./configure --prefix="$dir" --without-docs --with-ssl=openssl --without-ldap \
            --without-sql --without-lucene --without-solr
        make -j"$(nproc)"
        make install DESTDIR="$tmp/stage"
        "$tmp/stage$dir/sbin/dovecot" --version | grep -q "^$TB_DOVECOT24_VERSION"
        echo "$TB_DOVECOT24_SHA256" > "$tmp/stage$dir/.complete"
        chmod 755 "$tmp/stage$dir"
    ) > "$tmp/build.log" 2>&1 || rc=1
    if [ $rc = 0 ]; then
        # Replace a stale copy in one rename (a concurrent builder's copy is as good).
        if [ -e "$dir" ]; then
            mv -T "$dir" "$tmp/old" 2>/dev/null || true
        fi
        mv -T "$tmp/stage$dir" "$dir" 2>/dev/null || tb_dovecot24_ready || rc=1
    fi
    if [ $rc = 0 ]; then
        echo "twinbox: Dovecot $TB_DOVECOT24_VERSION built in $(($(date +%s) - started)) s" >&2
    else
        cp "$tmp/build.log" "$dir.log" 2>/dev/null
        echo "twinbox: building Dovecot $TB_DOVECOT24_VERSION failed; log: $dir.log" >&2
        tail -20 "$tmp/build.log" >&2
    fi
    rm -rf "$tmp"
    return $rc
}

# Installs the build dependencies (as root) unless the cache is complete or they are there;
# otherwise says what to run and returns 1. tests/run calls it before starting the build in
# the background, so that no two apt-get run at once.
tb_ensure_dovecot24_deps() {
    tb_dovecot24_ready && return 0
    local missing
    missing=$(tb_dovecot24_missing_packages)
    [ -z "$missing" ] && return 0
    if [ "$(id -u)" != 0 ]; then
        echo "twinbox: building Dovecot $TB_DOVECOT24_VERSION for the tests needs:$missing" >&2
        echo "twinbox: install with: sudo apt-get install$missing" >&2
        return 1
    fi
    _tb_dovecot24_install "$missing"
}

# Makes the 2.4 build available: nothing to do when the cache is complete; otherwise installs
# the build dependencies (as root) and builds, when the cache directory is writable.
tb_ensure_dovecot24() {
    tb_dovecot24_ready && return 0
    tb_ensure_dovecot24_deps || return 1
    local parent
    parent=$(dirname "$(tb_dovecot24_dir)")
    if ! mkdir -p "$parent" 2>/dev/null || [ ! -w "$parent" ]; then
        echo "twinbox: Dovecot $TB_DOVECOT24_VERSION for the tests is not built in $(tb_dovecot24_dir)" >&2
        echo "twinbox: run as root: bash -c '. tests/servers/dovecot24.sh; tb_ensure_dovecot24'" >&2
        return 1
    fi
    _tb_dovecot24_build
}

# Builds the X-REPLICATE plugin (and its settings module) against the cached 2.4 in the
# Meson build directory $1 (only those two targets); tests/run and examples/demo use it.
tb_dovecot24_build_plugin() {
    local dir=$1 rc=0
    (
        set -e
        DOVECOT_CONFIG=$(tb_dovecot24_dir)/lib/dovecot/dovecot-config
        export DOVECOT_CONFIG
        if [ ! -f "$dir/build.ninja" ]; then
            meson setup "$dir" -Dwerror=true -Dbuildtype=debugoptimized \
                -Ddovecot_plugin=enabled >/dev/null
        fi
        ninja -C "$dir" src/dovecot/lib95_imap_xreplicate_plugin.so \
            src/dovecot/libxreplicate_settings.so >/dev/null
    ) || rc=$?
    return $rc
}
