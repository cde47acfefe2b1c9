#!/usr/bin/env bash
# bench/sitesync/handshake.sh - the sitesync half of handshake_vs_openssl:
# the same client (bench/tls_handshake: N full mutual-TLS 1.2 handshakes, no
# resumption, one thread, the run's client certificate) against sitesyncd on
# the same certificates. A handshake counts when the TLS handshake is
# complete: in TLS 1.2 the client's SSL_connect returns only after the
# daemon's Finished, which the daemon sends only once it has accepted the
# client certificate (chain, CRL, clientAuth EKU, sitesync identity). HELLO
# and WELCOME are not part of it (s_server has no such step). Prints:
#   sitesyncd_handshakes_per_s=<n>
#
# usage: handshake.sh --build-dir DIR --pki DIR [-n N]
# shellcheck source-path=SCRIPTDIR
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/common.sh
. "$HERE/../lib/common.sh"
# shellcheck source=../lib/sitesync.sh
. "$HERE/../lib/sitesync.sh"

ss_half_args "$@"
COUNT=1000
set -- "${HALF_ARGS[@]+"${HALF_ARGS[@]}"}"
while [ $# -gt 0 ]; do
    case $1 in
    -n) COUNT=${2:?}; shift 2 ;;
    *) bench_die "handshake.sh: unknown option $1" ;;
    esac
done
ss_num "$COUNT" -n

WORK=$(mktemp -d "${TMPDIR:-/tmp}/sitesync-bench-hs.XXXXXX")
trap 'sd_stop; rm -rf "$WORK"' EXIT
sd_start "$WORK"
out=$("$BIN/tls_handshake" --host 127.0.0.1 --port "$SD_PORT" --ca "$PKI/ca.crt" \
    --cert "$PKI/client.crt" --key "$PKI/client.key" -n "$COUNT" --tls 1.2) ||
    bench_die "handshake.sh: handshakes against sitesyncd failed ($(tail -3 "$SD_LOG"))"
bench_say "sitesyncd handshakes: $out"
printf 'sitesyncd_handshakes_per_s=%s\n' "$(bench_field "$out" tls_handshakes_per_s)"
