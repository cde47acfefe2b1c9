#!/usr/bin/env bash
# bench/sitesync/relay.sh - relay overhead: throughput through one regional
# hub (sitesync-gw in relay mode) against direct, and what verifying an
# origin signature costs per envelope (bench/sig_cost: OpenSSL ECDSA P-256
# over SHA-256 of a 40 KiB envelope, cached-certificate path, plus the
# uncached path and the SHA-256/ECDSA split). Prints:
#   relay_vs_direct (or "not available yet: relay_vs_direct: <why>")
#   sig_verify_us_per_envelope  sig_verify_uncached_us  sig_sha256_us  sig_ecdsa_us
#
# usage: relay.sh --build-dir DIR --pki DIR [--records N]
# shellcheck source-path=SCRIPTDIR
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/common.sh
. "$HERE/../lib/common.sh"
# shellcheck source=../lib/sitesync.sh
. "$HERE/../lib/sitesync.sh"

ss_half_args "$@"
RECORDS=100000
set -- "${HALF_ARGS[@]+"${HALF_ARGS[@]}"}"
while [ $# -gt 0 ]; do
    case $1 in
    --records) RECORDS=${2:?}; shift 2 ;;
    *) bench_die "relay.sh: unknown option $1" ;;
    esac
done
ss_num "$RECORDS" --records

# ---- relay against direct ----
if ! "$GW" --help 2>&1 | grep -Eq '^ +relay( |$)'; then
    printf 'not available yet: relay_vs_direct: sitesync-gw has no relay command yet (%s)\n' \
        "the hub is being written; \`sitesync-gw --help\` lists none"
else
    printf 'not available yet: relay_vs_direct: %s\n' \
        "sitesync-gw has a relay command now, but this script does not drive it yet"
fi

# ---- signature verification ----
if [ -x "$BIN/sig_cost" ]; then
    out=$("$BIN/sig_cost" -n 2000) || bench_die "relay.sh: sig_cost failed"
    printf 'sig_verify_us_per_envelope=%s\n' "$(bench_field "$out" sig_verify_us_per_envelope)"
    printf 'sig_verify_uncached_us=%s\n' "$(bench_field "$out" sig_verify_uncached_us)"
    printf 'sig_sha256_us=%s\n' "$(bench_field "$out" sha256_us)"
    printf 'sig_ecdsa_us=%s\n' "$(bench_field "$out" ecdsa_verify_us)"
else
    printf 'not available yet: sig_verify_us_per_envelope: %s is not built\n' "$BIN/sig_cost"
fi
