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
# usage: e2e.sh --build-dir DIR --pki DIR [--records N] [--gateways G]
#               [--records-1gw M]   (default M = N)
# shellcheck source-path=SCRIPTDIR
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/common.sh
. "$HERE/../lib/common.sh"
# shellcheck source=../lib/sitesync.sh
. "$HERE/../lib/sitesync.sh"

ss_half_args "$@"
RECORDS=100000 GATEWAYS=50 ONE=
set -- "${HALF_ARGS[@]+"${HALF_ARGS[@]}"}"
while [ $# -gt 0 ]; do
    case $1 in
    --records) RECORDS=${2:?}; shift 2 ;;
    --gateways) GATEWAYS=${2:?}; shift 2 ;;
    --records-1gw) ONE=${2:?}; shift 2 ;;
    *) bench_die "e2e.sh: unknown option $1" ;;
    esac
done
ONE=${ONE:-$RECORDS}
ss_num "$RECORDS" --records
ss_num "$GATEWAYS" --gateways
ss_num "$ONE" --records-1gw
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
# sync_all PREFIX COUNT: `sitesync-gw sync` for COUNT gateways at once; all
# must exit 0 (drained: every record acknowledged).
sync_all() {
    local i node pids=() bad=0
    for ((i = 0; i < $2; i++)); do
        node=$(printf '%s%05d' "$1" "$i")
        "$GW" --journal "$WORK/j/$node" --ca "$PKI/ca.crt" --cert "$WORK/certs/$node.crt" \
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

# ---- 1 gateway ----
t0=$(now_ns)
fill one- 0 "$ONE"
t1=$(now_ns)
sd_start "$WORK/d1"
t2=$(now_ns)
sync_all one- 1 || bench_die "e2e.sh: the 1-gateway sync failed"
t3=$(now_ns)
got=$(sd_committed one-)
[ "$got" -eq "$ONE" ] || bench_die "e2e.sh: $got of $ONE records committed (1 gateway)"
sd_stop
printf 'e2e_records_per_s=%s\n' "$(rate "$ONE" $((t3 - t2)))"
printf 'e2e_submit_records_per_s=%s\n' "$(rate "$ONE" $((t1 - t0)))"
bench_say "e2e 1 gateway: $ONE records, submitted in $(((t1 - t0) / 1000000)) ms, synced in $(((t3 - t2) / 1000000)) ms"

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
sd_start "$WORK/d50"
t2=$(now_ns)
sync_all e2e- "$GATEWAYS" || bench_die "e2e.sh: the $GATEWAYS-gateway sync failed"
t3=$(now_ns)
got=$(sd_committed e2e-)
[ "$got" -eq "$RECORDS" ] || bench_die "e2e.sh: $got of $RECORDS records committed ($GATEWAYS gateways)"
sd_stop
printf 'e2e_50gw_records_per_s=%s\n' "$(rate "$RECORDS" $((t3 - t2)))"
printf 'e2e_50gw_submit_records_per_s=%s\n' "$(rate "$RECORDS" $((t1 - t0)))"
bench_say "e2e $GATEWAYS gateways: $RECORDS records, submitted in $(((t1 - t0) / 1000000)) ms, synced in $(((t3 - t2) / 1000000)) ms"
