#!/bin/bash
# relay_topology.sh - three gateways -> hub-a -> sitesyncd: every change
# arrives exactly once, audited "via hub-a"; a gateway of a site the hub does
# not carry is refused at the hub; `journal` in relay mode shows per-origin
# state; SIGTERM stops the hub cleanly.
source "$(dirname "$0")/lib.sh" "$@"
N=40
[ "$ASAN" = 1 ] && N=15
pki_init
issue relay hub-a site-a site-b
issue gateway gw-a1 site-a
issue gateway gw-a2 site-a
issue gateway gw-b1 site-b
issue gateway gw-c1 site-c
issue gateway gw-d1 site-a

step "daemon and hub"
start_daemon
start_hub hub-a "$DPORT"
H=${HPORT[hub-a]}

step "three gateways record $N incidents and a status each, sync through the hub"
for g in gw-a1 gw-a2 gw-b1; do
    for i in $(seq 1 "$N"); do
        gw "$g" "$H" incident --category intrusion --severity 2 --title "$g-$i" >/dev/null ||
            fail "$g incident $i"
    done
    gw "$g" "$H" status --set alert_level=elevated >/dev/null || fail "$g status"
done
for g in gw-a1 gw-a2 gw-b1; do
    gw "$g" "$H" sync >"$T/out" 2>&1 || fail "$g sync through the hub: $(cat "$T/out")"
done
for g in gw-a1 gw-a2 gw-b1; do
    wait_applied "$g" $((N + 1)) 30 || fail "$g not delivered"
    exactly_once "$g" $((N + 1))
    p=$(paths "$g")
    [ "$p" = "via hub-a" ] || fail "$g audit path \"$p\", want \"via hub-a\""
done
got=$(admin --json incidents --site site-a --limit 100000 | count_json)
[ "$got" = $((2 * N)) ] || fail "site-a incidents: $got, want $((2 * N))"
admin audit verify >/dev/null || fail "audit verify"
# A second sync of everyone is a no-op at the daemon.
for g in gw-a1 gw-a2 gw-b1; do gw "$g" "$H" sync >/dev/null 2>&1 || fail "$g resync"; done
sleep 0.5
for g in gw-a1 gw-a2 gw-b1; do exactly_once "$g" $((N + 1)); done

step "a gateway of a site the hub does not carry is refused at the hub"
gw gw-c1 "$H" status --set alert_level=high >/dev/null || fail "c1 status"
gw gw-c1 "$H" sync >"$T/out" 2>&1
rc=$?
[ $rc -eq 3 ] || fail "gw-c1 sync through hub-a: exit $rc, want 3"
grep -q "event=downstream_refused.*node=gw-c1 code=forbidden_site" "$T/hub-hub-a.log" ||
    fail "hub did not log the forbidden_site refusal"

step "first contact through the hub of a gateway that lost its storage"
for i in 1 2 3 4 5; do
    gw gw-d1 "$DPORT" incident --category fire --severity 1 --title "d1-direct-$i" >/dev/null ||
        fail "d1 incident"
done
gw gw-d1 "$DPORT" sync >/dev/null 2>&1 || fail "d1 direct sync"
rm -rf "$T/j-gw-d1"
for i in 1 2 3; do
    gw gw-d1 "$H" incident --category fire --severity 1 --title "d1-after-loss-$i" >/dev/null ||
        fail "d1 incident after loss"
done
gw gw-d1 "$H" sync >"$T/out" 2>&1 || fail "d1 sync through the hub: $(cat "$T/out")"
grep -q "renumbered 3" "$T/out" || fail "d1 was not renumbered: $(cat "$T/out")"
grep -q "event=new_origin origin=gw-d1 action=ask_upstream" "$T/hub-hub-a.log" ||
    fail "hub did not ask upstream about gw-d1"
wait_applied gw-d1 8 30 || fail "gw-d1 data lost"
exactly_once gw-d1 8

step "journal in relay mode"
for _ in $(seq 1 50); do
    "$GW" --journal "$T/hj-hub-a" --cert "$T/hub-a.crt" journal >"$T/journal.out" 2>/dev/null
    grep -q "^pending: *0 " "$T/journal.out" && break
    sleep 0.1
done
cat "$T/journal.out"
grep -q "^pending: *0 " "$T/journal.out" || fail "hub journal still pending"
grep -Eq "^  gw-a1 +0 +0 +$((N + 1)) +$((N + 1)) +0$" "$T/journal.out" ||
    fail "journal line of gw-a1"

step "SIGTERM stops the hub cleanly"
stop_hub hub-a || fail "hub exit status $?"
grep -q "event=relay_stop err=ok" "$T/hub-hub-a.log" || fail "no clean stop logged"
echo PASS
