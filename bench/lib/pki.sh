# bench/lib/pki.sh - a throwaway certificate authority for the benchmarks
# (sourced, not run). ECDSA P-256 like sitesync-pki, short validity, made
# with the openssl command into a temporary directory that the caller removes.

# bench_pki DIR NAME...: creates DIR/ca.crt and, for each NAME, DIR/NAME.crt
# and DIR/NAME.key. Every leaf has CN=NAME (Mosquitto's use_identity_as_username
# takes the user name from it), SAN IP:127.0.0.1 and DNS:localhost, and both
# serverAuth and clientAuth, because a bridge is a client of one broker while
# being served by another.
bench_pki() {
    local dir=$1
    shift
    mkdir -p "$dir"
    (
        set -e
        cd "$dir"
        umask 077
        openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ca.key 2>/dev/null
        openssl req -x509 -new -key ca.key -subj "/CN=sitesync bench CA" -days 2 -sha256 \
            -addext "basicConstraints=critical,CA:TRUE" \
            -addext "keyUsage=critical,keyCertSign,cRLSign" -out ca.crt 2>/dev/null
        cat >leaf.ext <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=IP:127.0.0.1,DNS:localhost
EXT
        local n
        for n in "$@"; do
            openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$n.key" 2>/dev/null
            openssl req -new -key "$n.key" -subj "/CN=$n" -out "$n.csr" 2>/dev/null
            openssl x509 -req -in "$n.csr" -CA ca.crt -CAkey ca.key -set_serial "0x$(openssl rand -hex 16)" \
                -days 2 -sha256 -extfile leaf.ext -out "$n.crt" 2>/dev/null
            rm -f "$n.csr"
        done
        chmod 644 ./*.crt
    )
}
