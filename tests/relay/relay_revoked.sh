#!/bin/bash
# relay_revoked.sh - hub-enforced revocation while the centre is unreachable:
# a gateway revoked by a CRL the hub got from a file (SIGHUP), and another
# revoked by a CRL the hub got from the daemon's CRL frame, are both refused
# by the hub with the daemon down, also after the hub restarts with its old
# CRL file (the adopted CRL is stored); honest gateways keep being accepted
# and their data arrives once the daemon is back.
source "$(dirname "$0")/lib.sh" "$@"
pki_init
issue relay hub-a site-a
issue gateway gw-ok site-a
issue gateway gw-x site-a
issue gateway gw-y site-a
cp "$T/ca/crl.pem" "$T/hub-crl.pem"
HUB_CRL=$T/hub-crl.pem

start_daemon
start_hub hub-a "$DPORT"
H=${HPORT[hub-a]}
for g in gw-ok gw-x gw-y; do
    gw "$g" "$H" status --set alert_level=normal >/dev/null || fail "$g status"
    gw "$g" "$H" sync >/dev/null 2>&1 || fail "$g first sync"
done

step "gw-x revoked; the hub gets the new CRL by file + SIGHUP"
"$PKI" revoke --dir "$T/ca" --node gw-x >/dev/null || fail "revoke x"
"$PKI" crl --dir "$T/ca" >/dev/null || fail "crl"
cp "$T/ca/crl.pem" "$T/hub-crl.pem.new" && mv "$T/hub-crl.pem.new" "$T/hub-crl.pem"
kill -HUP "${HPID[hub-a]}"
for _ in $(seq 1 50); do
    grep -q "event=crl_adopted source=reload" "$T/hub-hub-a.log" && break
    sleep 0.1
done
grep -q "event=crl_adopted source=reload" "$T/hub-hub-a.log" || fail "hub did not reload"

step "gw-y revoked; the daemon hands the new CRL to the hub (CRL frame after SIGHUP)"
cp "$T/hub-crl.pem" "$T/hub-crl-old.pem"
"$PKI" revoke --dir "$T/ca" --node gw-y >/dev/null || fail "revoke y"
"$PKI" crl --dir "$T/ca" >/dev/null || fail "crl 2"
kill -HUP "$DPID"
for _ in $(seq 1 100); do
    grep -q "event=crl_adopted source=upstream" "$T/hub-hub-a.log" && break
    sleep 0.1
done
grep -q "event=crl_adopted source=upstream" "$T/hub-hub-a.log" || fail "hub did not adopt the frame"

step "daemon down: the hub refuses the revoked, accepts the honest"
stop_daemon
for g in gw-x gw-y; do
    gw "$g" "$H" status --set alert_level=critical >/dev/null || fail "$g status offline"
    gw "$g" "$H" sync >"$T/out" 2>&1
    rc=$?
    [ $rc -eq 3 ] || fail "revoked $g through the hub: exit $rc, want 3 ($(cat "$T/out"))"
done
gw gw-ok "$H" status --set alert_level=high >/dev/null || fail "ok status"
gw gw-ok "$H" sync >"$T/out" 2>&1 || fail "honest gateway refused by the hub: $(cat "$T/out")"
n=$(grep -c "event=downstream_refused.*TLS handshake failed" "$T/hub-hub-a.log")
[ "$n" -ge 2 ] || fail "hub logged $n handshake refusals, want >= 2"

step "a CRL from another CA (SIGHUP) is refused; the hub keeps enforcing its own"
"$PKI" init --dir "$T/other-ca" >/dev/null || fail "other ca"
"$PKI" crl --dir "$T/other-ca" >/dev/null || fail "other crl"
cp "$T/other-ca/crl.pem" "$T/hub-crl.pem"
kill -HUP "${HPID[hub-a]}"
for _ in $(seq 1 50); do
    grep -q "event=crl_refused source=reload" "$T/hub-hub-a.log" && break
    sleep 0.1
done
grep -q "event=crl_refused source=reload reason=\"not issued or not signed by the CA\"" \
    "$T/hub-hub-a.log" || fail "foreign CRL not refused"
gw gw-x "$H" sync >"$T/out" 2>&1
rc=$?
[ $rc -eq 3 ] || fail "gw-x accepted after a foreign CRL was offered: exit $rc"

step "hub restarted with its old CRL file, daemon still down: still refused"
stop_hub hub-a || fail "hub stop"
HUB_CRL=$T/hub-crl-old.pem
start_hub hub-a "$DPORT" "$H"
gw gw-y "$H" sync >"$T/out" 2>&1
rc=$?
[ $rc -eq 3 ] || fail "revoked gw-y after a hub restart: exit $rc, want 3"

step "daemon back: the honest report arrives, the revoked ones never"
start_daemon "$DPORT"
wait_applied gw-ok 2 30 || fail "gw-ok offline report not delivered"
for g in gw-x gw-y; do
    got=$(applied "$g")
    [ "$got" = 1 ] || fail "$g: $got applied, want 1 (only the one before revocation)"
done
echo PASS
