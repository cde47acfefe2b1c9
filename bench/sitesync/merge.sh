#!/usr/bin/env bash
# bench/sitesync/merge.sh - the sitesync half of merge_vs_sqlite_limit: feeds
# sitesyncd, through its real ingest path (mutual TLS, HELLO/WELCOME,
# pipelined BATCH envelopes up to the window, ACK only once durable), the
# same shape of changes as bench/sqlite_limit: 10 origins (one gateway
# session each), envelopes of 100 changes, keys ordered in time per origin,
# ~400-byte incidents, every envelope signed by its origin. The clock runs
# from the first BATCH sent to the last ACK. Prints:
#   sitesyncd_merge_rows_per_s=<n>  merge_daemon_cpu_s=<s>  merge_sign_us_per_envelope=<us>
#
# usage: merge.sh --build-dir DIR --pki DIR [--rows N]
# shellcheck source-path=SCRIPTDIR
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/common.sh
. "$HERE/../lib/common.sh"
# shellcheck source=../lib/sitesync.sh
. "$HERE/../lib/sitesync.sh"

ss_half_args "$@"
ROWS=200000 GATEWAYS=10 CHANGES=100
set -- "${HALF_ARGS[@]+"${HALF_ARGS[@]}"}"
while [ $# -gt 0 ]; do
    case $1 in
    --rows) ROWS=${2:?}; shift 2 ;;
    *) bench_die "merge.sh: unknown option $1" ;;
    esac
done
ss_num "$ROWS" --rows
PER=$((GATEWAYS * CHANGES))
[ $((ROWS % PER)) -eq 0 ] || bench_die "merge.sh: --rows must be a multiple of $PER"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/sitesync-bench-merge.XXXXXX")
trap 'sd_stop; rm -rf "$WORK"' EXIT
sd_start "$WORK"
cpu0=$(awk '{ print $14 + $15 }' "/proc/$SD_PID/stat")
out=$("$BIN/ss_load" merge --ca-dir "$PKI/ca" --port "$SD_PORT" --gateways "$GATEWAYS" \
    --envelopes $((ROWS / PER)) --changes "$CHANGES" --prefix merge-) ||
    bench_die "merge.sh: the load client failed (daemon log: $(tail -3 "$SD_LOG"))"
cpu1=$(awk '{ print $14 + $15 }' "/proc/$SD_PID/stat")
got=$(sd_committed merge-)
[ "$got" -eq "$ROWS" ] || bench_die "merge.sh: $got changes committed, expected $ROWS"
bench_say "merge: $out"
printf 'sitesyncd_merge_rows_per_s=%s\n' "$(bench_field "$out" sitesyncd_merge_rows_per_s)"
printf 'merge_daemon_cpu_s=%s\n' "$(awk -v t=$((cpu1 - cpu0)) -v hz="$(getconf CLK_TCK)" \
    'BEGIN { printf "%.2f", t / hz }')"
printf 'merge_sign_us_per_envelope=%s\n' "$(bench_field "$out" prepare_us_per_envelope)"
