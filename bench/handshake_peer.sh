#!/usr/bin/env bash
# bench/handshake_peer.sh - the peer half of handshake_vs_openssl: starts
# `openssl s_server` on 127.0.0.1 with a server certificate, requiring a client
# certificate from the same CA (-Verify 1 -verify_return_error), and measures
# it with bench/tls_handshake (N full mutual-TLS handshakes, no resumption).
# Prints:
#   openssl_s_server_handshakes_per_s=<n> handshakes=... tls=1.2 ...
# See bench/handshake_peer.md for how the sitesyncd half uses the same client.
#
# usage: bench/handshake_peer.sh --bin DIR [--pki DIR] [-n N] [--tls 1.2|1.3]
#   DIR holds tls_handshake; --pki names a directory with ca.crt,
#   server.crt/.key and client.crt/.key (default: a throwaway one).
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib/common.sh
. "$HERE/lib/common.sh"
# shellcheck source=lib/pki.sh
. "$HERE/lib/pki.sh"

BIN='' PKI='' COUNT=1000 TLS=1.2
while [ $# -gt 0 ]; do
    case $1 in
    --bin) BIN=${2:?--bin needs a directory}; shift 2 ;;
    --pki) PKI=${2:?--pki needs a directory}; shift 2 ;;
    -n) COUNT=${2:?}; shift 2 ;;
    --tls) TLS=${2:?}; shift 2 ;;
    -h | --help) sed -n '2,13p' "$0"; exit 0 ;;
    *) bench_die "handshake_peer.sh: unknown option $1" ;;
    esac
done
[[ $COUNT =~ ^[1-9][0-9]*$ ]] || bench_die "handshake_peer.sh: -n wants a positive number"
[ "$TLS" = 1.2 ] || [ "$TLS" = 1.3 ] || bench_die "handshake_peer.sh: --tls is 1.2 or 1.3"
if [ -z "$BIN" ] || [ ! -x "$BIN/tls_handshake" ]; then
    bench_die "handshake_peer.sh: --bin must name the directory with tls_handshake"
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/sitesync-bench-hs.XXXXXX")
SERVER=
cleanup() {
    if [ -n "$SERVER" ]; then
        kill "$SERVER" 2>/dev/null || true
        wait "$SERVER" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -z "$PKI" ]; then
    PKI=$WORK/pki
    bench_pki "$PKI" server:server client:client || bench_die "cannot create the throwaway PKI"
fi
for f in ca.crt server.crt server.key client.crt client.key; do
    [ -r "$PKI/$f" ] || bench_die "handshake_peer.sh: $PKI/$f is missing"
done

PORT=$(bench_free_port)
# s_server serves one connection at a time; stdin from /dev/null so it never
# waits on a terminal. No session tickets: every handshake here is a full one.
openssl s_server -accept "127.0.0.1:$PORT" -cert "$PKI/server.crt" -key "$PKI/server.key" \
    -CAfile "$PKI/ca.crt" -Verify 1 -verify_return_error -num_tickets 0 -quiet \
    </dev/null >/dev/null 2>"$WORK/s_server.err" &
SERVER=$!
bench_wait_port "$PORT" 10 || {
    cat "$WORK/s_server.err" >&2
    bench_die "openssl s_server did not start"
}

out=$("$BIN/tls_handshake" --host 127.0.0.1 --port "$PORT" --ca "$PKI/ca.crt" \
    --cert "$PKI/client.crt" --key "$PKI/client.key" -n "$COUNT" --tls "$TLS") ||
    bench_die "handshakes against openssl s_server failed"
printf 'openssl_s_server_handshakes_per_s=%s\n' "${out#tls_handshakes_per_s=}"
