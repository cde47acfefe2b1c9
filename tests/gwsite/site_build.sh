#!/bin/bash
# site_build.sh - the site gateway build (relay mode not built in) against
# the relay build: the site binary holds no hub symbol while the relay build
# does (so the check can see them), `relay` and a hub's `journal` fail with
# the error naming -DSITESYNC_GW_RELAY=ON before touching the journal
# directory, --help says relay is not built in, and the site commands still
# work: enrol, submit, journal, and sync to the real sitesyncd over loopback
# mutual TLS with the record merged there.
# usage: site_build.sh SITE_GW RELAY_GW SITESYNCD SITESYNC_ADMIN SITESYNC_PKI
set -u
SITE=$1 RELAY=$2 SD=$3 ADMIN=$4 PKI=$5
T=$(mktemp -d /tmp/gw-site.XXXXXX)
DPID=
cleanup() {
    [ -n "$DPID" ] && kill "$DPID" 2>/dev/null && wait "$DPID" 2>/dev/null
    rm -rf "$T"
}
trap cleanup EXIT
fail() {
    echo "FAIL: $*" >&2
    [ -f "$T/d.log" ] && tail -n 20 "$T/d.log" >&2
    exit 1
}
step() { echo "--- $*"; }
WANT='relay mode is not built into this binary; build with -DSITESYNC_GW_RELAY=ON'

step "symbols: no hub code in the site build, hub code in the relay build"
# Defined functions of the hub library (gw_relay*.c, gw_hub*.c, gw_nbtls*.c)
# and of cli_relay.c.
HUB='^[0-9a-f]+ [TtDdRrBb] (gw_relay_|gw_hubj_|gw_nb_|gw__cmd_relay|gw__cmd_journal_hub)'
nm "$SITE" >"$T/site.nm" || fail "nm $SITE"
nm "$RELAY" >"$T/relay.nm" || fail "nm $RELAY"
grep -Eq ' T gw_sync_session$' "$T/site.nm" || fail "no gw_sync_session in the site build's symbols"
if grep -E "$HUB" "$T/site.nm" >"$T/hub.nm"; then
    fail "hub symbols in the site build: $(head -5 "$T/hub.nm" | tr '\n' ' ')"
fi
for s in gw_relay_new gw_hubj_open gw_nb_handshake gw__cmd_relay; do
    grep -Eq " T $s\$" "$T/relay.nm" || fail "$s missing from the relay build (the check is blind)"
done

step "relay mode refused in the site build"
"$SITE" --journal "$T/hub-j" --listen 127.0.0.1:0 --server 127.0.0.1:1 relay >"$T/out" 2>"$T/err"
rc=$?
[ $rc -eq 1 ] || fail "relay: exit $rc, want 1"
grep -qF "$WANT" "$T/err" || fail "relay: error was: $(cat "$T/err")"
[ -e "$T/hub-j" ] && fail "relay in the site build created the journal directory"
mkdir -p "$T/hub-j2" && : >"$T/hub-j2/hub.ckpt"
"$SITE" --journal "$T/hub-j2" journal >"$T/out" 2>"$T/err"
rc=$?
[ $rc -eq 1 ] || fail "journal of a hub: exit $rc, want 1"
{ grep -qF "belongs to a hub" "$T/err" && grep -qF "$WANT" "$T/err"; } ||
    fail "journal of a hub: error was: $(cat "$T/err")"
"$SITE" --help | grep -Eq '^  relay +\(hub mode: not built into this binary\)' ||
    fail "--help of the site build does not say relay is not built in"
"$RELAY" --help | grep -Eq '^  relay +regional hub' || fail "--help of the relay build lost relay"

step "site commands in the site build"
"$SITE" enroll --node gw-e1 --out "$T/e1" >/dev/null || fail "enroll"
{ [ "$(stat -c %a "$T/e1.key")" = 600 ] && grep -q "CERTIFICATE REQUEST" "$T/e1.csr"; } ||
    fail "enroll: no 0600 key and CSR"
"$PKI" init --dir "$T/ca" >/dev/null || fail "pki init"
"$PKI" issue --dir "$T/ca" --role daemon --node central --dns localhost --ip 127.0.0.1 \
    --out "$T/daemon" >/dev/null || fail "issue daemon"
"$PKI" issue --dir "$T/ca" --role gateway --node gw-s1 --site site-s --out "$T/gw-s1" \
    >/dev/null || fail "issue gateway"
"$PKI" crl --dir "$T/ca" >/dev/null || fail "crl"
"$SD" --listen 127.0.0.1:0 --port-file "$T/port" --db "$T/d.db" --ca "$T/ca/ca.crt" \
    --crl "$T/ca/crl.pem" --cert "$T/daemon.crt" --key "$T/daemon.key" >>"$T/d.log" 2>&1 &
DPID=$!
for _ in $(seq 1 100); do
    [ -s "$T/port" ] && break
    sleep 0.1
done
[ -s "$T/port" ] || fail "daemon did not start"
gw() {
    "$SITE" --log-level warn --journal "$T/j" --ca "$T/ca/ca.crt" --cert "$T/gw-s1.crt" \
        --key "$T/gw-s1.key" --server "127.0.0.1:$(cat "$T/port")" "$@"
}
gw status --set alert_level=elevated --set note=site-build >/dev/null || fail "status"
key=$(gw incident --category intrusion --severity 3 --title "site build") || fail "incident"
gw journal >"$T/out" || fail "journal"
grep -q '^pending: *2$' "$T/out" || fail "journal does not show 2 pending: $(cat "$T/out")"
gw sync >"$T/out" 2>&1 || fail "sync: $(cat "$T/out")"
"$ADMIN" --db "$T/d.db" --json incidents --site site-s | grep -qF "\"$key\"" ||
    fail "incident $key not merged at the daemon"
"$ADMIN" --db "$T/d.db" --json sites | grep -q '"elevated"' || fail "status not merged"
echo "ok"
