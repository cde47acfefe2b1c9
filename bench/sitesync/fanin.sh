#!/usr/bin/env bash
# bench/sitesync/fanin.sh - fan-in and idle connections against sitesyncd,
# held by bench/ss_load (one epoll loop of OpenSSL sessions, each a distinct
# gateway identity minted from the run's CA; not one sitesync-gw process
# per gateway, which two cores could not start a thousand of at once).
#
# Fan-in: G gateways (1,000; --quick 300) connect and get WELCOME, so all
# sessions are open at once; then each sends one signed envelope of 100
# records. Drain time and per-gateway sync time run from that release to the
# last ACK (durable). Every record is checked committed with sitesync-admin.
# Idle: I sessions (5,000; --quick 1,000) after HELLO/WELCOME, on a fresh
# daemon; daemon RSS per connection = (VmRSS with them - VmRSS before) / I.
# Prints:
#   fanin_gateways fanin_connect_s fanin_1000_drain_s fanin_p50_ms fanin_p99_ms
#   fanin_committed fanin_daemon_peak_rss_kib idle_sessions
#   idle_5000_rss_per_conn_kib sitesyncd_nofile_limit
#
# usage: fanin.sh --build-dir DIR --pki DIR [--quick] [--gateways G] [--idle I]
# shellcheck source-path=SCRIPTDIR
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/common.sh
. "$HERE/../lib/common.sh"
# shellcheck source=../lib/sitesync.sh
. "$HERE/../lib/sitesync.sh"

ss_half_args "$@"
GATEWAYS=1000 IDLE=5000 RECORDS=100
set -- "${HALF_ARGS[@]+"${HALF_ARGS[@]}"}"
while [ $# -gt 0 ]; do
    case $1 in
    --quick) GATEWAYS=300 IDLE=1000; shift ;;
    --gateways) GATEWAYS=${2:?}; shift 2 ;;
    --idle) IDLE=${2:?}; shift 2 ;;
    *) bench_die "fanin.sh: unknown option $1" ;;
    esac
done
ss_num "$GATEWAYS" --gateways
ss_num "$IDLE" --idle

WORK=$(mktemp -d "${TMPDIR:-/tmp}/sitesync-bench-fanin.XXXXXX")
LOAD=
cleanup() {
    if [ -n "$LOAD" ]; then
        kill -TERM "$LOAD" 2>/dev/null || true
        wait "$LOAD" 2>/dev/null || true
    fi
    sd_stop
    rm -rf "$WORK"
}
trap cleanup EXIT
# Room for the idle sessions: the default max_connections (4096) is below
# 5,000, so the daemon is told; every other setting is the default.
MAXCONN=$((IDLE > GATEWAYS ? IDLE + 100 : GATEWAYS + 100))

# ---- fan-in ----
sd_start "$WORK/fanin" --max-connections "$MAXCONN"
nofile=$(awk '/^Max open files/ { print $4 }' "/proc/$SD_PID/limits")
out=$("$BIN/ss_load" fanin --ca-dir "$PKI/ca" --port "$SD_PORT" --gateways "$GATEWAYS" \
    --envelopes 1 --changes "$RECORDS" --concurrency "$GATEWAYS" --prefix fan-) ||
    bench_die "fanin.sh: the fan-in client failed ($(grep -c level=warn "$SD_LOG") daemon warnings)"
peak=$(sd_status_kib VmHWM)
got=$(sd_committed fan-)
[ "$got" -eq $((GATEWAYS * RECORDS)) ] ||
    bench_die "fanin.sh: $got records committed, expected $((GATEWAYS * RECORDS))"
sd_stop
bench_say "fan-in: $out"
printf 'fanin_gateways=%s\n' "$GATEWAYS"
printf 'fanin_connect_s=%s\n' "$(bench_field "$out" fanin_connect_s)"
printf 'fanin_1000_drain_s=%s\n' "$(bench_field "$out" fanin_drain_s)"
printf 'fanin_p50_ms=%s\n' "$(bench_field "$out" fanin_p50_ms)"
printf 'fanin_p99_ms=%s\n' "$(bench_field "$out" fanin_p99_ms)"
printf 'fanin_committed=%s\n' "$got"
printf 'fanin_daemon_peak_rss_kib=%s\n' "$peak"

# ---- idle ----
sd_start "$WORK/idle" --max-connections "$MAXCONN"
sleep 0.5
base=$(sd_status_kib VmRSS)
"$BIN/ss_load" idle --ca-dir "$PKI/ca" --port "$SD_PORT" --gateways "$IDLE" \
    --concurrency 100 --hold-ms 600000 --prefix idle- >"$WORK/idle.out" 2>&1 &
LOAD=$!
for _ in $(seq 1 1800); do
    grep -q '^ready' "$WORK/idle.out" && break
    kill -0 "$LOAD" 2>/dev/null || break
    sleep 0.1
done
grep -q '^ready' "$WORK/idle.out" ||
    bench_die "fanin.sh: idle sessions did not all open: $(tail -2 "$WORK/idle.out")"
sleep 1 # let the last WELCOMEs' buffers settle
rss=$(sd_status_kib VmRSS)
kill -TERM "$LOAD"
wait "$LOAD" || bench_die "fanin.sh: idle sessions were closed early: $(tail -2 "$WORK/idle.out")"
LOAD=
bench_say "idle: $(head -1 "$WORK/idle.out"), daemon VmRSS ${base} KiB -> ${rss} KiB"
printf 'idle_sessions=%s\n' "$IDLE"
printf 'idle_5000_rss_per_conn_kib=%s\n' "$(awk -v a="$base" -v b="$rss" -v n="$IDLE" \
    'BEGIN { printf "%.1f", (b - a) / n }')"
printf 'sitesyncd_nofile_limit=%s\n' "$nofile"
