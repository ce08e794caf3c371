# Shared by scripts/demo and scripts/test: install what is missing, build.
# Sourced, not executed.

CASCADE_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=/usr/bin/python3 # Debian's python, where python3-pytest and python3-redis live

CASCADE_PACKAGES=(
    gcc clang clang-format meson ninja-build pkg-config
    libevent-dev libhiredis-dev libinih-dev libssl-dev libisal-dev libcmocka-dev libclang-rt-14-dev libzstd-dev
    redis-server redis-tools redis-sentinel python3 python3-pytest python3-redis curl
    # the Debian package (scripts/package, tests/integration/test_package.py) and man pages
    debhelper dpkg-dev fakeroot lintian groff-base adduser
    # the ecosystem tests: the HA pair behind haproxy, the exporter scraping a relay
    haproxy prometheus-redis-exporter
    # the WAN tests' network namespace (test_wan.py, as root)
    iproute2 nftables
)

ensure_deps() {
    local missing=()
    for p in "${CASCADE_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
            missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "installing: ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
    # Debian's package starts a system redis-server where init is available; nothing here
    # needs it (every test and the demo start their own on free ports).
}

# build DIR [meson options...]: configure once, then compile.
build() {
    local dir=$1
    shift
    if [ ! -f "$CASCADE_ROOT/$dir/build.ninja" ]; then
        meson setup "$CASCADE_ROOT/$dir" "$CASCADE_ROOT" "$@" >/dev/null
    fi
    meson compile -C "$CASCADE_ROOT/$dir" >/dev/null
}
