# Sourced by tests/run (after tests/deps.sh): provides a private Courier IMAP 5.0 for the
# interop tests (tests/fixture/courier.py) without touching the system's Dovecot.
#
# courier-imap declares "Conflicts: imap-server", which dovecot-imapd provides: installing
# it would REMOVE Dovecot. So only its non-conflicting dependencies are installed (the
# authdaemon with its userdb module, courier-base with couriertcpd and maildirmake), and
# the courier-imap package itself is downloaded and unpacked (dpkg-deb -x) into a cache
# directory outside the source tree; the fixture runs imaplogin/imapd from there.
#
# Installs only as root and only what is missing; otherwise prints what to run. Quiet when
# everything is present. No system service is left running (policy-rc.d, as in deps.sh).
TB_COURIER_PACKAGES="courier-base courier-authlib courier-authdaemon courier-authlib-userdb
libcourier-unicode4 gamin libgamin0 libgdbm6 libidn12"

tb_courier_dir() {
    echo "${TWINBOX_SERVER_CACHE:-/var/cache/twinbox-test-servers}/courier"
}

tb_courier_missing_packages() {
    local missing="" p
    for p in $TB_COURIER_PACKAGES; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
            missing="$missing $p"
    done
    echo "$missing"
}

# apt-get with a wait for the dpkg lock (other test set-ups may be installing too);
# "update" is run at most once, and only when an install or download fails without it.
tb_courier_apt() {
    apt-get -q -o DPkg::Lock::Timeout=600 -o APT::Sandbox::User=root "$@"
}

# $missing is a list of package names: word splitting is intended.
# shellcheck disable=SC2086
tb_courier_install_packages() {
    local missing=$1 log=$2
    # Refuse anything that would remove a package (Dovecot above all).
    if tb_courier_apt -s install -y --no-install-recommends $missing >"$log" 2>&1 &&
        grep -q '^Remv ' "$log"; then
        echo "twinbox: installing$missing would remove packages:" >&2
        grep '^Remv ' "$log" >&2
        return 1
    fi
    tb_courier_apt install -y --no-install-recommends $missing >"$log" 2>&1
}

tb_courier_unpack() {
    local dir=$1 log=$2 tmp rc=0
    mkdir -p "$(dirname "$dir")" || return 1
    tmp=$(mktemp -d "$(dirname "$dir")/.courier.XXXXXX") || return 1
    ( cd "$tmp" && tb_courier_apt download courier-imap ) >"$log" 2>&1 &&
        dpkg-deb -x "$tmp"/courier-imap_*.deb "$tmp/root" >>"$log" 2>&1 &&
        [ -x "$tmp/root/usr/bin/imapd" ] && [ -x "$tmp/root/usr/lib/courier/courier/imaplogin" ] &&
        cp "$tmp"/courier-imap_*.deb "$tmp/root/" || rc=1
    if [ "$rc" = 0 ]; then
        chmod 755 "$tmp/root"
        # Another run may have unpacked it meanwhile: keep theirs.
        mv -T "$tmp/root" "$dir" 2>/dev/null || [ -x "$dir/usr/bin/imapd" ] || rc=1
    fi
    rm -rf "$tmp"
    return $rc
}

tb_ensure_courier() {
    local dir missing log rc=0 policy=/usr/sbin/policy-rc.d created="" updated=""
    dir=$(tb_courier_dir)
    missing=$(tb_courier_missing_packages)
    if [ -z "$missing" ] && [ -x "$dir/usr/bin/imapd" ] &&
        [ -x "$dir/usr/lib/courier/courier/imaplogin" ]; then
        return 0
    fi
    if [ "$(id -u)" != 0 ]; then
        [ -n "$missing" ] &&
            echo "twinbox: Courier IMAP tests need:$missing (sudo apt-get install --no-install-recommends$missing; never courier-imap itself: it would remove Dovecot)" >&2
        [ -x "$dir/usr/bin/imapd" ] ||
            echo "twinbox: Courier IMAP tests need courier-imap unpacked into $dir" >&2
        echo "twinbox: set it up as root with: . tests/deps.sh; . tests/servers/courier.sh; tb_ensure_courier" >&2
        return 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    log=$(mktemp) || return 1
    if [ -n "$missing" ]; then
        # courier-authdaemon's package would start a system-wide authdaemond.
        if [ ! -e "$policy" ]; then
            printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod 755 "$policy" && created=1
        fi
        if ! tb_courier_install_packages "$missing" "$log"; then
            if grep -q '^Remv ' "$log"; then
                rc=1
            else
                updated=1
                tb_courier_apt update >"$log" 2>&1 &&
                    tb_courier_install_packages "$missing" "$log" || rc=1
            fi
        fi
        [ -n "$created" ] && rm -f "$policy"
    fi
    if [ "$rc" = 0 ] && ! [ -x "$dir/usr/bin/imapd" ]; then
        if ! tb_courier_unpack "$dir" "$log"; then
            if [ -z "$updated" ]; then
                tb_courier_apt update >"$log" 2>&1 && tb_courier_unpack "$dir" "$log" || rc=1
            else
                rc=1
            fi
        fi
    fi
    if [ "$rc" != 0 ]; then
        echo "twinbox: setting up Courier IMAP failed:" >&2
        tail -n 20 "$log" >&2
    fi
    rm -f "$log"
    return $rc
}
