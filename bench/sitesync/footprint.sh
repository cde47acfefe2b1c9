#!/usr/bin/env bash
# bench/sitesync/footprint.sh - the gateway's footprint:
#   gw_stripped_bytes      sitesync-gw with mbed TLS linked statically
#                          (MinSizeRel, the command of docs/gateway.md), stripped
#   gw_own_text_bytes      .text + .rodata (what `size` counts as text) that the
#                          link map attributes to our own code (gw, ss_proto,
#                          fws, fws_posix, main.c) in that binary; target <= 100 KiB
#   gw_own_code_bytes      the .text part of it alone
#   gw_own_archive_text_bytes  `size -t` text of those archives (everything in
#                          them, linked or not: an upper bound)
#   gw_heap_peak_bytes     valgrind massif's peak heap (mem_heap_B, the peak
#                          ms_print shows) during `sitesync-gw sync` of N
#                          records to sitesyncd; target <= 64 KiB
#   wire_bytes_per_record  TLS bytes the daemon received in that session
#                          (handshake included) / N
#   json_bytes_per_record  the change's JSON as the gateway journals and sends it
#   wire_vs_json           the ratio of the two
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

# ---- static, stripped binary and our own text ----
STATIC=$BUILD/gw-static
MAP=$STATIC/sitesync-gw.map
mkdir -p "$STATIC"
if ! { cmake -S "$ROOT" -B "$STATIC" -DMBEDTLS_STATIC=ON -DCMAKE_BUILD_TYPE=MinSizeRel \
    -DSITESYNC_TESTS=OFF -DSITESYNC_WERROR=OFF -DSITESYNC_SANITIZE=OFF -DSITESYNC_FUZZ=OFF \
    "-DCMAKE_EXE_LINKER_FLAGS=-Wl,-Map=$MAP" &&
    cmake --build "$STATIC" --target sitesync-gw -j "${BENCH_JOBS:-2}"; } \
    >"$STATIC/footprint-build.log" 2>&1; then
    tail -5 "$STATIC/footprint-build.log" >&2
    bench_die "footprint.sh: the static gateway does not build"
fi
strip -o "$WORK/sitesync-gw" "$STATIC/gateway/sitesync-gw"
if ldd "$WORK/sitesync-gw" 2>/dev/null | grep -q libmbed; then
    bench_die "footprint.sh: mbed TLS is still linked dynamically"
fi
printf 'gw_stripped_bytes=%s\n' "$(stat -c %s "$WORK/sitesync-gw")"
own=$(python3 - "$MAP" <<'PY'
import re, sys
ours = re.compile(r'(libgw\.a|libss_proto\.a|libfws\.a|libfws_posix\.a|main\.c\.o)')
total, code, sect = 0, 0, None
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
        total += int(m.group(2), 16)
        if name.startswith('.text'):
            code += int(m.group(2), 16)
print(total, code)
PY
)
code=${own#* } own=${own%% *}
[ "$own" -gt 0 ] || bench_die "footprint.sh: found none of our code in $MAP"
printf 'gw_own_text_bytes=%s\n' "$own"
printf 'gw_own_code_bytes=%s\n' "$code"
arch=$(size -t "$STATIC"/gateway/libgw.a "$STATIC"/proto/libss_proto.a \
    "$STATIC"/firmware-shim/libfws.a "$STATIC"/firmware-shim/libfws_posix.a 2>/dev/null |
    awk '/\(TOTALS\)/ { print $1 }')
printf 'gw_own_archive_text_bytes=%s\n' "$arch"

# ---- heap peak and bytes on the wire during a sync of N records ----
"$BIN/ss_load" mint --ca-dir "$PKI/ca" --out "$WORK" --gateways 1 --prefix fp- >/dev/null
fill=$("$BIN/gw_fill" --journal "$WORK/j" --cert "$WORK/fp-00000.crt" -n "$RECORDS") ||
    bench_die "footprint.sh: filling the journal failed"
jbytes=$(bench_field "$fill" journal_bytes)
sd_start "$WORK/d"
valgrind --tool=massif --massif-out-file="$WORK/massif.out" "$WORK/sitesync-gw" \
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
