#!/usr/bin/env bash
# sitesync.sh - the one entry point for a new user: installs what is missing
# (Debian 12, as root), builds, and runs either the local demo system or the
# whole test suite. Both sub-commands are idempotent.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BUILD=${SITESYNC_BUILD_DIR:-$ROOT/build}
JOBS=${SITESYNC_JOBS:-$(nproc 2>/dev/null || echo 2)}

# Debian packages the build, the tests and the demo need.
PKGS=(build-essential cmake pkg-config git clang clang-format libclang-rt-14-dev
      libuv1-dev libssl-dev libsqlite3-dev libmbedtls-dev libcjson-dev
      openssl sqlite3 faketime strace procps iproute2 nftables python3 sslscan)

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
die() { printf 'sitesync.sh: %s\n' "$*" >&2; exit 1; }

usage() {
    cat <<USAGE
usage: ./sitesync.sh <command>

  demo      install what is missing, build, and run the whole system locally
            (PKI, sitesyncd on SQLite, gateways over mutual TLS on 127.0.0.1)
  test      install what is missing, build (normal, ASan+UBSan and TSan, warnings
            as errors), check formatting, and run the full test suite with CTest
            (the threaded tests under TSan; set SITESYNC_FUZZ_SECONDS to change
            each fuzz target's run time)
  build     install what is missing and build into ./build
  deps      only install the Debian packages

Environment: SITESYNC_BUILD_DIR (default ./build), SITESYNC_JOBS.
USAGE
}

deps() {
    local missing=()
    for p in "${PKGS[@]}"; do
        if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
            missing+=("$p")
        fi
    done
    if [ ${#missing[@]} -eq 0 ]; then
        return 0
    fi
    say "installing Debian packages: ${missing[*]}"
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null || die "missing packages (${missing[*]}); run as root"
        SUDO=sudo
    else
        SUDO=
    fi
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# configure_build DIR [cmake args...]: configure, then build everything (or
# only BUILD_TARGET when set).
configure_build() {
    local dir=$1
    shift
    cmake -S "$ROOT" -B "$dir" "$@" >/dev/null
    cmake --build "$dir" -j "$JOBS" ${BUILD_TARGET:+--target "$BUILD_TARGET"}
}

build() {
    say "building into $BUILD"
    configure_build "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSITESYNC_WERROR=ON
}

format_check() {
    say "checking formatting (clang-format $(clang-format --version | grep -o '[0-9][0-9.]*' | head -1))"
    local files
    files=$(cd "$ROOT" && git ls-files '*.c' '*.h' 2>/dev/null || true)
    if [ -z "$files" ]; then
        files=$(cd "$ROOT" && find . -path ./build -prune -o \( -name '*.c' -o -name '*.h' \) -print)
    fi
    (cd "$ROOT" && echo "$files" | xargs clang-format --dry-run -Werror)
}

run_ctest() {
    local dir=$1
    shift
    (cd "$dir" && ctest --output-on-failure -j "$JOBS" "$@")
}

# stage NAME: prints how long the previous stage took and starts timing NAME.
STAGE_NAME=
STAGE_START=0
stage() {
    if [ -n "$STAGE_NAME" ]; then
        STAGE_TIMES+=("$STAGE_NAME: $((SECONDS - STAGE_START)) s")
    fi
    STAGE_NAME=$1
    STAGE_START=$SECONDS
}

test_all() {
    STAGE_TIMES=()
    stage "dependencies + format check + normal build"
    deps
    format_check
    build
    stage "normal test suite"
    say "test suite (normal build)"
    run_ctest "$BUILD"

    # The site firmware configuration (no relay mode, no hub code): built
    # for real once, then checked against the normal build's binaries.
    local site=${BUILD}-site
    stage "site firmware build (SITESYNC_GW_RELAY=OFF)"
    say "site gateway build without relay mode ($site)"
    BUILD_TARGET=sitesync-gw configure_build "$site" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
        -DSITESYNC_WERROR=ON -DSITESYNC_GW_RELAY=OFF -DSITESYNC_TESTS=OFF
    bash "$ROOT/tests/gwsite/site_build.sh" "$site/gateway/sitesync-gw" \
        "$BUILD/gateway/sitesync-gw" "$BUILD/daemon/sitesyncd" "$BUILD/daemon/sitesync-admin" \
        "$BUILD/pki/sitesync-pki"

    local asan=${BUILD}-asan
    stage "ASan+UBSan build + test suite"
    say "test suite under AddressSanitizer + UndefinedBehaviorSanitizer ($asan)"
    configure_build "$asan" -DCMAKE_BUILD_TYPE=Debug -DSITESYNC_WERROR=ON -DSITESYNC_SANITIZE=ON
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
        run_ctest "$asan"

    # The threads are the daemon's libuv loop and its group-commit writer:
    # the tests labelled "threads" (writer unit test, daemon integration and
    # I/O-fault tests) run under ThreadSanitizer; any report fails the run.
    local tsan=${BUILD}-tsan
    stage "TSan build + threaded tests"
    say "threaded tests under ThreadSanitizer ($tsan)"
    configure_build "$tsan" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSITESYNC_WERROR=ON -DSITESYNC_TSAN=ON
    TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" run_ctest "$tsan" -L threads

    local fuzz=${BUILD}-fuzz
    stage "fuzz build + runs"
    say "fuzz targets under ASan+UBSan (libFuzzer, ${SITESYNC_FUZZ_SECONDS:-60} s each)"
    CC=clang BUILD_TARGET=fuzz_all configure_build "$fuzz" -DCMAKE_BUILD_TYPE=Debug -DSITESYNC_FUZZ=ON \
        -DSITESYNC_FUZZ_SECONDS="${SITESYNC_FUZZ_SECONDS:-60}" -DSITESYNC_WERROR=ON
    run_ctest "$fuzz" -L fuzz
    stage ""
    say "stage times:"
    printf '    %s\n' "${STAGE_TIMES[@]}"
    say "all test suites passed"
}

demo() {
    deps
    build
    exec "$ROOT/scripts/demo.sh" "$BUILD"
}

case "${1:-}" in
demo) demo ;;
test) test_all ;;
build) deps; build ;;
deps) deps ;;
-h | --help | help) usage ;;
*) usage; exit 2 ;;
esac
