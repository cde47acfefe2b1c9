#!/bin/bash
# kill9.sh - kill -9 of the real sitesyncd at random (seeded) points while 10
# real sitesync-gw processes (`run`, each with its own certificate and
# journal) stream 100,000 changes over loopback mutual TLS; after restart and
# resync the database must equal the reference merge of everything the
# gateways accepted, with PRAGMA integrity_check ok, `sitesync-admin audit
# verify` ok, 0 lost and 0 applied twice.
#
# The changes are recorded once per run (chaos_record: the gateway's own
# submission path, one fsync per change, 10 recorders in parallel) plus two
# reports per gateway through the sitesync-gw CLI; every trial then copies the
# journals, starts the daemon, starts the 10 gateways, kills the daemon 1-3
# times when its committed count reaches random targets (plus 0-5 ms), each
# time restarting it on the same port after 0-200 ms, waits until everything
# is committed, stops the gateways (SIGTERM, exit 0), checks their journals,
# stops the daemon (SIGTERM, exit 0) and verifies.
#
# usage: kill9.sh SITESYNC_GW SITESYNCD SITESYNC_ADMIN SITESYNC_PKI CHAOS_RECORD
# environment (defaults in brackets; under SITESYNC_ASAN=1: 5 trials, 20,000 changes):
#   CHAOS_TRIALS [20]  CHAOS_CHANGES [100000]  CHAOS_GATEWAYS [10]
#   CHAOS_SEED [time-based, printed]  CHAOS_TRIAL [run only this trial number]
#   CHAOS_KEEP=1 keep the work directory   CHAOS_TMP [/tmp]
set -u
GW=$1 SD=$2 ADMIN=$3 PKI=$4 RECORD=$5
HERE=$(cd "$(dirname "$0")" && pwd)
CHECK=$HERE/chaos_check.py
if [ "${SITESYNC_ASAN:-0}" = 1 ]; then
    TRIALS=${CHAOS_TRIALS:-5}
    CHANGES=${CHAOS_CHANGES:-20000}
    DRAIN_S=600
else
    TRIALS=${CHAOS_TRIALS:-20}
    CHANGES=${CHAOS_CHANGES:-100000}
    DRAIN_S=180
fi
NGW=${CHAOS_GATEWAYS:-10}
SEED=${CHAOS_SEED:-$(($(date +%s) % 1000000))}
ONLY=${CHAOS_TRIAL:-}
case "$TRIALS$CHANGES$NGW$SEED$ONLY" in
*[!0-9]*)
    echo "kill9.sh: CHAOS_TRIALS, CHAOS_CHANGES, CHAOS_GATEWAYS, CHAOS_SEED, CHAOS_TRIAL: numbers" >&2
    exit 2
    ;;
esac
if [ "$NGW" -lt 1 ] || [ "$NGW" -gt 99 ] || [ "$CHANGES" -lt "$NGW" ]; then
    echo "kill9.sh: need 1..99 gateways and at least one change each" >&2
    exit 2
fi
for tool in sqlite3 python3; do
    command -v "$tool" >/dev/null || {
        echo "kill9.sh: $tool is required" >&2
        exit 2
    }
done
T=$(mktemp -d "${CHAOS_TMP:-/tmp}/chaos-kill9.XXXXXX")
DPID=
GPIDS=()
cleanup() {
    local p
    for p in "${GPIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
    [ -n "$DPID" ] && kill -9 "$DPID" 2>/dev/null
    wait 2>/dev/null
    if [ -n "${CHAOS_KEEP:-}" ]; then echo "kept $T"; else rm -rf "$T"; fi
}
trap cleanup EXIT
REPRO="CHAOS_SEED=$SEED CHAOS_CHANGES=$CHANGES CHAOS_GATEWAYS=$NGW"
fail() {
    echo "FAIL (trial ${TRIAL:-setup}, seed $SEED): $*" >&2
    if [ -n "${TD:-}" ] && [ -f "$TD/d.log" ]; then
        echo "--- daemon log (tail)" >&2
        tail -n 15 "$TD/d.log" >&2
    fi
    echo "replay: $REPRO CHAOS_TRIAL=${TRIAL:-0} bash $0 $GW $SD $ADMIN $PKI $RECORD" >&2
    exit 1
}
now_ms() { date +%s%3N; }
gname() { printf 'gw%02d' "$1"; }

echo "kill9: $TRIALS trials, $CHANGES changes from $NGW gateways, seed $SEED, dir $T"

# ---- PKI: a daemon and NGW gateways, each for its own site and the shared one.
"$PKI" init --dir "$T/ca" >/dev/null || fail "pki init"
"$PKI" issue --dir "$T/ca" --role daemon --node central --ip 127.0.0.1 --out "$T/daemon" \
    >/dev/null || fail "issue daemon"
for g in $(seq 1 "$NGW"); do
    n=$(gname "$g")
    "$PKI" issue --dir "$T/ca" --role gateway --node "$n" --site "site-${n#gw}" --site shared \
        --out "$T/$n" >/dev/null || fail "issue $n"
done
"$PKI" crl --dir "$T/ca" >/dev/null || fail "crl"

# ---- record once: NGW recorders in parallel, then two CLI reports each.
t0=$(now_ms)
mkdir -p "$T/rec" "$T/refs"
pids=()
for g in $(seq 1 "$NGW"); do
    n=$(gname "$g")
    per=$((CHANGES / NGW + (g <= CHANGES % NGW ? 1 : 0)))
    "$RECORD" "$T/rec/$n" "$T/$n.crt" "$per" $((SEED * 100 + g)) "site-${n#gw}" shared \
        "$T/refs/$n.jsonl" 2>"$T/rec-$n.err" &
    pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || fail "recorder failed: $(cat "$T"/rec-*.err)"; done
gwcli() {
    local n=$1 j=$2
    shift 2
    "$GW" --log-level warn --journal "$j" --ca "$T/ca/ca.crt" --cert "$T/$n.crt" \
        --key "$T/$n.key" --server "127.0.0.1:${PORT:-1}" "$@"
}
for g in $(seq 1 "$NGW"); do
    n=$(gname "$g")
    seq_next=$(($(wc -l <"$T/refs/$n.jsonl") + 1))
    out=$(gwcli "$n" "$T/rec/$n" --site "site-${n#gw}" status --set note="cli $n" \
        --set comms=backup_link) || fail "$n: CLI status"
    [ "$out" = "site-${n#gw} seq=$seq_next" ] || fail "$n: CLI status printed '$out'"
    printf '{"seq":%d,"collection":"site_status","key":"site-%s","site":"site-%s","op":"update","fields":{"note":"cli %s","comms":"backup_link"}}\n' \
        "$seq_next" "${n#gw}" "${n#gw}" "$n" >>"$T/refs/$n.jsonl"
    key=$(gwcli "$n" "$T/rec/$n" --site "site-${n#gw}" incident --category cyber --severity 4 --title "cli $n" \
        --location "control room") || fail "$n: CLI incident"
    printf '{"seq":%d,"collection":"incident","key":"%s","site":"site-%s","op":"create","fields":{"category":"cyber","severity":4,"title":"cli %s","location":"control room"}}\n' \
        $((seq_next + 1)) "$key" "${n#gw}" "$n" >>"$T/refs/$n.jsonl"
done
TOTAL=$(cat "$T"/refs/*.jsonl | wc -l)
echo "recorded $TOTAL changes (fsync each) in $(($(now_ms) - t0)) ms"
python3 "$CHECK" ref "$T/refs" "$T/ref.json" || fail "reference merge"

# ---- one trial ---------------------------------------------------------
start_daemon() { # start_daemon LISTEN
    local try
    for try in 1 2 3 4 5; do
        rm -f "$TD/port"
        "$SD" --listen "$1" --port-file "$TD/port" --db "$TD/db.sqlite" --ca "$T/ca/ca.crt" \
            --crl "$T/ca/crl.pem" --cert "$T/daemon.crt" --key "$T/daemon.key" \
            >>"$TD/d.log" 2>&1 &
        DPID=$!
        for _ in $(seq 1 100); do
            [ -s "$TD/port" ] && return 0
            kill -0 "$DPID" 2>/dev/null || break
            sleep 0.05
        done
        kill -9 "$DPID" 2>/dev/null
        wait "$DPID" 2>/dev/null
        DPID=
        echo "daemon start attempt $try on $1 failed: $(tail -n 1 "$TD/d.log")" >&2
        sleep 0.5
    done
    fail "daemon did not start on $1"
}
committed() {
    sqlite3 -readonly "$TD/db.sqlite" "SELECT coalesce(sum(committed),0) FROM origins" 2>/dev/null ||
        echo 0
}

run_trial() {
    TRIAL=$1
    TD=$T/trial-$TRIAL
    RANDOM=$((SEED * 1000 + TRIAL))
    mkdir -p "$TD"
    cp -a "$T/rec" "$TD/j" || fail "copy journals"
    local t_start
    t_start=$(now_ms)
    start_daemon 127.0.0.1:0
    PORT=$(cat "$TD/port")
    GPIDS=()
    local g n
    for g in $(seq 1 "$NGW"); do
        n=$(gname "$g")
        "$GW" --log-level info --journal "$TD/j/$n" --ca "$T/ca/ca.crt" --cert "$T/$n.crt" \
            --key "$T/$n.key" --server "127.0.0.1:$PORT" --sync-interval-ms 100 \
            --backoff-min-ms 50 --backoff-max-ms 300 --io-timeout-ms 10000 run \
            2>"$TD/$n.log" &
        GPIDS+=($!)
    done
    # 1-3 kills, each when the committed count reaches a random target
    # (increasing), then 0-5 ms more so the kill lands anywhere in a commit
    # cycle; the daemon comes back on the same port 0-200 ms later.
    local kills=$((RANDOM % 3 + 1)) k target c pause delay
    local prev=0 desc=""
    for k in $(seq 1 "$kills"); do
        target=$((prev + (RANDOM * 32768 + RANDOM) % (TOTAL - prev) * 2 / (kills - k + 2)))
        delay="$((RANDOM % 5)).$((RANDOM % 10))"
        c=$(python3 "$CHECK" kill-at "$TD/db.sqlite" "$DPID" "$target" "$delay" "$DRAIN_S") ||
            fail "kill-at: daemon already gone ($c)"
        wait "$DPID" 2>/dev/null
        DPID=
        desc="$desc kill$k@$c/$target"
        prev=$c
        [ "$prev" -ge "$TOTAL" ] && prev=$((TOTAL - 1))
        pause=$((RANDOM % 201))
        sleep "$((pause / 1000)).$(printf '%03d' "$pause")"
        start_daemon "127.0.0.1:$PORT"
    done
    # Drain: everything committed, bounded in time.
    deadline=$(($(now_ms) + DRAIN_S * 1000))
    c=$(committed)
    while [ "$c" -lt "$TOTAL" ] && [ "$(now_ms)" -lt "$deadline" ]; do
        sleep 0.1
        c=$(committed)
    done
    [ "$c" -eq "$TOTAL" ] || fail "after $DRAIN_S s: $c of $TOTAL committed ($desc)"
    local t_drained
    t_drained=$(now_ms)
    echo "trial $TRIAL: all $TOTAL committed after $((t_drained - t_start)) ms;$desc"
    # The daemon may have died after committing a batch and before its ACK
    # left: that gateway learns the committed sequence from its next WELCOME,
    # after its backoff. Give every gateway the same bounded time to hear it
    # before stopping them (the journal is read between sync passes).
    local j_ok
    for g in $(seq 1 "$NGW"); do
        n=$(gname "$g")
        j_ok=0
        while [ "$(now_ms)" -lt "$deadline" ]; do
            if gwcli "$n" "$TD/j/$n" --lock-timeout-ms 2000 journal 2>/dev/null |
                grep -q "^pending: *0\$"; then
                j_ok=1
                break
            fi
            sleep 0.1
        done
        [ "$j_ok" -eq 1 ] || fail "$n still has pending changes $DRAIN_S s after the daemon committed all"
    done
    local i=0 rc
    for g in $(seq 1 "$NGW"); do
        kill -TERM "${GPIDS[$i]}" 2>/dev/null
        i=$((i + 1))
    done
    i=0
    for g in $(seq 1 "$NGW"); do
        n=$(gname "$g")
        wait "${GPIDS[$i]}"
        rc=$?
        [ $rc -eq 0 ] || fail "$n run exit $rc after SIGTERM: $(tail -n 3 "$TD/$n.log")"
        i=$((i + 1))
    done
    GPIDS=()
    # Each gateway's own view: everything acknowledged, nothing refused or lost.
    for g in $(seq 1 "$NGW"); do
        n=$(gname "$g")
        local want
        want=$(wc -l <"$T/refs/$n.jsonl")
        gwcli "$n" "$TD/j/$n" journal >"$TD/$n.journal" 2>/dev/null || fail "$n journal"
        grep -q "^pending: *0\$" "$TD/$n.journal" || fail "$n: $(cat "$TD/$n.journal")"
        grep -q "^committed seq: *$want " "$TD/$n.journal" || fail "$n: $(cat "$TD/$n.journal")"
        grep -q "^refused changes: *0\$" "$TD/$n.journal" || fail "$n: $(cat "$TD/$n.journal")"
        grep -q "^lost (corrupt): *0\$" "$TD/$n.journal" || fail "$n: $(cat "$TD/$n.journal")"
    done
    kill -TERM "$DPID"
    wait "$DPID"
    rc=$?
    DPID=
    [ $rc -eq 0 ] || fail "daemon exit $rc after SIGTERM"
    grep -q "level=error" "$TD/d.log" && fail "daemon logged errors: $(grep "level=error" "$TD/d.log" | head -n 3)"
    local ic
    ic=$(sqlite3 "$TD/db.sqlite" "PRAGMA integrity_check") || fail "integrity_check did not run"
    [ "$ic" = "ok" ] || fail "integrity_check: $ic"
    "$ADMIN" --db "$TD/db.sqlite" audit verify >"$TD/verify" 2>&1 || fail "audit verify: $(cat "$TD/verify")"
    local summary
    summary=$(python3 "$CHECK" check "$ADMIN" "$TD/db.sqlite" "$T/ref.json" 2>&1) || fail "$summary"
    local sessions
    sessions=$(sqlite3 "$TD/db.sqlite" "SELECT count(*) FROM sessions")
    echo "trial $TRIAL ok in $(($(now_ms) - t_start)) ms: $sessions sessions; $summary; $(cut -c1-40 "$TD/verify")"
    [ -n "${CHAOS_KEEP:-}" ] || rm -rf "$TD"
}

t0=$(now_ms)
if [ -n "$ONLY" ]; then
    run_trial "$ONLY"
else
    for trial in $(seq 1 "$TRIALS"); do run_trial "$trial"; done
fi
echo "PASS: $TRIALS trial(s) of $TOTAL changes, seed $SEED, $(($(now_ms) - t0)) ms of trials"
