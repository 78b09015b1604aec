#!/bin/bash
# CPU time per call of the Plus benchmark (name service + PlusServer + plus_client), server and
# client measured apart from /proc: steadier than calls/s on a shared, noisy machine.
# usage: bench/rpc_cpu.sh CALLERS SECONDS   (SECONDS >= 4)
cd "$(dirname "$0")/.."
OUT=$(mktemp)
PORT=$((20000 + RANDOM % 20000))
NS=tcp://127.0.0.1:$PORT
.venv/bin/python -m namewire nameservice --listen $NS --log-level WARNING & NSP=$!
sleep 0.7
.venv/bin/python -m namewire run examples/plus_server.py --nameservice $NS --log-level WARNING & SV=$!
sleep 1
ticks() { awk '{print $14+$15}' /proc/$1/stat; }
.venv/bin/python examples/plus_client.py --nameservice $NS --seconds $2 --callers $1 --wait 5 > "$OUT" & CL=$!
sleep 1.5
s0=$(ticks $SV); c0=$(ticks $CL); t0=$(date +%s.%N)
sleep $(( $2 - 2 ))
s1=$(ticks $SV); c1=$(ticks $CL); t1=$(date +%s.%N)
wait $CL
kill $SV; sleep 0.3; kill $NSP
avg=$(grep average "$OUT" | awk '{print $2}' | tr -d ,)
python3 -c "
calls=$avg*($t1-$t0)
print(f'avg {$avg:,.0f} calls/s; server {($s1-$s0)*1e4/calls:.2f} us/call, client {($c1-$c0)*1e4/calls:.2f} us/call (CPU)')"
