#!/usr/bin/env bash
# bench/sitesync/footprint.sh - the gateway's footprint. A site gateway is
# measured as it ships to a facility: the site build, configured with
# -DSITESYNC_GW_RELAY=OFF, which links no hub code (relay mode; the script
# fails if the link map shows any gw_hub object in it). The hub-capable
# default build (relay ON) is measured too, under gw_relay_* names.
#   gw_stripped_bytes      sitesync-gw (site build) with mbed TLS linked
#                          statically (MinSizeRel, the command of
#                          docs/gateway.md), stripped
#   gw_own_text_bytes      .text + .rodata (what `size` counts as text) that the
#                          link map attributes to our own code (gw_core,
#                          gw_hub, ss_proto, fws, fws_posix, main.c,
#                          cli_relay.c) in that binary; target <= 100 KiB
#   gw_own_code_bytes      the .text part of it alone
#   gw_own_archive_text_bytes  `size -t` text of those archives (everything in
#                          them, linked or not, hub included: an upper bound)
#   gw_relay_stripped_bytes, gw_relay_own_text_bytes, gw_relay_own_code_bytes
#                          the same for the relay build (sitesync-gw with
#                          `relay`: what a regional hub runs)
#   gw_heap_peak_bytes     valgrind massif's peak heap (mem_heap_B, the peak
#                          ms_print shows) during `sitesync-gw sync` (site
#                          build) of N records to sitesyncd; target <= 64 KiB
#   wire_bytes_per_record  TLS bytes the daemon received in that session
#                          (handshake included) / N
#   json_bytes_per_record  the change's JSON as the gateway journals and sends it
#   wire_vs_json           the ratio of the two
# On stderr: our text per object file, largest first, for both builds.
#
# usage: footprint.sh --build-dir DIR --pki DIR [--records N] (default 10000)
# shellcheck source-path=SCRIPTDIR
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
# shellcheck source=../lib/common.sh
. "$HERE/../lib/common.sh"
# shellcheck source=../lib/sitesync.sh
. "$HERE/../lib/sitesync.sh"

ss_half_args "$@"
RECORDS=10000
set -- "${HALF_ARGS[@]+"${HALF_ARGS[@]}"}"
while [ $# -gt 0 ]; do
    case $1 in
    --records) RECORDS=${2:?}; shift 2 ;;
    *) bench_die "footprint.sh: unknown option $1" ;;
    esac
done
ss_num "$RECORDS" --records
[ -x "$BIN/gw_fill" ] || bench_die "footprint.sh: $BIN/gw_fill is not built"
command -v valgrind >/dev/null || bench_need_debs valgrind || bench_die "footprint.sh: no valgrind"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/sitesync-bench-fp.XXXXXX")
trap 'sd_stop; rm -rf "$WORK"' EXIT

# ---- static, stripped binaries and our own text ----
# static_build DIR RELAY: configures and builds a static MinSizeRel
# sitesync-gw in DIR with SITESYNC_GW_RELAY=RELAY and a link map (and the
# gw_hub archive, which the site binary does not use, for the archive sum).
static_build() {
    local dir=$1 relay=$2
    mkdir -p "$dir"
    if ! { cmake -S "$ROOT" -B "$dir" -DMBEDTLS_STATIC=ON -DCMAKE_BUILD_TYPE=MinSizeRel \
        -DSITESYNC_TESTS=OFF -DSITESYNC_WERROR=OFF -DSITESYNC_SANITIZE=OFF -DSITESYNC_FUZZ=OFF \
        -DSITESYNC_TSAN=OFF "-DSITESYNC_GW_RELAY=$relay" \
        "-DCMAKE_EXE_LINKER_FLAGS=-Wl,-Map=$dir/sitesync-gw.map" &&
        cmake --build "$dir" --target sitesync-gw gw_hub -j "${BENCH_JOBS:-2}"; } \
        >"$dir/footprint-build.log" 2>&1; then
        tail -5 "$dir/footprint-build.log" >&2
        bench_die "footprint.sh: the static gateway (SITESYNC_GW_RELAY=$relay) does not build"
    fi
}
# own_text MAP: "TOTAL CODE HUB" from the link map (.text + .rodata input
# sections of our archives and objects; CODE = .text alone; HUB = bytes from
# libgw_hub.a), then one "bytes object" line per object, largest first.
own_text() {
    python3 - "$1" <<'PY'
import collections, re, sys
ours = re.compile(r'(libgw_core\.a|libgw_hub\.a|libss_proto\.a|libfws\.a|libfws_posix\.a'
                  r'|main\.c\.o|cli_relay\.c\.o)')
total, code, hub, sect = 0, 0, 0, None
per = collections.Counter()
started = False
for line in open(sys.argv[1], errors='replace'):
    if line.startswith('Linker script and memory map'):
        started = True
        continue
    if not started:
        continue
    m = re.match(r'^ (\.\S+)\s*$', line)
    if m:
        sect = m.group(1)
        continue
    m = re.match(r'^ (\.\S+)?\s+0x[0-9a-f]+\s+0x([0-9a-f]+)\s+(\S+)', line)
    if not m:
        sect = None if not line.startswith(' ') else sect
        continue
    name = m.group(1) or sect
    sect = None
    if name and (name.startswith('.text') or name.startswith('.rodata')) and ours.search(m.group(3)):
        n = int(m.group(2), 16)
        total += n
        if name.startswith('.text'):
            code += n
        if 'libgw_hub.a' in m.group(3):
            hub += n
        per[re.sub(r'^.*[(/]([^/()]+)\)?$', r'\1', m.group(3))] += n
print(total, code, hub)
for obj, n in per.most_common():
    print(n, obj)
PY
}
# measure DIR LABEL PREFIX: prints PREFIX_stripped_bytes, PREFIX_own_text_bytes
# and PREFIX_own_code_bytes for the build in DIR; sets OWN_HUB (bytes of hub
# code linked).
measure() {
    local dir=$1 label=$2 prefix=$3 out first
    strip -o "$WORK/$prefix" "$dir/gateway/sitesync-gw"
    if ldd "$WORK/$prefix" 2>/dev/null | grep -q libmbed; then
        bench_die "footprint.sh: mbed TLS is still linked dynamically ($label)"
    fi
    out=$(own_text "$dir/sitesync-gw.map")
    first=${out%%$'\n'*}
    read -r OWN OWN_CODE OWN_HUB <<<"$first"
    [ "$OWN" -gt 0 ] || bench_die "footprint.sh: found none of our code in $dir/sitesync-gw.map"
    printf '%s_stripped_bytes=%s\n' "$prefix" "$(stat -c %s "$WORK/$prefix")"
    printf '%s_own_text_bytes=%s\n' "$prefix" "$OWN"
    printf '%s_own_code_bytes=%s\n' "$prefix" "$OWN_CODE"
    bench_say "$label: our .text+.rodata by object: $(printf '%s\n' "$out" | sed 1d |
        awk '{ sub(/\.o$/, "", $2); printf "%s%s %.1fK", (NR > 1 ? ", " : ""), $2, $1 / 1000 }')"
}

SITE=$BUILD/gw-static RELAYB=$BUILD/gw-static-relay
static_build "$SITE" OFF
static_build "$RELAYB" ON
measure "$SITE" "site build (SITESYNC_GW_RELAY=OFF)" gw
# The site build must link no hub object at all; the relay build must (else
# the two are not what their names say).
[ "$OWN_HUB" -eq 0 ] || bench_die "footprint.sh: the site build links $OWN_HUB bytes of gw_hub"
arch=$(size -t "$SITE"/gateway/libgw_core.a "$SITE"/gateway/libgw_hub.a \
    "$SITE"/proto/libss_proto.a "$SITE"/firmware-shim/libfws.a \
    "$SITE"/firmware-shim/libfws_posix.a 2>/dev/null | awk '/\(TOTALS\)/ { print $1 }')
printf 'gw_own_archive_text_bytes=%s\n' "$arch"
measure "$RELAYB" "relay build (SITESYNC_GW_RELAY=ON)" gw_relay
[ "$OWN_HUB" -gt 0 ] || bench_die "footprint.sh: the relay build links no gw_hub code"

# ---- heap peak and bytes on the wire during a sync of N records ----
"$BIN/ss_load" mint --ca-dir "$PKI/ca" --out "$WORK" --gateways 1 --prefix fp- >/dev/null
fill=$("$BIN/gw_fill" --journal "$WORK/j" --cert "$WORK/fp-00000.crt" -n "$RECORDS") ||
    bench_die "footprint.sh: filling the journal failed"
jbytes=$(bench_field "$fill" journal_bytes)
sd_start "$WORK/d"
valgrind --tool=massif --massif-out-file="$WORK/massif.out" "$WORK/gw" \
    --journal "$WORK/j" --ca "$PKI/ca.crt" --cert "$WORK/fp-00000.crt" \
    --key "$WORK/fp-00000.key" --server "127.0.0.1:$SD_PORT" --log-level warn sync \
    >"$WORK/sync.out" 2>"$WORK/valgrind.err" ||
    bench_die "footprint.sh: sync under massif failed: $(tail -3 "$WORK/sync.out")"
sd_stop
got=$("$ADMIN" --db "$SD_DB" --json peers | python3 -c 'import json, sys
print(sum(int(r["committed_seq"] or 0) for r in json.load(sys.stdin) if r["node"] == "fp-00000"))')
[ "$got" -eq "$RECORDS" ] || bench_die "footprint.sh: $got of $RECORDS records committed"
peak=$(sed -n 's/^mem_heap_B=//p' "$WORK/massif.out" | sort -n | tail -1)
printf 'gw_heap_peak_bytes=%s\n' "$peak"
if command -v ms_print >/dev/null; then
    ms_print "$WORK/massif.out" >"$WORK/ms_print.txt" 2>/dev/null || true
    bench_say "massif peak: $(grep -m1 -E '^ *[0-9.]+\^' "$WORK/ms_print.txt" | tr -s ' ' || true)"
fi
wire=$("$ADMIN" --db "$SD_DB" --json sessions | python3 -c 'import json, sys
print(sum(int(r["bytes_in"] or 0) for r in json.load(sys.stdin) if r["peer"] == "fp-00000"))')
json=$(awk -v b="$jbytes" -v n="$RECORDS" 'BEGIN { printf "%.1f", (b - 28 * n) / n }')
printf 'wire_bytes_per_record=%s\n' "$(awk -v w="$wire" -v n="$RECORDS" 'BEGIN { printf "%.1f", w / n }')"
printf 'json_bytes_per_record=%s\n' "$json"
printf 'wire_vs_json=%s\n' "$(awk -v w="$wire" -v n="$RECORDS" -v j="$json" \
    'BEGIN { printf "%.2f", w / n / j }')"
