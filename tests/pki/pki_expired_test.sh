#!/bin/bash
# pki_expired_test.sh - an expired CA refuses to sign. The CA is made in the
# past with faketime(1) (Debian package faketime), so no test-only option
# exists in the tool. Exits 77 (CTest SKIP_RETURN_CODE) if faketime is absent.
# Usage: pki_expired_test.sh /path/to/sitesync-pki
set -eu -o pipefail

PKI=${1:?usage: pki_expired_test.sh /path/to/sitesync-pki}
case $PKI in /*) ;; *) PKI=$PWD/$PKI ;; esac
if ! command -v faketime >/dev/null 2>&1; then
    echo "SKIP: faketime is not installed (apt-get install faketime); expired-CA case not run"
    exit 77
fi
T=$(mktemp -d "${TMPDIR:-/tmp}/pki_expired_test.XXXXXX")
trap 'rm -rf "$T"' EXIT
cd "$T"

fail() {
    echo "FAIL: $*" >&2
    exit 1
}
# libfaketime is preloaded ahead of the sanitizer runtime in ASan builds.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0"

# A CA made 400 days ago, valid for 10 days: expired 390 days ago.
faketime -f '-400d' "$PKI" init --dir old --days 10 >/dev/null 2>err.txt || {
    cat err.txt >&2
    fail "init under faketime failed"
}
end=$(date -d "$(openssl x509 -in old/ca.crt -noout -enddate | cut -d= -f2)" +%s)
[ "$end" -lt "$(date +%s)" ] || fail "faketime did not take effect: the CA is not expired"
faketime -f '-400d' "$PKI" issue --dir old --role gateway --node gw-1 --site s1 --days 5 \
    --out early >/dev/null 2>&1 || fail "the CA could not sign while it was valid"
cp old/index.json index.before
cp old/crl.pem crl.before

expect_expired() {
    local rc=0
    "$@" >out.txt 2>err.txt || rc=$?
    [ "$rc" -eq 1 ] || { cat err.txt >&2; fail "want exit 1, got $rc: $*"; }
    grep -q "expired on" err.txt || { cat err.txt >&2; fail "no 'expired' message: $*"; }
}
expect_expired "$PKI" issue --dir old --role gateway --node gw-2 --site s1 --out late
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout dev.key \
    -subj /CN=x -out dev.csr 2>/dev/null
expect_expired "$PKI" sign-csr --dir old --csr dev.csr --role gateway --node gw-2 --site s1 \
    --out late.crt
expect_expired "$PKI" revoke --dir old --node gw-1
expect_expired "$PKI" crl --dir old
[ ! -e late.key ] && [ ! -e late.crt ] || fail "an expired CA wrote output"
cmp -s old/index.json index.before || fail "an expired CA changed the index"
cmp -s old/crl.pem crl.before || fail "an expired CA changed the CRL"
# Listing still works, for audits, and shows the certificate as expired.
"$PKI" list --dir old >out.txt || fail "list refused on an expired CA"
grep -q " expired " out.txt || { cat out.txt >&2; fail "list does not show expired"; }

# A CA that is not valid yet (clock behind) is refused as well.
faketime -f '+30d' "$PKI" init --dir future >/dev/null 2>&1 || fail "init in the future failed"
rc=0
"$PKI" issue --dir future --role daemon --node d1 --out f1 >/dev/null 2>err.txt || rc=$?
[ "$rc" -eq 1 ] && grep -q "not valid before" err.txt || { cat err.txt >&2; fail "future CA accepted"; }

echo "pki_expired_test: passed"
