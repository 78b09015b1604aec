#!/usr/bin/env bash
# Installs and builds what the benchmark suite needs; safe to run again (it only does what is
# missing, and says what it does).  Called by bench/run.py; can be run by hand:
#
#     PYTHON=.venv/bin/python bash bench/setup.sh
#
# - Debian packages: lua5.4 and lua-luv (the luv echo peer), util-linux (taskset), nodejs (the
#   node.js echo peer), gcc (the C load generator and echo), nats-server (the NATS broker of the
#   NATS RPC peer); installed with apt-get when missing.
# - Python packages: the project's `bench` extra (matplotlib, Pyro5, rpyc, grpcio, nats-py,
#   pyzmq) into the venv.
# - C programs: bench/build/loadgen, echo_epoll, rpcgen and rpc_epoll, rebuilt when their source
#   changed.
#
# A step that fails is reported and the rest still runs: the runner marks the peers it lacks as
# skipped instead of stopping.
set -u

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
BUILD="$HERE/build"
status=0

say() { echo "bench/setup: $*" >&2; }

# --- Debian packages -------------------------------------------------------------------------
missing=()
command -v lua5.4 >/dev/null 2>&1 || missing+=(lua5.4)
if command -v lua5.4 >/dev/null 2>&1; then
    lua5.4 -e 'require("luv")' >/dev/null 2>&1 || missing+=(lua-luv)
else
    missing+=(lua-luv)
fi
command -v taskset >/dev/null 2>&1 || missing+=(util-linux)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v gcc >/dev/null 2>&1 || missing+=(gcc)
command -v nats-server >/dev/null 2>&1 || missing+=(nats-server)

if ((${#missing[@]})); then
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
        say "installing Debian packages: ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        # The package lists may be absent on a fresh machine: refresh them once, then install.
        if ! apt-get install -y -q "${missing[@]}" >/dev/null 2>&1; then
            apt-get update -q >/dev/null 2>&1
            apt-get install -y -q "${missing[@]}" >/dev/null 2>&1 \
                || { say "apt-get install ${missing[*]} failed; those peers will be skipped"; status=1; }
        fi
    else
        say "missing ${missing[*]} and cannot apt-get install (not root or no apt); those peers will be skipped"
        status=1
    fi
fi

# --- Python packages -------------------------------------------------------------------------
if ! "$PYTHON" -c 'import matplotlib, Pyro5, rpyc, grpc, uvloop, msgpack, nats, zmq' >/dev/null 2>&1; then
    say "installing the bench extra into $(dirname "$(dirname "$PYTHON")"): pip install -e '.[bench]'"
    (cd "$ROOT" && "$PYTHON" -m pip install -q -e '.[bench]' >&2) \
        || { say "pip install of the bench extra failed; the peers it provides will be skipped"; status=1; }
fi

# --- C programs ------------------------------------------------------------------------------
mkdir -p "$BUILD"
build() {  # build OUTPUT SOURCE
    local out="$BUILD/$1" src="$2"
    if [ ! -x "$out" ] || [ "$src" -nt "$out" ] || [ "$HERE/rpc_wire.h" -nt "$out" ]; then
        say "building $out"
        gcc -O2 -Wall -Wextra -o "$out" "$src" || { say "gcc failed for $src"; status=1; }
    fi
}
if command -v gcc >/dev/null 2>&1; then
    build loadgen "$HERE/loadgen.c"
    build echo_epoll "$HERE/peers/echo_epoll.c"
    build rpcgen "$HERE/rpcgen.c"
    build rpc_epoll "$HERE/peers/rpc_epoll.c"
fi

exit $status
