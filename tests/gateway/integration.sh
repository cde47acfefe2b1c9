#!/bin/bash
# integration.sh - sitesync-gw against the real sitesyncd over loopback mutual
# TLS, with a fresh PKI and free ports: an offline backlog of N incidents
# synced in one go (all merged, all audited as applied, audit chain intact),
# last-writer-wins between two gateways of one site in both arrival orders,
# site authorization (refused at submission; a forged record refused by the
# daemon and reported by the gateway), `run` with a concurrent submission and
# SIGTERM, and on-device enrolment through sitesync-pki sign-csr.
# usage: integration.sh SITESYNC_GW SITESYNCD SITESYNC_ADMIN SITESYNC_PKI GW_FORGE
set -u
GW=$1 SD=$2 ADMIN=$3 PKI=$4 FORGE=$5
N=${GW_INTEGRATION_N:-10000}
T=$(mktemp -d /tmp/gw-integ.XXXXXX)
DPID=
RPID=
cleanup() {
    [ -n "$RPID" ] && kill "$RPID" 2>/dev/null && wait "$RPID" 2>/dev/null
    [ -n "$DPID" ] && kill "$DPID" 2>/dev/null && wait "$DPID" 2>/dev/null
    rm -rf "$T"
}
trap cleanup EXIT
[ -n "${GW_KEEP:-}" ] && trap - EXIT
fail() {
    echo "FAIL: $*" >&2
    [ -f "$T/d.log" ] && tail -n 20 "$T/d.log" >&2
    exit 1
}
step() { echo "--- $*"; }
count_json() { python3 -c 'import json,sys; print(len(json.load(sys.stdin)))'; }

step "PKI"
"$PKI" init --dir "$T/ca" >/dev/null || fail "pki init"
"$PKI" issue --dir "$T/ca" --role daemon --node central --dns localhost --ip 127.0.0.1 \
    --out "$T/daemon" >/dev/null || fail "issue daemon"
for g in gw-a1:site-a gw-a2:site-a gw-b1:site-b; do
    "$PKI" issue --dir "$T/ca" --role gateway --node "${g%%:*}" --site "${g##*:}" \
        --out "$T/${g%%:*}" >/dev/null || fail "issue $g"
done
"$PKI" crl --dir "$T/ca" >/dev/null || fail "crl"

start_daemon() {
    rm -f "$T/port"
    "$SD" --listen 127.0.0.1:0 --port-file "$T/port" --db "$1" --ca "$T/ca/ca.crt" \
        --crl "$T/ca/crl.pem" --cert "$T/daemon.crt" --key "$T/daemon.key" >>"$T/d.log" 2>&1 &
    DPID=$!
    for _ in $(seq 1 100); do
        [ -s "$T/port" ] && break
        sleep 0.1
    done
    [ -s "$T/port" ] || fail "daemon did not start"
    PORT=$(cat "$T/port")
}
stop_daemon() {
    kill -TERM "$DPID"
    wait "$DPID" || fail "daemon exit status $?"
    DPID=
}
# gw NAME [JOURNAL] ARGS...: the CLI with NAME's certificate.
gw() {
    local name=$1 j=$2
    shift 2
    "$GW" --log-level warn --journal "$T/$j" --ca "$T/ca/ca.crt" --cert "$T/$name.crt" \
        --key "$T/$name.key" --server "${SERVER:-127.0.0.1}:${PORT:-1}" "$@"
}
admin() { "$ADMIN" --db "$DB" "$@"; }

step "config file, with and without a UTF-8 byte order mark"
printf '{"batch_max": 77}' >"$T/cfg.json"
printf '\357\273\277{"batch_max": 78}' >"$T/cfg-bom.json"
"$GW" --config "$T/cfg.json" --print-config 2>&1 | grep -q "^batch_max *= 77 " ||
    fail "config file not applied"
"$GW" --config "$T/cfg-bom.json" --print-config 2>&1 | grep -q "^batch_max *= 78 " ||
    fail "config file with a BOM not applied"
printf '{"batch_max": 79} x' >"$T/cfg-bad.json"
"$GW" --config "$T/cfg-bad.json" --print-config >"$T/out" 2>&1 && fail "trailing data accepted"
grep -q "trailing data" "$T/out" || fail "config error message: $(cat "$T/out")"

step "$N incidents recorded while the daemon is down"
PORT=1 # nothing listens there: the link fails, the data stays
for i in $(seq 1 "$N"); do
    gw gw-a1 j-a1 incident --category intrusion --severity $((i % 5 + 1)) \
        --title "offline-$i" --location "gate $i" >/dev/null 2>"$T/err" ||
        fail "incident $i: $(cat "$T/err")"
done
gw gw-a1 j-a1 journal >"$T/out" 2>/dev/null || fail "journal"
grep -q "^pending: *$N\$" "$T/out" || fail "journal does not show $N pending: $(cat "$T/out")"
gw gw-a1 j-a1 sync >/dev/null 2>&1
rc=$?
[ $rc -eq 3 ] || fail "sync with the daemon down: exit $rc, want 3"
gw gw-a1 j-a1 journal 2>/dev/null | grep -q "^last error: *closed" || fail "last error not shown"

step "sync the backlog"
DB="$T/db1.sqlite"
start_daemon "$DB"
start=$(date +%s.%N)
gw gw-a1 j-a1 sync >"$T/out" 2>"$T/err" || fail "sync: $(cat "$T/out" "$T/err")"
end=$(date +%s.%N)
echo "synced $N in $(python3 -c "print(round($end - $start, 2))") s: $(cat "$T/out")"
gw gw-a1 j-a1 journal >"$T/out" 2>/dev/null
grep -q "^pending: *0\$" "$T/out" || fail "pending after sync: $(cat "$T/out")"
grep -q "^committed seq: *$N " "$T/out" || fail "committed after sync: $(cat "$T/out")"
got=$(admin --json incidents --site site-a --limit 1000000 | count_json)
[ "$got" = "$N" ] || fail "sitesync-admin incidents: $got, want $N"
got=$(admin --json audit --origin gw-a1 --outcome applied --limit 1000000 | count_json)
[ "$got" = "$N" ] || fail "audit applied: $got, want $N"
admin audit verify >/dev/null || fail "audit verify"
# A second sync is a no-op.
gw gw-a1 j-a1 sync >/dev/null 2>&1 || fail "second sync"
got=$(admin --json audit --origin gw-a1 --limit 1000000 | count_json)
[ "$got" = "$N" ] || fail "audit after a second sync: $got entries, want $N"
# A key that is not the certificate's is refused before any connection (the
# signer checks the pair once; TLS trusts that check).
gw gw-a1 j-a1 incident --category intrusion --severity 1 --title mismatched-key >/dev/null 2>&1 ||
    fail "incident for the key check"
"$GW" --log-level warn --journal "$T/j-a1" --ca "$T/ca/ca.crt" --cert "$T/gw-a1.crt" \
    --key "$T/gw-b1.key" --server "127.0.0.1:$PORT" sync >"$T/out" 2>&1
rc=$?
[ $rc -eq 1 ] || fail "sync with another gateway's key: exit $rc, want 1 ($(cat "$T/out"))"
grep -q "key_matches_cert" "$T/out" || fail "key check message: $(cat "$T/out")"
got=$(admin --json audit --origin gw-a1 --limit 1000000 | count_json)
[ "$got" = "$N" ] || fail "audit after the refused key: $got entries, want $N"
gw gw-a1 j-a1 sync >/dev/null 2>&1 || fail "sync after the refused key"
N=$((N + 1))

step "site authorization"
gw gw-a1 j-a1 --site site-b incident --category theft --severity 2 --title x >/dev/null 2>"$T/err"
rc=$?
[ $rc -eq 2 ] || fail "site-b submission: exit $rc, want 2"
grep -q "not named in this gateway's certificate" "$T/err" || fail "message: $(cat "$T/err")"
"$FORGE" "$T/j-a1" gw-a1 site-b forged-record >/dev/null || fail "forge"
gw gw-a1 j-a1 sync >"$T/out" 2>&1
rc=$?
[ $rc -eq 4 ] || fail "sync of a forged site-b record: exit $rc, want 4 ($(cat "$T/out"))"
gw gw-a1 j-a1 journal >"$T/out" 2>/dev/null
grep -q "^refused changes: *1\$" "$T/out" || fail "journal refused count: $(cat "$T/out")"
grep -q "code=forbidden_site" "$T/out" || fail "journal refused line: $(cat "$T/out")"
admin --json incidents --site site-b | grep -q forged-record && fail "forged record applied"
got=$(admin --json audit --origin gw-a1 --limit 1000000 | python3 -c '
import json, sys
print(sum(1 for e in json.load(sys.stdin) if e["outcome"].startswith("rejected:forbidden_site")))')
[ "$got" = "1" ] || fail "audit rejected:forbidden_site: $got, want 1"
stop_daemon

step "two gateways of one site: the later HLC wins in both arrival orders"
SERVER=localhost # the DNS name path of certificate verification
gw gw-a1 j-lww-a1 status --set alert_level=high --set note=first >/dev/null || fail "a1 status"
sleep 0.2
gw gw-a2 j-lww-a2 status --set alert_level=critical --set note=second >/dev/null || fail "a2 status"
cp -a "$T/j-lww-a1" "$T/j-lww-a1b"
cp -a "$T/j-lww-a2" "$T/j-lww-a2b"
for order in "a1 a2" "a2 a1"; do
    DB="$T/db-${order// /-}.sqlite"
    start_daemon "$DB"
    for who in $order; do
        j=j-lww-$who
        [ "$order" = "a2 a1" ] && j=j-lww-${who}b
        gw "gw-$who" "$j" sync >/dev/null 2>"$T/err" || fail "sync $who: $(cat "$T/err")"
    done
    lvl=$(admin --json sites | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["alert_level"])')
    [ "$lvl" = "critical" ] || fail "order $order: alert_level $lvl, want critical"
    admin audit verify >/dev/null || fail "audit verify ($order)"
    stop_daemon
done
SERVER=127.0.0.1

step "run: concurrent submissions, SIGTERM stops cleanly"
DB="$T/db-run.sqlite"
start_daemon "$DB"
# Started directly (not through the gw function) so $! is sitesync-gw itself.
"$GW" --log-level info --journal "$T/j-b1" --ca "$T/ca/ca.crt" --cert "$T/gw-b1.crt" \
    --key "$T/gw-b1.key" --server "127.0.0.1:$PORT" --sync-interval-ms 200 run 2>"$T/run.log" &
RPID=$!
for i in $(seq 1 20); do
    gw gw-b1 j-b1 incident --category fire --severity 4 --title "live-$i" >/dev/null ||
        fail "submission $i while run is active"
done
for _ in $(seq 1 100); do
    got=$(admin --json incidents --site site-b | count_json)
    [ "$got" = "20" ] && break
    sleep 0.2
done
[ "$got" = "20" ] || fail "run delivered $got of 20"
kill -TERM "$RPID"
wait "$RPID"
rc=$?
RPID=
[ $rc -eq 0 ] || fail "run exit $rc after SIGTERM: $(tail -n 5 "$T/run.log")"
grep -q "event=run_stop reason=signal" "$T/run.log" || fail "run did not log its stop"

step "storage lost, reports recorded before the next connection: renumbered, none lost"
rm -rf "$T/j-b1"
for i in $(seq 1 5); do
    gw gw-b1 j-b1 incident --category fire --severity 3 --title "after-loss-$i" >/dev/null ||
        fail "submission $i on the new journal"
done
gw gw-b1 j-b1 sync >"$T/out" 2>"$T/err" || fail "sync after storage loss: $(cat "$T/out" "$T/err")"
got=$(admin --json incidents --site site-b --limit 1000 | count_json)
[ "$got" = "25" ] || fail "after storage loss: $got incidents of site-b, want 25"
for i in $(seq 1 5); do
    admin --json incidents --site site-b --limit 1000 | grep -q "\"after-loss-$i\"" ||
        fail "after-loss-$i missing"
done
gw gw-b1 j-b1 journal >"$T/out" 2>/dev/null
grep -q "^committed seq: *25 " "$T/out" || fail "committed after renumber: $(cat "$T/out")"
got=$(admin --json audit --origin gw-b1 --limit 1000 | python3 -c '
import json, sys
print(sum(1 for e in json.load(sys.stdin) if e["outcome"] != "applied"))')
[ "$got" = "0" ] || fail "audit after renumber: $got entries not applied (tamper?)"

step "enroll: key made on the device, CSR signed by sitesync-pki"
"$GW" --log-level warn enroll --node gw-c1 --out "$T/gw-c1" >/dev/null || fail "enroll"
[ "$(stat -c %a "$T/gw-c1.key")" = "600" ] || fail "key mode $(stat -c %a "$T/gw-c1.key")"
"$PKI" sign-csr --dir "$T/ca" --csr "$T/gw-c1.csr" --role gateway --node gw-c1 --site site-c \
    --out "$T/gw-c1.crt" >/dev/null || fail "sign-csr"
gw gw-c1 j-c1 status --set alert_level=normal >/dev/null || fail "c1 status"
gw gw-c1 j-c1 sync >/dev/null 2>"$T/err" || fail "c1 sync: $(cat "$T/err")"
admin --json sites | grep -q '"site-c"' || fail "site-c not merged"
stop_daemon

echo "PASS"
