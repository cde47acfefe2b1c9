#!/bin/bash
# relay_crash.sh - gateways keep submitting (and `run` keeps syncing through
# the hub) while the hub is killed with SIGKILL mid-forward and restarted,
# and the upstream link is cut (the daemon stopped) and restored: nothing
# lost, nothing applied twice, the hub journal drains.
source "$(dirname "$0")/lib.sh" "$@"
K=120
[ "$ASAN" = 1 ] && K=40
pki_init
issue relay hub-a site-a site-b
issue gateway gw-a1 site-a
issue gateway gw-a2 site-a
issue gateway gw-b1 site-b

start_daemon
start_hub hub-a "$DPORT"
H=${HPORT[hub-a]}

step "three gateways: run + a submitter each ($K reports)"
declare -A RUNPID SUBPID
for g in gw-a1 gw-a2 gw-b1; do
    "$GW" --log-level info --journal "$T/j-$g" --ca "$T/ca/ca.crt" --cert "$T/$g.crt" \
        --key "$T/$g.key" --server "127.0.0.1:$H" --sync-interval-ms 150 --backoff-min-ms 100 \
        --backoff-max-ms 600 run 2>>"$T/run-$g.log" &
    RUNPID[$g]=$!
    PIDS+=("${RUNPID[$g]}")
    (
        ok=0
        for i in $(seq 1 "$K"); do
            if gw "$g" "$H" incident --category intrusion --severity 2 --title "$g-$i" \
                >/dev/null 2>>"$T/sub-$g.err"; then
                ok=$((ok + 1))
            fi
            sleep 0.01
        done
        echo "$ok" >"$T/sub-$g.count"
    ) &
    SUBPID[$g]=$!
    PIDS+=("${SUBPID[$g]}")
done

step "chaos: hub SIGKILL, daemon stop/start, hub SIGKILL again"
sleep 0.8
kill9_hub hub-a
echo "hub killed (1)"
sleep 0.4
start_hub hub-a "$DPORT" "$H"
sleep 0.8
stop_daemon
echo "daemon stopped (upstream cut)"
sleep 0.8
start_daemon "$DPORT"
echo "daemon restarted"
sleep 0.5
kill9_hub hub-a
echo "hub killed (2)"
sleep 0.3
start_hub hub-a "$DPORT" "$H"

for g in gw-a1 gw-a2 gw-b1; do wait "${SUBPID[$g]}"; done
for g in gw-a1 gw-a2 gw-b1; do
    n=$(cat "$T/sub-$g.count")
    [ "$n" = "$K" ] || fail "$g: only $n of $K submissions accepted"
done

step "everything arrives exactly once"
for g in gw-a1 gw-a2 gw-b1; do
    wait_applied "$g" "$K" 60 || fail "$g not fully delivered"
done
sleep 0.5
for g in gw-a1 gw-a2 gw-b1; do exactly_once "$g" "$K"; done
admin audit verify >/dev/null || fail "audit verify"
grep -c "event=hub_journal_open" "$T/hub-hub-a.log" | grep -q 3 || fail "hub not restarted twice"
for g in gw-a1 gw-a2 gw-b1; do
    kill -TERM "${RUNPID[$g]}"
    wait "${RUNPID[$g]}" || fail "$g run exit $?"
done
for _ in $(seq 1 50); do
    "$GW" --journal "$T/hj-hub-a" --cert "$T/hub-a.crt" journal >"$T/journal.out" 2>/dev/null
    grep -q "^pending: *0 " "$T/journal.out" && break
    sleep 0.1
done
grep -q "^pending: *0 " "$T/journal.out" || fail "hub journal not drained: $(cat "$T/journal.out")"
echo PASS
