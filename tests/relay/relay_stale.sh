#!/bin/bash
# relay_stale.sh - the stale-CRL policy of a hub whose CRL is past its
# nextUpdate while the centre is unreachable: "refuse" refuses every
# downstream handshake; "warn" (the default) keeps enforcing the CRL it has,
# accepts valid gateways and logs a warning. The stale CRL is made with
# openssl ca from the sitesync CA's key (sitesync-pki only makes fresh ones).
source "$(dirname "$0")/lib.sh" "$@"
pki_init
issue relay hub-a site-a
issue gateway gw-a1 site-a
issue gateway gw-r site-a
mkdir -p "$T/oca"
: >"$T/oca/index.txt"
echo 64 >"$T/oca/crlnumber"
cat >"$T/oca/ca.cnf" <<CNF
[ ca ]
default_ca = d
[ d ]
database = $T/oca/index.txt
crlnumber = $T/oca/crlnumber
default_md = sha256
crl_extensions = ext
[ ext ]
authorityKeyIdentifier = keyid:always
CNF
key=$(ls "$T"/ca/private/* | head -1)
openssl ca -batch -config "$T/oca/ca.cnf" -keyfile "$key" -cert "$T/ca/ca.crt" \
    -revoke "$T/gw-r.crt" 2>"$T/openssl.log" || fail "openssl ca -revoke: $(cat "$T/openssl.log")"
openssl ca -gencrl -batch -config "$T/oca/ca.cnf" -keyfile "$key" -cert "$T/ca/ca.crt" \
    -crl_lastupdate 20200101000000Z -crl_nextupdate 20200102000000Z -out "$T/stale.pem" \
    2>"$T/openssl.log" || fail "openssl ca -gencrl: $(cat "$T/openssl.log")"
HUB_CRL=$T/stale.pem

start_daemon
stop_daemon # the centre is unreachable from here on
gw gw-a1 1 status --set alert_level=high >/dev/null || fail "status"
gw gw-r 1 status --set alert_level=high >/dev/null || fail "status r"

step "crl_stale_policy refuse: downstream handshakes refused"
start_hub hub-a "$DPORT" 0 --crl-stale-policy refuse
gw gw-a1 "${HPORT[hub-a]}" sync >"$T/out" 2>&1
rc=$?
[ $rc -eq 3 ] || fail "sync through a hub with a stale CRL and policy refuse: exit $rc, want 3"
grep -q "event=crl_stale policy=refuse" "$T/hub-hub-a.log" || fail "no refuse log line"
stop_hub hub-a

step "crl_stale_policy warn: the stale CRL is still enforced, valid gateways accepted"
start_hub hub-a "$DPORT" 0 --crl-stale-policy warn
gw gw-a1 "${HPORT[hub-a]}" sync >"$T/out" 2>&1 || fail "policy warn refused a valid gateway: $(cat "$T/out")"
grep -q "event=crl_stale policy=warn" "$T/hub-hub-a.log" || fail "no warning logged"
gw gw-r "${HPORT[hub-a]}" sync >"$T/out" 2>&1
rc=$?
[ $rc -eq 3 ] || fail "gateway revoked in the stale CRL accepted under warn: exit $rc, want 3"
stop_hub hub-a
echo PASS
