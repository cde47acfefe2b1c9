#!/bin/bash
# relay_fairness.sh - one site floods (20,000 changes held by the hub while
# the daemon is down), another sends a few; when the upstream comes back the
# small site's changes are committed promptly, not after the flood: the hub
# forwards round-robin across origins. Prints the numbers.
source "$(dirname "$0")/lib.sh" "$@"
N=20000
[ "$ASAN" = 1 ] && N=4000
pki_init
issue relay hub-a site-a site-b
issue gateway gw-flood site-a
issue gateway gw-small site-b

start_daemon
stop_daemon # keep its port: the hub's upstream is down for now
start_hub hub-a "$DPORT"
H=${HPORT[hub-a]}

step "flood: $N changes into the hub; small: 5"
"$FILL" "$T/j-gw-flood" "$T/gw-flood.crt" "$N" flood >/dev/null || fail "fill"
gw gw-flood "$H" --max-frame 262144 --window 16 sync >"$T/out" 2>&1 || fail "flood sync: $(cat "$T/out")"
for i in 1 2 3 4 5; do
    gw gw-small "$H" incident --category drone --severity 4 --title "small-$i" >/dev/null ||
        fail "small incident"
done
gw gw-small "$H" sync >"$T/out" 2>&1 || fail "small sync: $(cat "$T/out")"
"$GW" --journal "$T/hj-hub-a" --cert "$T/hub-a.crt" journal | grep -E "^  gw-"

step "upstream back"
start_daemon "$DPORT"
wait_applied gw-small 5 60 || fail "small site never committed"
wait_applied gw-flood "$N" 120 || fail "flood not committed"
# The daemon's audit times (commit order, ms) say when each change landed.
admin --json audit --origin gw-small --outcome applied --limit 100 >"$T/small.json"
admin --json audit --origin gw-flood --outcome applied --limit 10000000 >"$T/flood.json"
python3 - "$T/small.json" "$T/flood.json" "$N" <<'PY' || fail "small site not served fairly"
import json, sys
from datetime import datetime
def t(e):
    return datetime.strptime(e["time"], "%Y-%m-%dT%H:%M:%S.%fZ").timestamp()
small = [t(e) for e in json.load(open(sys.argv[1]))]
flood = [t(e) for e in json.load(open(sys.argv[2]))]
n = int(sys.argv[3])
start = min(small + flood)
small_done = max(small) - start
flood_done = max(flood) - start
before = sum(1 for x in flood if x < max(small))
print("fairness: upstream back, small site (5 changes) committed after %.3f s with %d of %d "
      "flood changes before it; flood complete after %.3f s" % (small_done, before, n, flood_done))
# Round-robin: the small envelope goes in the first turn, so at most a
# window's worth of flood envelopes (32 x 512 changes) can precede it; FIFO
# would put it behind all of them.
ok = small_done <= max(0.05, 0.5 * flood_done) and before <= n // 2
sys.exit(0 if ok else 1)
PY
exactly_once gw-small 5
exactly_once gw-flood "$N"
echo PASS
