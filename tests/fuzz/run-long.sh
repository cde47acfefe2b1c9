#!/usr/bin/env bash
# run-long.sh - runs one libFuzzer target for as long as you like: configures
# and builds the fuzz build (clang, ASan+UBSan, as CI does) if needed, then
# fuzzes on top of the committed seed corpus, writing new inputs and crash
# artifacts to a work directory (never into tests/fuzz/corpus/).
#
#   tests/fuzz/run-long.sh TARGET SECONDS [libFuzzer options...]
#   tests/fuzz/run-long.sh schema 3600
#   tests/fuzz/run-long.sh frame 28800 -fork=2
#
# Environment: SITESYNC_FUZZ_BUILD_DIR (default ./build-fuzz, the directory
# `./sitesync.sh test` uses), SITESYNC_FUZZ_WORK (default
# BUILD/long-TARGET), SITESYNC_JOBS (build parallelism, default 2).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
FUZZ_SRC=$ROOT/tests/fuzz

die() {
    printf 'run-long.sh: %s\n' "$*" >&2
    exit 2
}

targets() {
    local f
    for f in "$FUZZ_SRC"/fuzz_*.c; do
        f=${f##*/fuzz_}
        printf '%s ' "${f%.c}"
    done
}

if [ $# -lt 2 ]; then
    printf 'usage: %s TARGET SECONDS [libFuzzer options...]\ntargets: %s\n' "$0" "$(targets)" >&2
    exit 2
fi
TARGET=$1
SECONDS_TO_RUN=$2
shift 2
case $TARGET in
'' | *[!a-z0-9_]*) die "target must be one of: $(targets)" ;;
esac
[ -f "$FUZZ_SRC/fuzz_$TARGET.c" ] || die "no target '$TARGET' (targets: $(targets))"
case $SECONDS_TO_RUN in
'' | *[!0-9]* | 0) die "SECONDS must be a positive whole number, not '$SECONDS_TO_RUN'" ;;
esac

BUILD=${SITESYNC_FUZZ_BUILD_DIR:-$ROOT/build-fuzz}
WORK=${SITESYNC_FUZZ_WORK:-$BUILD/long-$TARGET}
JOBS=${SITESYNC_JOBS:-2}
command -v clang >/dev/null || die "clang is needed (Debian: apt-get install clang libclang-rt-14-dev)"

# Configure only when the directory is not a fuzz build yet, so that an
# existing ./build-fuzz (and its SITESYNC_FUZZ_SECONDS) is left as it is.
if ! grep -q '^SITESYNC_FUZZ:BOOL=ON' "$BUILD/CMakeCache.txt" 2>/dev/null; then
    echo "==> configuring fuzz build in $BUILD"
    CC=clang cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Debug -DSITESYNC_FUZZ=ON \
        -DSITESYNC_WERROR=ON >/dev/null
fi
echo "==> building fuzz_$TARGET"
cmake --build "$BUILD" --target "fuzz_$TARGET" -j "$JOBS" >/dev/null

BIN=$BUILD/tests/fuzz/fuzz_$TARGET
mkdir -p "$WORK/corpus" "$WORK/artifacts"
echo "==> fuzz_$TARGET for $SECONDS_TO_RUN s; new inputs in $WORK/corpus, crashes in $WORK/artifacts"
set +e
ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1} \
    "$BIN" -max_total_time="$SECONDS_TO_RUN" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$WORK/artifacts/" "$@" "$WORK/corpus" "$FUZZ_SRC/corpus/$TARGET"
rc=$?
set -e
if [ $rc -ne 0 ]; then
    echo "==> fuzz_$TARGET failed (exit $rc); reproduce with: $BIN $WORK/artifacts/<file>" >&2
    exit $rc
fi
echo "==> no crash. To keep only the inputs that add coverage in the committed corpus:"
echo "    $BIN -merge=1 $FUZZ_SRC/corpus/$TARGET $WORK/corpus"
