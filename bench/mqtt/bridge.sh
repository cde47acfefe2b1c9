#!/usr/bin/env bash
# bench/mqtt/bridge.sh - the Mosquitto side of e2e_vs_mosquitto_bridge: an
# edge broker bridged to a central broker, both with TLS client certificates
# required, persistence on and QoS 1, carrying the same ~400-byte records from
# publishers on the edge to one subscriber on the central broker. Prints one
# line per run, e.g.
#   mosquitto_bridge_records_per_s=12345 records=100000 ... publishers=1
# Everything listens on 127.0.0.1 only; brokers and files are removed on exit.
#
# usage: bench/mqtt/bridge.sh --bin DIR [--publishers C] [--count M]
#                             [--payload BYTES] [--inflight N]
#   DIR holds mqtt_pub and mqtt_sub (e.g. build-bench/bench).
#   C publishers (separate connections) send M records each (default 1 x 100000).
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/common.sh
. "$HERE/../lib/common.sh"
# shellcheck source=../lib/pki.sh
. "$HERE/../lib/pki.sh"

BIN='' PUBLISHERS=1 COUNT=100000 PAYLOAD=400 INFLIGHT=100
while [ $# -gt 0 ]; do
    case $1 in
    --bin) BIN=${2:?--bin needs a directory}; shift 2 ;;
    --publishers) PUBLISHERS=${2:?}; shift 2 ;;
    --count) COUNT=${2:?}; shift 2 ;;
    --payload) PAYLOAD=${2:?}; shift 2 ;;
    --inflight) INFLIGHT=${2:?}; shift 2 ;;
    -h | --help) sed -n '2,14p' "$0"; exit 0 ;;
    *) bench_die "bridge.sh: unknown option $1" ;;
    esac
done
for v in "$PUBLISHERS" "$COUNT" "$PAYLOAD" "$INFLIGHT"; do
    [[ $v =~ ^[1-9][0-9]*$ ]] || bench_die "bridge.sh: '$v' is not a positive number"
done
if [ -z "$BIN" ] || [ ! -x "$BIN/mqtt_pub" ] || [ ! -x "$BIN/mqtt_sub" ]; then
    bench_die "bridge.sh: --bin must name the directory with mqtt_pub and mqtt_sub"
fi

MOSQUITTO=$(command -v mosquitto || true)
[ -z "$MOSQUITTO" ] && [ -x /usr/sbin/mosquitto ] && MOSQUITTO=/usr/sbin/mosquitto
[ -n "$MOSQUITTO" ] || bench_die "mosquitto is not installed (bench/run installs it)"
command -v mosquitto_pub >/dev/null || bench_die "mosquitto_pub (mosquitto-clients) is missing"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/sitesync-bench-mqtt.XXXXXX")
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do
        kill "$p" 2>/dev/null || true
    done
    for p in "${PIDS[@]}"; do
        wait "$p" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

bench_pki "$WORK/pki" central:server edge:server edge-bridge:both publisher:client \
    subscriber:client probe:client || bench_die "cannot create the throwaway PKI"
PKI=$WORK/pki

# broker_conf NAME PORT [bridge-to-port]: one broker's configuration. The
# settings that matter for the comparison: client certificates required and
# used as the identity, persistence on (Mosquitto writes its database on
# autosave and at exit, not per message: it does not fsync per message), QoS 1
# in-flight windows of $INFLIGHT, and no queue limit, so that no message is
# dropped when a consumer falls behind. TLS is left to negotiate (1.3 here:
# Mosquitto's tls_version is only a minimum); the handshakes happen before
# the clock starts and records are AES-GCM either way.
broker_conf() {
    local name=$1 port=$2 remote=${3:-}
    mkdir -p "$WORK/$name"
    cat >"$WORK/$name.conf" <<CONF
per_listener_settings false
allow_anonymous false
persistence true
persistence_location $WORK/$name/
max_inflight_messages $INFLIGHT
max_queued_messages 0
log_dest file $WORK/$name.log
log_type error
log_type warning
log_type notice
connection_messages true
listener $port 127.0.0.1
cafile $PKI/ca.crt
certfile $PKI/$name.crt
keyfile $PKI/$name.key
require_certificate true
use_identity_as_username true
CONF
    if [ -n "$remote" ]; then
        cat >>"$WORK/$name.conf" <<CONF

connection central
address 127.0.0.1:$remote
topic bench/# out 1
bridge_protocol_version mqttv311
cleansession false
try_private true
notifications false
remote_clientid edge-bridge
bridge_cafile $PKI/ca.crt
bridge_certfile $PKI/edge-bridge.crt
bridge_keyfile $PKI/edge-bridge.key
bridge_insecure false
CONF
    fi
}

CPORT=$(bench_free_port)
EPORT=$(bench_free_port)
while [ "$EPORT" = "$CPORT" ]; do EPORT=$(bench_free_port); done
broker_conf central "$CPORT"
broker_conf edge "$EPORT" "$CPORT"

# Run as root, Mosquitto drops to its own user: give it the files.
if [ "$(id -u)" -eq 0 ] && id mosquitto >/dev/null 2>&1; then
    chown -R mosquitto: "$WORK"
fi

"$MOSQUITTO" -c "$WORK/central.conf" 2>>"$WORK/central.stderr" &
PIDS+=($!)
"$MOSQUITTO" -c "$WORK/edge.conf" 2>>"$WORK/edge.stderr" &
PIDS+=($!)
for b in central:$CPORT edge:$EPORT; do
    if ! bench_wait_port "${b#*:}" 10; then
        cat "$WORK/${b%%:*}.log" "$WORK/${b%%:*}.stderr" >&2 2>/dev/null || true
        bench_die "the ${b%%:*} broker did not start"
    fi
done

TLS_ARGS=(--ca "$PKI/ca.crt" --cert "$PKI/subscriber.crt" --key "$PKI/subscriber.key")
READY=$WORK/ready
"$BIN/mqtt_sub" --host 127.0.0.1 --port "$CPORT" "${TLS_ARGS[@]}" --topic bench \
    --publishers "$PUBLISHERS" --count "$COUNT" --ready-file "$READY" --timeout-s 60 \
    >"$WORK/sub.out" 2>"$WORK/sub.err" &
SUB=$!
PIDS+=("$SUB")
bench_wait_line "$READY" subscribed 10 || {
    cat "$WORK/sub.err" >&2
    bench_die "the subscriber did not subscribe on the central broker"
}

# The timed run starts only once a message has crossed the bridge: until the
# bridge is connected, the edge would queue and the first records would wait.
probed=0
for _ in $(seq 1 50); do
    mosquitto_pub -h 127.0.0.1 -p "$EPORT" --cafile "$PKI/ca.crt" --cert "$PKI/probe.crt" \
        --key "$PKI/probe.key" -q 1 -t bench/probe -m probe 2>>"$WORK/probe.err" || true
    if bench_wait_line "$READY" probe 1; then
        probed=1
        break
    fi
done
if [ $probed -ne 1 ]; then
    cat "$WORK/probe.err" "$WORK/edge.log" >&2 2>/dev/null || true
    bench_die "no probe message crossed the edge -> central bridge"
fi

if ! "$BIN/mqtt_pub" --host 127.0.0.1 --port "$EPORT" --ca "$PKI/ca.crt" \
    --cert "$PKI/publisher.crt" --key "$PKI/publisher.key" --clients "$PUBLISHERS" \
    --count "$COUNT" --payload "$PAYLOAD" --inflight "$INFLIGHT" --qos 1 \
    --topic bench/records >"$WORK/pub.out" 2>"$WORK/pub.err"; then
    cat "$WORK/pub.err" >&2
    bench_die "the publisher failed"
fi
if ! wait "$SUB"; then
    cat "$WORK/sub.err" >&2
    bench_die "the subscriber did not receive every record"
fi
cat "$WORK/sub.out"
bench_say "publisher: $(cat "$WORK/pub.out")"
