# lib.sh - shared helpers of the relay scenarios (sourced): a fresh PKI,
# sitesyncd and sitesync-gw hubs on 127.0.0.1 with free ports, gateways
# through the CLI, sitesync-admin queries, bounded waits, cleanup of every
# process started. usage in a scenario: source lib.sh "$@"
set -u
GW=$1 SD=$2 ADMIN=$3 PKI=$4 FILL=$5 EVIL=$6
ASAN=${SITESYNC_ASAN:-0}
T=$(mktemp -d /tmp/relay-test.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
    wait 2>/dev/null
    [ -n "${RELAY_KEEP:-}" ] || rm -rf "$T"
}
trap cleanup EXIT
fail() {
    echo "FAIL: $*" >&2
    for f in "$T"/*.log; do
        [ -f "$f" ] && { echo "--- $f" >&2; tail -n 15 "$f" >&2; }
    done
    exit 1
}
step() { echo "--- $*"; }
now() { date +%s.%N; }
elapsed() { python3 -c "print(round($2 - $1, 3))"; }
count_json() { python3 -c 'import json,sys; print(len(json.load(sys.stdin)))'; }

pki_init() {
    "$PKI" init --dir "$T/ca" >/dev/null || fail "pki init"
    "$PKI" issue --dir "$T/ca" --role daemon --node central --dns localhost --ip 127.0.0.1 \
        --out "$T/central" >/dev/null || fail "issue daemon"
    "$PKI" crl --dir "$T/ca" >/dev/null || fail "crl"
}
# issue ROLE NODE SITE...
issue() {
    local role=$1 node=$2
    shift 2
    local args=()
    for s in "$@"; do args+=(--site "$s"); done
    if [ "$role" = relay ]; then args+=(--dns localhost --ip 127.0.0.1); fi
    "$PKI" issue --dir "$T/ca" --role "$role" --node "$node" "${args[@]}" --out "$T/$node" \
        >/dev/null || fail "issue $node"
}

DB="$T/central.sqlite"
DPORT=
DPID=
# start_daemon [PORT]: sitesyncd on 127.0.0.1 (a free port, or PORT again).
start_daemon() {
    rm -f "$T/dport"
    "$SD" --listen "127.0.0.1:${1:-0}" --port-file "$T/dport" --db "$DB" --ca "$T/ca/ca.crt" \
        --crl "$T/ca/crl.pem" --cert "$T/central.crt" --key "$T/central.key" \
        >>"$T/daemon.log" 2>&1 &
    DPID=$!
    PIDS+=("$DPID")
    for _ in $(seq 1 100); do
        [ -s "$T/dport" ] && break
        sleep 0.1
    done
    [ -s "$T/dport" ] || fail "daemon did not start"
    DPORT=$(cat "$T/dport")
}
stop_daemon() {
    kill -TERM "$DPID" 2>/dev/null
    wait "$DPID" 2>/dev/null
    DPID=
}

declare -A HPID HPORT
# start_hub NAME UPSTREAM_PORT [LISTEN_PORT] [extra flags...]
start_hub() {
    local name=$1 up=$2 lp=${3:-0}
    shift 3 2>/dev/null || shift $#
    rm -f "$T/$name.port"
    "$GW" --log-level info --journal "$T/hj-$name" --ca "$T/ca/ca.crt" --cert "$T/$name.crt" \
        --key "$T/$name.key" --crl "${HUB_CRL:-$T/ca/crl.pem}" --server "127.0.0.1:$up" \
        --listen "127.0.0.1:$lp" --port-file "$T/$name.port" --backoff-min-ms 100 \
        --backoff-max-ms 800 --ping-interval-ms 2000 "$@" relay >>"$T/hub-$name.log" 2>&1 &
    HPID[$name]=$!
    PIDS+=("${HPID[$name]}")
    for _ in $(seq 1 100); do
        [ -s "$T/$name.port" ] && break
        sleep 0.1
    done
    [ -s "$T/$name.port" ] || fail "hub $name did not start"
    HPORT[$name]=$(cat "$T/$name.port")
}
stop_hub() {
    kill -TERM "${HPID[$1]}" 2>/dev/null
    wait "${HPID[$1]}" 2>/dev/null
    local rc=$?
    HPID[$1]=
    return $rc
}
kill9_hub() {
    kill -9 "${HPID[$1]}" 2>/dev/null
    wait "${HPID[$1]}" 2>/dev/null
    HPID[$1]=
}

# gw NODE PORT ARGS...: the gateway CLI with NODE's certificate and journal.
gw() {
    local node=$1 port=$2
    shift 2
    "$GW" --log-level warn --journal "$T/j-$node" --ca "$T/ca/ca.crt" --cert "$T/$node.crt" \
        --key "$T/$node.key" --server "127.0.0.1:$port" --backoff-min-ms 100 \
        --backoff-max-ms 800 "$@"
}
admin() { "$ADMIN" --db "$DB" "$@"; }
# applied ORIGIN: audit entries of ORIGIN with outcome applied
applied() {
    admin --json audit --origin "$1" --outcome applied --limit 10000000 2>/dev/null | count_json
}
# wait_applied ORIGIN N SECONDS
wait_applied() {
    local got=0
    for _ in $(seq 1 $(($3 * 10))); do
        got=$(applied "$1")
        [ "$got" -ge "$2" ] && return 0
        sleep 0.1
    done
    echo "$1: $got of $2 applied after $3 s" >&2
    return 1
}
# paths ORIGIN: the distinct audit paths of ORIGIN's applied changes
paths() {
    admin --json audit --origin "$1" --outcome applied --limit 10000000 | python3 -c '
import json, sys
print(",".join(sorted({e["path"] for e in json.load(sys.stdin)})))'
}
# exactly_once ORIGIN N: N applied audit entries, N distinct incident titles,
# no change applied twice
exactly_once() {
    admin --json audit --origin "$1" --limit 10000000 | python3 -c '
import json, sys
origin, n = sys.argv[1], int(sys.argv[2])
es = json.load(sys.stdin)
ap = [e for e in es if e["outcome"] == "applied"]
seqs = [e["seq"] for e in ap]
if len(ap) != n or len(set(seqs)) != n:
    sys.exit("%s: %d applied (%d distinct seqs), want %d" % (origin, len(ap), len(set(seqs)), n))
titles = [e["fields"].get("title") for e in ap if e["collection"] == "incident"]
if len(titles) != len(set(titles)):
    sys.exit("%s: an incident title applied twice" % origin)
' "$1" "$2" || fail "exactly once: $1"
}
