#!/usr/bin/env bash
# bench/sitesync/e2e.sh - the sitesync half of e2e_vs_mosquitto_bridge:
# records per second from acceptance at gateways to durable commit at
# sitesyncd, over mutual TLS, with real sitesync-gw journals and the real
# `sitesync-gw sync`.
#
# "Acceptance at gateways": the records are first submitted to each
# gateway's journal through the gateway's own submission path (bench/gw_fill:
# validated, appended and synced to storage, one fsync per record, as
# `sitesync-gw incident` does); that rate is reported on its own. Then the
# clock runs from starting the `sitesync-gw sync` processes (all at once) to
# the last one exiting 0, which it does only after the daemon acknowledged
# every record, i.e. after the last durable commit. Every record is checked
# committed with sitesync-admin. Prints:
#   e2e_records_per_s (1 gateway)  e2e_50gw_records_per_s (G gateways)
#   e2e_submit_records_per_s  e2e_50gw_submit_records_per_s
#
# With --rounds R the journals are filled once and copied before each round
# (a fresh daemon every time); the best round of each case is reported.
#
# usage: e2e.sh --build-dir DIR --pki DIR [--records N] [--gateways G]
#               [--records-1gw M] [--rounds R]   (default M = N, R = 1)
# shellcheck source-path=SCRIPTDIR
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/common.sh
. "$HERE/../lib/common.sh"
# shellcheck source=../lib/sitesync.sh
. "$HERE/../lib/sitesync.sh"

ss_half_args "$@"
RECORDS=100000 GATEWAYS=50 ONE='' ROUNDS=1
set -- "${HALF_ARGS[@]+"${HALF_ARGS[@]}"}"
while [ $# -gt 0 ]; do
    case $1 in
    --records) RECORDS=${2:?}; shift 2 ;;
    --gateways) GATEWAYS=${2:?}; shift 2 ;;
    --records-1gw) ONE=${2:?}; shift 2 ;;
    --rounds) ROUNDS=${2:?}; shift 2 ;;
    *) bench_die "e2e.sh: unknown option $1" ;;
    esac
done
ONE=${ONE:-$RECORDS}
ss_num "$RECORDS" --records
ss_num "$GATEWAYS" --gateways
ss_num "$ONE" --records-1gw
ss_num "$ROUNDS" --rounds
PER=$((RECORDS / GATEWAYS))
[ $((PER * GATEWAYS)) -eq "$RECORDS" ] || bench_die "e2e.sh: --records must divide by --gateways"
[ -x "$BIN/gw_fill" ] || bench_die "e2e.sh: $BIN/gw_fill is not built"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/sitesync-bench-e2e.XXXXXX")
trap 'sd_stop; rm -rf "$WORK"' EXIT
now_ns() { date +%s%N; }
rate() { awk -v n="$1" -v t="$2" 'BEGIN { printf "%.0f", n / (t / 1e9) }'; }

# Gateway identities from the run's CA (gateway role, one site each).
mkdir -p "$WORK/certs"
"$BIN/ss_load" mint --ca-dir "$PKI/ca" --out "$WORK/certs" --gateways "$GATEWAYS" \
    --prefix e2e- >/dev/null
"$BIN/ss_load" mint --ca-dir "$PKI/ca" --out "$WORK/certs" --gateways 1 --prefix one- >/dev/null

# fill PREFIX INDEX N: N records into WORK/j/PREFIX<index>.
fill() {
    local node
    node=$(printf '%s%05d' "$1" "$2")
    "$BIN/gw_fill" --journal "$WORK/j/$node" --cert "$WORK/certs/$node.crt" -n "$3" \
        >"$WORK/fill-$node.out"
}
# sync_all PREFIX COUNT: `sitesync-gw sync` for COUNT gateways at once, from
# the round's copy of the journals (WORK/jr); all must exit 0 (drained: every
# record acknowledged).
sync_all() {
    local i node pids=() bad=0
    for ((i = 0; i < $2; i++)); do
        node=$(printf '%s%05d' "$1" "$i")
        "$GW" --journal "$WORK/jr/$node" --ca "$PKI/ca.crt" --cert "$WORK/certs/$node.crt" \
            --key "$WORK/certs/$node.key" --server "127.0.0.1:$SD_PORT" --log-level warn \
            sync >"$WORK/sync-$node.out" 2>&1 &
        pids+=($!)
    done
    for i in "${pids[@]}"; do
        wait "$i" || bad=$((bad + 1))
    done
    if [ $bad -ne 0 ]; then
        bench_say "e2e: $bad sync(s) failed: $(cat "$WORK"/sync-*.out | head -3)"
        return 1
    fi
}

# round PREFIX COUNT RECORDS NAME: one timed sync of the filled journals (a
# fresh copy) to a fresh daemon; appends the rate to the list in NAME.
round() {
    local t0 t1 got
    rm -rf "$WORK/jr"
    cp -a "$WORK/j" "$WORK/jr"
    sync -f "$WORK/jr" # the copy's dirty pages must not be flushed during the sync
    sd_start "$WORK/d"
    t0=$(now_ns)
    sync_all "$1" "$2" || bench_die "e2e.sh: the $2-gateway sync failed"
    t1=$(now_ns)
    got=$(sd_committed "$1")
    [ "$got" -eq "$3" ] || bench_die "e2e.sh: $got of $3 records committed ($2 gateways)"
    sd_stop
    printf -v "$4" '%s %s' "${!4}" "$(rate "$3" $((t1 - t0)))"
    bench_say "e2e $2 gateway(s): $3 records synced in $(((t1 - t0) / 1000000)) ms"
}
# best_of LIST: the largest number of a space-separated list.
best_of() { tr ' ' '\n' <<<"$1" | sort -n | tail -1; }

# ---- 1 gateway ----
t0=$(now_ns)
fill one- 0 "$ONE"
t1=$(now_ns)
one_runs=''
for ((r = 0; r < ROUNDS; r++)); do
    round one- 1 "$ONE" one_runs
done
printf 'e2e_records_per_s=%s\n' "$(best_of "$one_runs")"
printf 'e2e_submit_records_per_s=%s\n' "$(rate "$ONE" $((t1 - t0)))"
bench_say "e2e 1 gateway: $ONE records submitted in $(((t1 - t0) / 1000000)) ms; rounds:$one_runs"
rm -rf "$WORK/j" "$WORK/jr"

# ---- G gateways ----
t0=$(now_ns)
pids=()
for ((i = 0; i < GATEWAYS; i++)); do
    fill e2e- "$i" "$PER" &
    pids+=($!)
done
for p in "${pids[@]}"; do
    wait "$p" || bench_die "e2e.sh: filling a journal failed"
done
t1=$(now_ns)
many_runs=''
for ((r = 0; r < ROUNDS; r++)); do
    round e2e- "$GATEWAYS" "$RECORDS" many_runs
done
printf 'e2e_50gw_records_per_s=%s\n' "$(best_of "$many_runs")"
printf 'e2e_50gw_submit_records_per_s=%s\n' "$(rate "$RECORDS" $((t1 - t0)))"
bench_say "e2e $GATEWAYS gateways: $RECORDS records submitted in $(((t1 - t0) / 1000000)) ms; rounds:$many_runs"
