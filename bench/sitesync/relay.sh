#!/usr/bin/env bash
# bench/sitesync/relay.sh - relay overhead and the cost of origin signatures.
#
# relay_vs_direct: G gateways (50) with N records in total in real
# sitesync-gw journals (filled as in e2e.sh, then copied so both cases send
# the same bytes) sync once straight to a fresh sitesyncd and once through one
# regional hub (`sitesync-gw relay`, its own durable journal, forwarding the
# signed envelopes byte for byte upstream) to another fresh sitesyncd. Direct:
# the clock runs from starting the syncs to the last one exiting (every
# record acknowledged by the daemon, so committed). Through the hub: from
# starting the syncs to the daemon having committed all N records (polled
# with sitesync-admin every ~0.1 s); the time at which the gateways were done
# (the hub acknowledged, durably journalled) is reported too.
#
# sig_verify_us_per_envelope: bench/sig_cost, OpenSSL ECDSA P-256 over
# SHA-256 of a 40 KiB envelope, cached-certificate path (the daemon caches
# verified certificates by SHA-256), with the uncached path and the split.
# Prints:
#   relay_direct_records_per_s relay_records_per_s relay_hub_accept_records_per_s
#   relay_vs_direct sig_verify_us_per_envelope sig_verify_uncached_us
#   sig_sha256_us sig_ecdsa_us
#
# usage: relay.sh --build-dir DIR --pki DIR [--records N] [--gateways G]
# shellcheck source-path=SCRIPTDIR
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/common.sh
. "$HERE/../lib/common.sh"
# shellcheck source=../lib/sitesync.sh
. "$HERE/../lib/sitesync.sh"

ss_half_args "$@"
RECORDS=100000 GATEWAYS=50
set -- "${HALF_ARGS[@]+"${HALF_ARGS[@]}"}"
while [ $# -gt 0 ]; do
    case $1 in
    --records) RECORDS=${2:?}; shift 2 ;;
    --gateways) GATEWAYS=${2:?}; shift 2 ;;
    *) bench_die "relay.sh: unknown option $1" ;;
    esac
done
ss_num "$RECORDS" --records
ss_num "$GATEWAYS" --gateways
PER=$((RECORDS / GATEWAYS))
[ $((PER * GATEWAYS)) -eq "$RECORDS" ] || bench_die "relay.sh: --records must divide by --gateways"

# ---- signature verification (needs nothing running) ----
if [ -x "$BIN/sig_cost" ]; then
    out=$("$BIN/sig_cost" -n 2000) || bench_die "relay.sh: sig_cost failed"
    printf 'sig_verify_us_per_envelope=%s\n' "$(bench_field "$out" sig_verify_us_per_envelope)"
    printf 'sig_verify_uncached_us=%s\n' "$(bench_field "$out" sig_verify_uncached_us)"
    printf 'sig_sha256_us=%s\n' "$(bench_field "$out" sha256_us)"
    printf 'sig_ecdsa_us=%s\n' "$(bench_field "$out" ecdsa_verify_us)"
else
    printf 'not available yet: sig_verify_us_per_envelope: %s is not built\n' "$BIN/sig_cost"
fi

# ---- relay against direct ----
if ! "$GW" --help 2>&1 | grep -Eq '^ +relay( |$)'; then
    printf 'not available yet: relay_vs_direct: %s\n' \
        "sitesync-gw has no relay command yet (\`sitesync-gw --help\` lists none)"
    exit 0
fi
[ -x "$BIN/gw_fill" ] || bench_die "relay.sh: $BIN/gw_fill is not built"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/sitesync-bench-relay.XXXXXX")
HUB=
cleanup() {
    if [ -n "$HUB" ]; then
        kill -TERM "$HUB" 2>/dev/null || true
        wait "$HUB" 2>/dev/null || true
    fi
    sd_stop
    rm -rf "$WORK"
}
trap cleanup EXIT
now_ns() { date +%s%N; }
rate() { awk -v n="$1" -v t="$2" 'BEGIN { printf "%.0f", n / (t / 1e9) }'; }

# Identities: G gateways (one site each) and a hub that may relay for them.
mkdir -p "$WORK/certs"
"$BIN/ss_load" mint --ca-dir "$PKI/ca" --out "$WORK/certs" --gateways "$GATEWAYS" \
    --prefix relay- >/dev/null
sites=()
for ((i = 0; i < GATEWAYS; i++)); do
    sites+=(--site "$(printf 'site-%05d' "$i")")
done
"$BUILD/pki/sitesync-pki" issue --dir "$PKI/ca" --role relay --node bench-hub "${sites[@]}" \
    --ip 127.0.0.1 --days 1 --out "$WORK/hub" --force >/dev/null ||
    bench_die "relay.sh: cannot issue the hub's certificate"

pids=()
for ((i = 0; i < GATEWAYS; i++)); do
    node=$(printf 'relay-%05d' "$i")
    "$BIN/gw_fill" --journal "$WORK/j/$node" --cert "$WORK/certs/$node.crt" -n "$PER" \
        >/dev/null &
    pids+=($!)
done
for p in "${pids[@]}"; do
    wait "$p" || bench_die "relay.sh: filling a journal failed"
done
cp -a "$WORK/j" "$WORK/j2"

# sync_all JOURNALS PORT: every gateway's `sitesync-gw sync` at once; all
# must exit 0 (drained: every record acknowledged by whoever is at PORT).
sync_all() {
    local i node bad=0 spids=()
    for ((i = 0; i < GATEWAYS; i++)); do
        node=$(printf 'relay-%05d' "$i")
        "$GW" --journal "$1/$node" --ca "$PKI/ca.crt" --cert "$WORK/certs/$node.crt" \
            --key "$WORK/certs/$node.key" --server "127.0.0.1:$2" --log-level warn \
            sync >"$WORK/sync-$node.out" 2>&1 &
        spids+=($!)
    done
    for i in "${spids[@]}"; do
        wait "$i" || bad=$((bad + 1))
    done
    if [ $bad -ne 0 ]; then
        bench_say "relay: $bad sync(s) failed: $(cat "$WORK"/sync-*.out | head -3)"
        return 1
    fi
}

# direct
sd_start "$WORK/d1"
t0=$(now_ns)
sync_all "$WORK/j" "$SD_PORT" || bench_die "relay.sh: direct syncs failed"
t1=$(now_ns)
got=$(sd_committed relay-)
[ "$got" -eq "$RECORDS" ] || bench_die "relay.sh: $got of $RECORDS committed (direct)"
sd_stop
direct=$(rate "$RECORDS" $((t1 - t0))) direct_ms=$(((t1 - t0) / 1000000))

# through the hub
sd_start "$WORK/d2"
"$GW" --listen 127.0.0.1:0 --port-file "$WORK/hub.port" --server "127.0.0.1:$SD_PORT" \
    --ca "$PKI/ca.crt" --cert "$WORK/hub.crt" --key "$WORK/hub.key" --crl "$PKI/ca/crl.pem" \
    --journal "$WORK/hubj" --log-level warn relay 2>"$WORK/hub.log" &
HUB=$!
for _ in $(seq 1 150); do
    [ -s "$WORK/hub.port" ] && break
    kill -0 "$HUB" 2>/dev/null || break
    sleep 0.1
done
[ -s "$WORK/hub.port" ] || bench_die "relay.sh: the hub did not start: $(tail -3 "$WORK/hub.log")"
t0=$(now_ns)
sync_all "$WORK/j2" "$(cat "$WORK/hub.port")" || bench_die "relay.sh: syncs to the hub failed"
t1=$(now_ns)
got=0
for _ in $(seq 1 6000); do
    got=$(sd_committed relay-)
    [ "$got" -ge "$RECORDS" ] && break
    kill -0 "$HUB" 2>/dev/null || break
    sleep 0.1
done
t2=$(now_ns)
[ "$got" -eq "$RECORDS" ] ||
    bench_die "relay.sh: $got of $RECORDS committed through the hub ($(tail -2 "$WORK/hub.log"))"
kill -TERM "$HUB"
wait "$HUB" || bench_die "relay.sh: the hub did not stop cleanly"
HUB=
sd_stop
relayed=$(rate "$RECORDS" $((t2 - t0)))
bench_say "relay: $GATEWAYS gateways, $RECORDS records: direct $direct_ms ms; hub accepted in $(((t1 - t0) / 1000000)) ms, committed in $(((t2 - t0) / 1000000)) ms"
printf 'relay_direct_records_per_s=%s\n' "$direct"
printf 'relay_records_per_s=%s\n' "$relayed"
printf 'relay_hub_accept_records_per_s=%s\n' "$(rate "$RECORDS" $((t1 - t0)))"
printf 'relay_vs_direct=%s\n' "$(awk -v a="$relayed" -v b="$direct" 'BEGIN { printf "%.2f", a / b }')"
