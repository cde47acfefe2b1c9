# shellcheck shell=bash
# bench/lib/sitesync.sh - helpers for the sitesync halves (sourced): option
# parsing shared by bench/sitesync/*.sh, a sitesyncd on 127.0.0.1 with a
# fresh database, its memory and file limits, and committed counts read back
# with sitesync-admin.

# ss_half_args "$@": parses --build-dir DIR --pki DIR and leaves the other
# options in HALF_ARGS. Sets BUILD, PKI, BIN, SITESYNCD, ADMIN, GW.
ss_half_args() {
    BUILD='' PKI='' HALF_ARGS=()
    while [ $# -gt 0 ]; do
        case $1 in
        --build-dir) BUILD=${2:?--build-dir needs a directory}; shift 2 ;;
        --pki) PKI=${2:?--pki needs a directory}; shift 2 ;;
        *) HALF_ARGS+=("$1"); shift ;;
        esac
    done
    if [ -z "$BUILD" ] || [ ! -d "$BUILD" ]; then
        bench_die "--build-dir must name the bench build"
    fi
    if [ -z "$PKI" ] || [ ! -r "$PKI/ca.crt" ]; then
        bench_die "--pki must name the run's PKI"
    fi
    # The daemon needs the CA's CRL and the load client mints identities with
    # the CA key: both come from sitesync-pki's CA directory.
    if [ ! -r "$PKI/ca/crl.pem" ] || [ ! -r "$PKI/ca/private/ca.key" ]; then
        bench_die "the run's PKI was not made by sitesync-pki (no $PKI/ca/crl.pem)"
    fi
    BUILD=$(cd "$BUILD" && pwd) PKI=$(cd "$PKI" && pwd)
    # shellcheck disable=SC2034 # used by the scripts that source this file
    BIN=$BUILD/bench SITESYNCD=$BUILD/daemon/sitesyncd ADMIN=$BUILD/daemon/sitesync-admin
    # shellcheck disable=SC2034
    GW=$BUILD/gateway/sitesync-gw
}

# ss_num VALUE NAME: dies unless VALUE is a positive integer.
ss_num() {
    [[ $1 =~ ^[1-9][0-9]*$ ]] || bench_die "$2 wants a positive number (got '$1')"
}

# sd_start DIR [FLAG...]: sitesyncd on 127.0.0.1 (free port) with a fresh
# database DIR/sitesync.db, the run's certificates and otherwise its default
# configuration (as deployed: synchronous=FULL, info logs to DIR/sitesyncd.log).
# Sets SD_PID, SD_PORT, SD_DB, SD_LOG.
sd_start() {
    local dir=$1
    shift
    mkdir -p "$dir"
    rm -f "$dir/port" "$dir"/sitesync.db*
    SD_DB=$dir/sitesync.db SD_LOG=$dir/sitesyncd.log
    "$SITESYNCD" --listen 127.0.0.1:0 --port-file "$dir/port" --db "$SD_DB" \
        --ca "$PKI/ca.crt" --crl "$PKI/ca/crl.pem" --cert "$PKI/server.crt" \
        --key "$PKI/server.key" "$@" 2>"$SD_LOG" &
    SD_PID=$!
    local _
    for _ in $(seq 1 150); do
        if [ -s "$dir/port" ]; then
            # shellcheck disable=SC2034
            SD_PORT=$(cat "$dir/port")
            return 0
        fi
        kill -0 "$SD_PID" 2>/dev/null || break
        sleep 0.1
    done
    tail -5 "$SD_LOG" >&2
    bench_die "sitesyncd did not start"
}

# sd_stop: SIGTERM (graceful drain) and wait; SIGKILL after 30 s.
sd_stop() {
    [ -n "${SD_PID:-}" ] || return 0
    kill -TERM "$SD_PID" 2>/dev/null || true
    local _
    for _ in $(seq 1 300); do
        kill -0 "$SD_PID" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$SD_PID" 2>/dev/null || true
    wait "$SD_PID" 2>/dev/null || true
    SD_PID=
}

# sd_status_kib FIELD: VmRSS, VmHWM ... of the running daemon, in KiB.
sd_status_kib() {
    awk -v f="$1:" '$1 == f { print $2 }' "/proc/$SD_PID/status"
}

# sd_committed PREFIX: the sum of the committed sequences of the origins
# whose node id starts with PREFIX (sitesync-admin --json peers), which is the
# number of changes committed for them when each started at 1.
sd_committed() {
    "$ADMIN" --db "$SD_DB" --json peers |
        python3 -c 'import json, sys
p = sys.argv[1]
print(sum(int(r["committed_seq"] or 0) for r in json.load(sys.stdin) if r["node"].startswith(p)))' "$1"
}
