# shellcheck shell=bash
# bench/lib/common.sh - helpers shared by the bench scripts (sourced): messages,
# free loopback ports, waiting with a deadline, Debian packages on demand.

bench_say() { printf '# %s\n' "$*" >&2; }
bench_die() {
    printf 'bench: %s\n' "$*" >&2
    exit 1
}

# bench_free_port: a TCP port on 127.0.0.1 that was free a moment ago (the
# kernel picks it: bind port 0). Programs that cannot bind port 0 and report
# it themselves (mosquitto, openssl s_server) get one this way.
bench_free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# bench_wait_port PORT SECONDS: waits until something accepts on 127.0.0.1:PORT.
bench_wait_port() {
    local port=$1 deadline=$((SECONDS + $2))
    while [ $SECONDS -lt "$deadline" ]; do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    return 1
}

# bench_wait_line FILE TEXT SECONDS: waits until FILE has a line equal to TEXT.
bench_wait_line() {
    local file=$1 text=$2 deadline=$((SECONDS + $3))
    while [ $SECONDS -lt "$deadline" ]; do
        if [ -f "$file" ] && grep -qx -- "$text" "$file"; then
            return 0
        fi
        sleep 0.1
    done
    return 1
}

# bench_need_debs PKG...: installs the Debian packages that are missing, as
# root (or through sudo). Only bench scripts call this, never the build.
bench_need_debs() {
    local missing=() p
    for p in "$@"; do
        if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
            missing+=("$p")
        fi
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    local sudo=
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null || {
            bench_say "missing Debian packages ${missing[*]} and not root"
            return 1
        }
        sudo=sudo
    fi
    bench_say "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq >/dev/null || return 1
    $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || return 1
}

# bench_field LINE NAME: the value of NAME=value in a key=value line.
bench_field() {
    printf '%s\n' "$1" | tr ' ' '\n' | sed -n "s/^$2=//p" | head -1
}
