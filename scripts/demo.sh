#!/usr/bin/env bash
# demo.sh - runs the whole sitesync system locally, for real, and walks
# through what it does: a fresh PKI, sitesyncd on SQLite, a regional hub and
# site gateways, all over mutual TLS on 127.0.0.1. Called by
# `./sitesync.sh demo` after the build; safe to run again (it starts from a
# clean demo-run/ and stops every process it started).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${1:-$ROOT/build}
RUN=${SITESYNC_DEMO_DIR:-$ROOT/demo-run}
PKI_BIN=$BUILD/pki/sitesync-pki
D_BIN=$BUILD/daemon/sitesyncd
ADMIN_BIN=$BUILD/daemon/sitesync-admin
GW_BIN=$BUILD/gateway/sitesync-gw

bold() { printf '\n\033[1m%s\033[0m\n' "$*"; }
step() { printf '\n\033[1;34m--- %s\033[0m\n' "$*"; }
note() { printf '    %s\n' "$*"; }
run() {
    printf '\033[2m$ %s\033[0m\n' "$*"
    "$@"
}

for b in "$PKI_BIN" "$D_BIN" "$ADMIN_BIN" "$GW_BIN"; do
    [ -x "$b" ] || { echo "demo: $b is not built (run ./sitesync.sh build)" >&2; exit 1; }
done

PIDS=()
stop_all() {
    for p in "${PIDS[@]:-}"; do
        [ -n "$p" ] && kill "$p" 2>/dev/null || true
    done
    for p in "${PIDS[@]:-}"; do
        [ -n "$p" ] && wait "$p" 2>/dev/null || true
    done
    PIDS=()
}
trap stop_all EXIT INT TERM

# A previous run may have left processes if it was killed hard.
if [ -f "$RUN/pids" ]; then
    while read -r p; do kill "$p" 2>/dev/null || true; done <"$RUN/pids"
fi
rm -rf "$RUN"
mkdir -p "$RUN"
start=$(date +%s)

admin() { "$ADMIN_BIN" --db "$RUN/central.db" "$@"; }
# gw NAME ARGS...: runs the gateway NAME with its own journal and
# certificate; every site gateway reports to the regional hub.
gw() {
    local name=$1
    shift
    "$GW_BIN" --server "127.0.0.1:$HUB_PORT" --ca "$RUN/pki/ca.crt" --cert "$RUN/certs/$name.crt" \
        --key "$RUN/certs/$name.key" --journal "$RUN/gw/$name" --server-name localhost \
        --log-level warn "$@"
}
# wait_file FILE WHAT: waits up to 10 s for a port file.
wait_file() {
    for _ in $(seq 1 100); do
        [ -s "$1" ] && return 0
        sleep 0.1
    done
    echo "demo: $2 did not start; its log:" >&2
    cat "$3" >&2
    exit 1
}
# A free loopback port for the daemon, chosen now because the hub must know
# where the centre will be before the centre is up.
DAEMON_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

bold "sitesync demo: a national centre, a regional hub, three sites, an uplink that comes and goes"

step "1. A private certificate authority gives every node its identity"
run "$PKI_BIN" init --dir "$RUN/pki" --name "Demo Grid Security CA" >/dev/null
mkdir -p "$RUN/certs"
issue() { "$PKI_BIN" issue --dir "$RUN/pki" --out "$RUN/certs/$1" --node "$1" "${@:2}" >/dev/null; }
issue central --role daemon --dns localhost --ip 127.0.0.1
issue hub-north --role relay --site hydro-north --site substation-7 --site mine-3 \
    --dns localhost --ip 127.0.0.1
issue gw-hydro-a --role gateway --site hydro-north
issue gw-hydro-b --role gateway --site hydro-north
issue gw-subst --role gateway --site substation-7
# The mine's first certificate was issued by mistake for two sites; it is
# corrected below, which is how the demo shows the centre refusing a write
# for a site a gateway may no longer report for.
issue gw-mine --role gateway --site mine-3 --site hydro-north
note "issued: central (daemon), hub-north (relay for the three sites),"
note "        gw-hydro-a and gw-hydro-b (site hydro-north),"
note "        gw-subst (substation-7), gw-mine (mine-3, and hydro-north by mistake)"
run "$PKI_BIN" show "$RUN/certs/gw-subst.crt"

step "2. The regional hub comes up; its uplink to the centre is down"
"$GW_BIN" --server "127.0.0.1:$DAEMON_PORT" --server-name localhost --listen 127.0.0.1:0 \
    --port-file "$RUN/hub.port" --ca "$RUN/pki/ca.crt" --crl "$RUN/pki/crl.pem" \
    --cert "$RUN/certs/hub-north.crt" --key "$RUN/certs/hub-north.key" --journal "$RUN/hub" \
    --backoff-min-ms 200 --backoff-max-ms 1000 --log-level warn relay 2>"$RUN/hub.log" &
PIDS+=($!)
echo "$!" >>"$RUN/pids"
wait_file "$RUN/hub.port" "the hub" "$RUN/hub.log"
HUB_PORT=$(cat "$RUN/hub.port")
note "hub-north listening on 127.0.0.1:$HUB_PORT; the centre (127.0.0.1:$DAEMON_PORT) is not running"

step "3. The sites report; each report is durable on its gateway, then on the hub"
key=$(gw gw-hydro-a incident --category intrusion --severity 4 \
    --title "Fence cut at the north gate" --location "north perimeter" --status open \
    --description "Patrol found a 2 m cut in the fence; no one seen.")
note "gw-hydro-a recorded incident $key"
gw gw-hydro-a status --set alert_level=elevated --set perimeter=breached --set cctv=online
gw gw-subst status --set alert_level=normal --set power=backup --set comms=backup_link
gw gw-subst incident --category cyber --severity 3 \
    --title "Repeated failed logins on the HMI" --reported-by "shift engineer" >/dev/null
gw gw-mine status --set alert_level=normal --set personnel_on_site=42
gw gw-mine incident --category theft --severity 2 --title "Copper cable missing from store" >/dev/null
# Written while the mine still held its mistaken certificate.
gw gw-mine --site hydro-north status --set alert_level=normal --set note="all clear (wrong site)"
run gw gw-hydro-a journal
note "the gateways hand their journals to the hub (acknowledged once durable there):"
run gw gw-hydro-a sync
gw gw-subst sync
step "4. The CA corrects the mine's certificate: mine-3 only"
run "$PKI_BIN" revoke --dir "$RUN/pki" --node gw-mine --reason superseded >/dev/null
"$PKI_BIN" issue --dir "$RUN/pki" --out "$RUN/certs/gw-mine" --node gw-mine --role gateway \
    --site mine-3 --force >/dev/null
kill -HUP "${PIDS[0]}" # the hub re-reads crl.pem
note "old gw-mine certificate revoked (crl.pem updated, hub reloaded it); new one names mine-3 only"
gw gw-mine sync
run "$GW_BIN" --journal "$RUN/hub" --log-level warn journal

step "5. The uplink is back: sitesyncd on SQLite, mutual TLS on 127.0.0.1"
cat >"$RUN/sitesyncd.json" <<JSON
{
  "listen": "127.0.0.1:$DAEMON_PORT",
  "port_file": "$RUN/sitesyncd.port",
  "db": "$RUN/central.db",
  "ca": "$RUN/pki/ca.crt",
  "crl": "$RUN/pki/crl.pem",
  "cert": "$RUN/certs/central.crt",
  "key": "$RUN/certs/central.key",
  "stale_after_s": 600
}
JSON
"$D_BIN" --config "$RUN/sitesyncd.json" 2>"$RUN/sitesyncd.log" &
PIDS+=($!)
echo "$!" >>"$RUN/pids"
wait_file "$RUN/sitesyncd.port" sitesyncd "$RUN/sitesyncd.log"
note "sitesyncd listening on 127.0.0.1:$DAEMON_PORT (log: $RUN/sitesyncd.log)"

step "6. The hub forwards everything it holds, byte for byte, signed by each site"
# Seven changes from three sites; wait until the centre has audited them all.
for _ in $(seq 1 100); do
    n=$(admin --json audit --limit 100 2>/dev/null | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))' 2>/dev/null || echo 0)
    [ "$n" -ge 7 ] && break
    sleep 0.2
done
note "the centre has audited $n changes; the hub's journal is drained:"
run "$GW_BIN" --journal "$RUN/hub" --log-level warn journal

step "7. Two gateways of one site race on the same field: the later write wins"
gw gw-hydro-a status --set alert_level=high
sleep 0.05
gw gw-hydro-b status --set alert_level=critical
note "gw-hydro-a set alert_level=high, then gw-hydro-b set critical; b syncs first:"
run gw gw-hydro-b sync
run gw gw-hydro-a sync
for _ in $(seq 1 100); do
    n=$(admin --json audit --limit 100 | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
    [ "$n" -ge 9 ] && break
    sleep 0.2
done
note "whatever the arrival order, the later stamp (critical) holds; 'high' is in the loser ledger"

step "8. What the centre now knows (every change audited with its path: via hub-north)"
run admin sites
run admin incidents
run admin audit --limit 12
run admin conflicts
run admin peers
run admin audit verify

# The story's facts, checked (CTest runs this script as quickstart_demo).
admin --json sites | python3 -c '
import json, sys
sites = {s["site"]: s for s in json.load(sys.stdin)}
assert set(sites) == {"hydro-north", "substation-7", "mine-3"}, sites.keys()
assert sites["hydro-north"]["alert_level"] == "critical", "the later write must win"
assert sites["mine-3"]["status"].get("personnel_on_site") == 42
'
admin --json audit --outcome rejected | python3 -c '
import json, sys
rows = json.load(sys.stdin)
assert [r["outcome"] for r in rows] == ["rejected:forbidden_site"], rows
assert rows[0]["path"] == "via hub-north" and rows[0]["origin"] == "gw-mine", rows
'
admin --json incidents | python3 -c '
import json, sys
assert len(json.load(sys.stdin)) == 3
'

end=$(date +%s)
stop_all
bold "Done in $((end - start)) s. Everything above ran for real over mutual TLS on 127.0.0.1."
cat <<EOF

Keep the central daemon running and query it yourself:
  $D_BIN --config $RUN/sitesyncd.json &
  $ADMIN_BIN --db $RUN/central.db sites
  $ADMIN_BIN --db $RUN/central.db incidents --csv
  $ADMIN_BIN --db $RUN/central.db audit --outcome applied --limit 20
  $ADMIN_BIN --db $RUN/central.db audit verify
Gateways: $GW_BIN --help   (journals in $RUN/gw/, certificates in $RUN/certs/)
The hub: $GW_BIN --config <file> relay   (journal in $RUN/hub; docs/relay.md)
Docs: docs/operations.md, docs/admin.md, docs/gateway.md, docs/relay.md, docs/pki.md
EOF
