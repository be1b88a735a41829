# Sourced by tests/run and examples/demo: installs what twinbox needs on Debian 12.
# Installs only when running as root and something is missing; otherwise says what to install.
# clang and libclang-rt-14-dev build the fuzz targets (tests/fuzz): -fsanitize=fuzzer links
# libclang_rt.fuzzer from libclang-rt-14-dev (libfuzzer-14-dev, the standalone libFuzzer.a,
# is not needed).
TWINBOX_PACKAGES="build-essential meson ninja-build pkg-config libetpan-dev libuv1-dev libssl-dev
zlib1g-dev libsqlite3-dev dovecot-core dovecot-imapd dovecot-dev python3 openssl util-linux
passwd procps clang libclang-rt-14-dev"

tb_missing_packages() {
    local missing="" p
    for p in $TWINBOX_PACKAGES; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
            missing="$missing $p"
    done
    echo "$missing"
}

tb_ensure_deps() {
    local missing
    missing=$(tb_missing_packages)
    [ -z "$missing" ] && return 0
    if [ "$(id -u)" != 0 ]; then
        echo "twinbox: missing Debian packages:$missing" >&2
        echo "twinbox: install them with: sudo apt-get install$missing" >&2
        return 1
    fi
    echo "twinbox: installing$missing" >&2
    export DEBIAN_FRONTEND=noninteractive
    # Dovecot's package would start a system-wide server: policy-rc.d keeps it stopped;
    # the tests run their own private instances.
    local policy=/usr/sbin/policy-rc.d created=""
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod 755 "$policy" && created=1
    fi
    apt-get update -qq && apt-get install -y -qq --no-install-recommends $missing >/dev/null
    local rc=$?
    [ -n "$created" ] && rm -f "$policy"
    return $rc
}

# Configures (or reconfigures) a Meson build directory and builds it.
tb_build() {
    local dir=$1
    shift
    if [ -f "$dir/build.ninja" ]; then
        meson configure "$dir" "$@" >/dev/null
    else
        meson setup "$dir" "$@" >/dev/null
    fi
    ninja -C "$dir" >/dev/null
}
