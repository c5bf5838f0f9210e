#!/usr/bin/env bash
# Whole-stack CPU and store statements per order, the way the capacity
# figures in the README were measured: start `pizzashop run` on a data
# directory of its own, read the CPU time (utime+stime) of the launcher and
# every service from /proc, run bin/loadgen with the given arguments, wait
# until the store has been quiet for 2 s (so the drain, every order's
# ACCEPTED write included, is counted), and read it again.
#
#   make build && go build -o bin/loadgen ./cmd/loadgen
#   scripts/cpu-per-order.sh DATADIR -rate 100 -orders 3000
#   scripts/cpu-per-order.sh DATADIR -clients 32 -orders 3000
#   scripts/cpu-per-order.sh DATADIR -mode lifecycle -rate 50 -orders 1500
#
# DATADIR may hold an earlier run's data (orders already stored). BIN
# (default ./bin) picks the binaries, BASE (default 29090) and HTTP (default
# 29080) the ports, below the kernel's range for outgoing connections
# (32768 and up) so that none of those can hold one of them, SETTLE (default
# 1) the seconds to wait after the shop is ready before the first reading. Needs python3 and curl. Linux only (/proc).
set -u
data=${1:?usage: scripts/cpu-per-order.sh DATADIR loadgen-args...}; shift
bin=${BIN:-bin} base=${BASE:-29090} http=${HTTP:-29080}
mkdir -p "$data"
PIZZASHOP_PPROF=true "$bin/pizzashop" run --bin "$bin" --data "$data" --base-port "$base" --http "127.0.0.1:$http" \
  --nats-addr "127.0.0.1:$((base + 300))" --mongo-addr "127.0.0.1:$((base + 301))" > "$data/run.log" 2>&1 &
lp=$!
trap 'kill -INT $lp 2>/dev/null; wait $lp' EXIT
for _ in $(seq 1 120); do curl -sf "http://127.0.0.1:$http/readyz" > /dev/null && break; sleep 0.5; done
sleep "${SETTLE:-1}"
pids="$lp $(pgrep -P $lp | tr '\n' ' ')"
cpu() { for p in $pids; do awk -v n="$(basename "$(readlink /proc/$p/exe)")" '{print n, $14 + $15}' /proc/$p/stat; done; }
stm() { curl -s "http://127.0.0.1:$((base + 100))/metrics" | grep -E '^pizzashop_devstore_(statements|requests)_total'; }
tot() { stm | grep statements_total | grep -v outbox_marks | awk '{s += $2} END {print s}'; }
cpu > "$data/cpu0"; stm > "$data/stm0"
"$bin/loadgen" -url "http://127.0.0.1:$http" -base-port "$base" -progress=false -json "$@" > "$data/report.json" 2> "$data/loadgen.err"
prev=$(tot); quiet=0; t0=$(date +%s)
while [ $quiet -lt 2 ]; do sleep 1; cur=$(tot); if [ "$cur" = "$prev" ]; then quiet=$((quiet + 1)); else quiet=0; fi; prev=$cur; done
echo "store quiet $(($(date +%s) - t0)) s after loadgen ended"
cpu > "$data/cpu1"; stm > "$data/stm1"
python3 - "$data" <<'PY'
import json, re, sys
d = sys.argv[1]
orders = json.load(open(d + '/report.json')).get('accepted') or float('nan')
print('accepted orders:', orders)
a = dict(l.split() for l in open(d + '/cpu0'))
b = dict(l.split() for l in open(d + '/cpu1'))
total = 0
for k in a:
    ms = (int(b[k]) - int(a[k])) * 10.0  # clock ticks of 10 ms
    total += ms
    print(f'  {k:10s} {ms / orders:7.2f} ms/order')
print(f'  TOTAL      {total / orders:7.2f} ms/order')
def read(f, kind):
    out = {}
    for l in open(f):
        m = re.match(r'pizzashop_devstore_' + kind + r'_total\{(.*)\} (\S+)', l)
        if m:
            out[m.group(1)] = float(m.group(2))
    return out
for kind, what in (('statements', 'store statements'), ('requests', 'store requests (round trips)')):
    s0, s1 = read(d + '/stm0', kind), read(d + '/stm1', kind)
    total = 0
    for k in sorted(s1):
        v = s1[k] - s0.get(k, 0)
        if v:
            print(f'  {v / orders:6.2f}/order  {k}')
            total += v
    print(f'  {total / orders:6.2f}/order  {what} in all')
PY
