#!/bin/bash
# relay_tiers.sh - gateways -> hub-low -> hub-top -> sitesyncd, and one
# gateway straight to hub-top: everything exactly once, audited
# "via hub-low,hub-top" and "via hub-top"; the daemon's CRL reaches hub-top
# and is passed down to hub-low.
source "$(dirname "$0")/lib.sh" "$@"
N=30
[ "$ASAN" = 1 ] && N=10
pki_init
issue relay hub-top site-a site-b site-c
issue relay hub-low site-a site-b
issue gateway gw-a1 site-a
issue gateway gw-b1 site-b
issue gateway gw-c1 site-c
issue gateway gw-x site-a

start_daemon
start_hub hub-top "$DPORT"
start_hub hub-low "${HPORT[hub-top]}"
LOW=${HPORT[hub-low]} TOP=${HPORT[hub-top]}

step "two tiers"
for g in gw-a1 gw-b1; do
    for i in $(seq 1 "$N"); do
        gw "$g" "$LOW" incident --category fire --severity 3 --title "$g-$i" >/dev/null ||
            fail "$g incident"
    done
    gw "$g" "$LOW" sync >"$T/out" 2>&1 || fail "$g sync via hub-low: $(cat "$T/out")"
done
for i in $(seq 1 "$N"); do
    gw gw-c1 "$TOP" incident --category fire --severity 3 --title "gw-c1-$i" >/dev/null ||
        fail "c1 incident"
done
gw gw-c1 "$TOP" sync >"$T/out" 2>&1 || fail "gw-c1 sync via hub-top: $(cat "$T/out")"
for g in gw-a1 gw-b1 gw-c1; do
    wait_applied "$g" "$N" 30 || fail "$g not delivered"
    exactly_once "$g" "$N"
done
for g in gw-a1 gw-b1; do
    p=$(paths "$g")
    [ "$p" = "via hub-low,hub-top" ] || fail "$g audit path \"$p\", want \"via hub-low,hub-top\""
done
p=$(paths gw-c1)
[ "$p" = "via hub-top" ] || fail "gw-c1 audit path \"$p\", want \"via hub-top\""
admin audit verify >/dev/null || fail "audit verify"

step "a revocation travels daemon -> hub-top -> hub-low as CRL frames"
gw gw-x "$LOW" status --set alert_level=normal >/dev/null || fail "x status"
gw gw-x "$LOW" sync >/dev/null 2>&1 || fail "gw-x sync before revocation"
"$PKI" revoke --dir "$T/ca" --node gw-x >/dev/null || fail "revoke"
"$PKI" crl --dir "$T/ca" >/dev/null || fail "crl"
kill -HUP "$DPID"
for _ in $(seq 1 100); do
    grep -q "event=crl_adopted source=upstream" "$T/hub-hub-low.log" && break
    sleep 0.1
done
grep -q "event=crl_adopted source=upstream" "$T/hub-hub-top.log" || fail "hub-top did not adopt"
grep -q "event=crl_adopted source=upstream" "$T/hub-hub-low.log" || fail "hub-low did not adopt"
gw gw-x "$LOW" status --set alert_level=high >/dev/null || fail "x status 2"
gw gw-x "$LOW" sync >"$T/out" 2>&1
rc=$?
[ $rc -eq 3 ] || fail "revoked gw-x through hub-low: exit $rc, want 3"
echo PASS
