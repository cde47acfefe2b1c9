#!/bin/bash
# relay_tamper.sh - a tampering relay (tests/relay/evil_relay: the hub
# engine with a hook) between two gateways and sitesyncd: a flipped body
# byte, an envelope replayed under another sequence, a forged envelope
# signed with the relay's own key are each refused and audited at the
# daemon with the relay named, and the honest data still arrives exactly
# once; a dropped envelope shows as a gap the daemon reports for that origin
# (the origin stops there), while the other origin is complete. Behind an
# honest hub (evil lower hub -> hub-top -> daemon) the honest hub already
# refuses the flipped and the forged envelopes (it verifies origin
# signatures before storing), so nothing bad is stored or forwarded.
source "$(dirname "$0")/lib.sh" "$@"
B=5 # changes per sync (one envelope each)
pki_init
issue relay evil-hub site-a site-b
issue gateway gw-a1 site-a
issue gateway gw-b1 site-b
issue relay hub-top site-a site-b

start_evil() {
    rm -f "$T/evil.port"
    "$EVIL" --mode "$1" --journal "$T/ej-$1-${2:-d}" --ca "$T/ca/ca.crt" --cert "$T/evil-hub.crt" \
        --key "$T/evil-hub.key" --crl "$T/ca/crl.pem" --server "127.0.0.1:${2:-$DPORT}" \
        --listen-port-file "$T/evil.port" >>"$T/evil-$1.log" 2>&1 &
    EPID=$!
    PIDS+=("$EPID")
    for _ in $(seq 1 100); do
        [ -s "$T/evil.port" ] && break
        sleep 0.1
    done
    [ -s "$T/evil.port" ] || fail "evil relay did not start"
    EPORT=$(cat "$T/evil.port")
}
# three syncs of B incidents per gateway: three envelopes per origin
feed() {
    for round in 1 2 3; do
        for g in gw-a1 gw-b1; do
            for i in $(seq 1 "$B"); do
                gw "$g" "$EPORT" --journal "$T/j-$1-$g" incident --category tampering \
                    --severity 5 --title "$1-$g-$round-$i" >/dev/null || fail "$g incident"
            done
            gw "$g" "$EPORT" --journal "$T/j-$1-$g" sync >/dev/null 2>&1 || fail "$g sync ($1)"
        done
    done
}
# outcome MODE ORIGIN OUTCOME: audit entries of ORIGIN with OUTCOME naming evil-hub
outcomes() {
    admin --json audit --origin "$1" --limit 100000 | python3 -c '
import json, sys
want = sys.argv[1]
print(sum(1 for e in json.load(sys.stdin) if e["outcome"] == want and e["peer"] == "evil-hub"))
' "$2"
}

for mode in flip replay forge drop; do
    step "tampering relay: $mode"
    DB="$T/central-$mode.sqlite"
    start_daemon
    start_evil "$mode"
    feed "$mode"
    if [ "$mode" = drop ]; then
        # the first origin seen loses its 2nd envelope: 5 applied, then a hole
        sleep 1
        a=$(applied gw-a1)
        b=$(applied gw-b1)
        [ "$a" = "$B" ] || fail "drop: gw-a1 has $a applied, want $B (up to the hole)"
        wait_applied gw-b1 $((3 * B)) 30 || fail "drop: gw-b1 incomplete"
        exactly_once gw-b1 $((3 * B))
        grep -q "gap.*origin=gw-a1 resume=$((B + 1))" "$T/daemon.log" ||
            fail "drop: the daemon did not report the gap of gw-a1"
        cs=$(admin --json peers | python3 -c '
import json, sys
print([p["committed_seq"] for p in json.load(sys.stdin) if p["node"] == "gw-a1"][0])')
        [ "$cs" = "$B" ] || fail "drop: daemon committed $cs for gw-a1, want $B"
        grep -q "event=origin_blocked origin=gw-a1" "$T/evil-$mode.log" ||
            fail "drop: relay did not stop at the hole"
    else
        for g in gw-a1 gw-b1; do
            wait_applied "$g" $((3 * B)) 30 || fail "$mode: $g honest data incomplete"
            exactly_once "$g" $((3 * B))
        done
        case $mode in
        flip | replay) want=rejected:bad_signature ;;
        forge) want=rejected:bad_certificate ;;
        esac
        n=0
        for g in gw-a1 gw-b1; do n=$((n + $(outcomes "$g" "$want"))); done
        [ "$n" -ge 1 ] || fail "$mode: no $want audited against evil-hub"
        echo "$mode: $n audit entries $want (delivering peer evil-hub)"
        if [ "$mode" = forge ]; then
            admin --json sites | grep -q "forged-by-relay" && fail "forged change applied"
        fi
    fi
    admin audit verify >/dev/null || fail "$mode: audit verify"
    kill -TERM "$EPID"
    wait "$EPID"
    stop_daemon
done
for mode in flip forge; do
    step "tampering lower hub behind an honest hub: $mode"
    DB="$T/central-upper-$mode.sqlite"
    start_daemon
    start_hub hub-top "$DPORT"
    start_evil "$mode" "${HPORT[hub-top]}"
    feed "upper-$mode"
    for g in gw-a1 gw-b1; do
        wait_applied "$g" $((3 * B)) 30 || fail "upper $mode: $g honest data incomplete"
        exactly_once "$g" $((3 * B))
        p=$(paths "$g")
        [ "$p" = "via evil-hub,hub-top" ] || fail "upper $mode: path \"$p\""
    done
    case $mode in
    flip) code=bad_signature ;;
    forge) code=bad_certificate ;;
    esac
    n=$(grep -c "event=envelope_refused peer=evil-hub .*code=$code" "$T/hub-hub-top.log")
    [ "$n" -ge 1 ] || fail "upper $mode: hub-top did not refuse ($code)"
    got=$(admin --json audit --outcome rejected --limit 100000 | count_json)
    [ "$got" = 0 ] || fail "upper $mode: $got refusals reached the daemon; the hub should stop them"
    echo "upper $mode: hub-top refused $n envelope(s) ($code) from evil-hub; none reached the daemon"
    kill -TERM "$EPID"
    wait "$EPID"
    stop_hub hub-top
    stop_daemon
    : >"$T/hub-hub-top.log"
    rm -rf "$T/hj-hub-top" # the next phase has a new daemon: a new hub too
done
echo PASS
