# shellcheck shell=bash
# bench/lib/pki.sh - a throwaway certificate authority for the benchmarks
# (sourced, not run): ECDSA P-256, leaves valid for a day and the CA for three
# (sitesync-pki refuses a leaf that would outlive its CA), in a temporary
# directory that the caller removes.
#
# bench_pki DIR NAME:ROLE...: creates DIR/ca.crt and, for each NAME,
# DIR/NAME.crt and DIR/NAME.key. ROLE is server (serverAuth, SAN IP:127.0.0.1
# and DNS:localhost), client (clientAuth) or both (a bridge or a relay is a
# client upstream and a server downstream). Every leaf has CN=NAME, which
# Mosquitto's use_identity_as_username takes as the user name.
#
# With BENCH_PKI_BIN naming a built sitesync-pki, the certificates are the
# product's own (server = daemon, client = gateway, both = relay; sites
# "bench-site"), so sitesyncd and its peers are measured on the certificates
# sitesync deploys; otherwise the openssl command makes equivalent ones.
bench_pki() {
    local dir=$1
    shift
    mkdir -p "$dir"
    if [ -n "${BENCH_PKI_BIN:-}" ] && [ -x "$BENCH_PKI_BIN" ]; then
        bench_pki_sitesync "$dir" "$@" || return 1
    else
        bench_pki_openssl "$dir" "$@" || return 1
    fi
    # set -e does not hold inside a function called from an `||` list, so
    # check the result instead of trusting every step to have stopped us.
    local spec
    for spec in "$@"; do
        if ! openssl verify -CAfile "$dir/ca.crt" "$dir/${spec%%:*}.crt" >/dev/null 2>&1 ||
            [ ! -s "$dir/${spec%%:*}.key" ]; then
            printf 'bench_pki: no valid certificate for %s in %s\n' "${spec%%:*}" "$dir" >&2
            return 1
        fi
    done
}

bench_pki_sitesync() {
    local dir=$1 spec name role
    shift
    "$BENCH_PKI_BIN" init --dir "$dir/ca" --name "sitesync bench CA" --days 3 >/dev/null || return 1
    cp "$dir/ca/ca.crt" "$dir/ca.crt"
    for spec in "$@"; do
        name=${spec%%:*}
        role=${spec#*:}
        case $role in
        server) set -- --role daemon --ip 127.0.0.1 --dns localhost ;;
        client) set -- --role gateway --site bench-site ;;
        both) set -- --role relay --site bench-site --ip 127.0.0.1 ;;
        *) printf 'bench_pki: unknown role %s\n' "$role" >&2; return 1 ;;
        esac
        "$BENCH_PKI_BIN" issue --dir "$dir/ca" --node "$name" "$@" --days 1 \
            --out "$dir/$name" >/dev/null || return 1
    done
}

bench_pki_openssl() {
    local dir=$1
    shift
    (
        set -e
        cd "$dir"
        umask 077
        openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ca.key 2>/dev/null
        openssl req -x509 -new -key ca.key -subj "/CN=sitesync bench CA" -days 3 -sha256 \
            -addext "basicConstraints=critical,CA:TRUE" \
            -addext "keyUsage=critical,keyCertSign,cRLSign" -out ca.crt 2>/dev/null
        local spec name role eku san
        for spec in "$@"; do
            name=${spec%%:*}
            role=${spec#*:}
            san="subjectAltName=DNS:$name"
            case $role in
            server) eku=serverAuth san="subjectAltName=IP:127.0.0.1,DNS:localhost" ;;
            client) eku=clientAuth ;;
            both) eku=serverAuth,clientAuth san="subjectAltName=IP:127.0.0.1,DNS:localhost" ;;
            *) printf 'bench_pki: unknown role %s\n' "$role" >&2; exit 1 ;;
            esac
            printf '%s\n' "basicConstraints=critical,CA:FALSE" \
                "keyUsage=critical,digitalSignature" "extendedKeyUsage=$eku" "$san" >"$name.ext"
            openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$name.key" 2>/dev/null
            openssl req -new -key "$name.key" -subj "/CN=$name" -out "$name.csr" 2>/dev/null
            openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key \
                -set_serial "0x$(openssl rand -hex 16)" -days 1 -sha256 -extfile "$name.ext" \
                -out "$name.crt" 2>/dev/null
            rm -f "$name.csr" "$name.ext"
        done
        chmod 644 ./*.crt
    )
}
