#!/usr/bin/env bash
# kill -9 one process of the shop in the middle of a full-lifecycle load and
# report what the load generator saw: orders lost, duplicated or left
# incomplete, and how long the slowest order took, with how long the victim
# took to serve again.
#
#   make build && go build -o bin/loadgen ./cmd/loadgen
#   scripts/kill-under-load.sh order      # or kitchen, delivery, menu, gateway, launcher
#
# A killed service is restarted by the launcher; a killed launcher (its
# children stop with it) is started again by this script. RATE (default 50)
# and DURATION (default 40s) shape the load; the kill comes after 15 s. BIN,
# BASE and HTTP as for scripts/cpu-per-order.sh. Needs python3 and curl.
set -u
victim=${1:?usage: scripts/kill-under-load.sh order|kitchen|delivery|menu|gateway|launcher}
bin=${BIN:-bin} base=${BASE:-29090} http=${HTTP:-29080}
data=$(mktemp -d)
start() {
  "$bin/pizzashop" run --bin "$bin" --data "$data" --base-port "$base" --http "127.0.0.1:$http" \
    --nats-addr "127.0.0.1:$((base + 300))" --mongo-addr "127.0.0.1:$((base + 301))" >> "$data/run.log" 2>&1 &
  lp=$!
}
ready() { for _ in $(seq 1 600); do curl -sf -o /dev/null "$1" && return 0; sleep 0.05; done; return 1; }
start
trap 'kill -INT $lp 2>/dev/null; wait $lp; [ -n "${KEEP:-}" ] && echo "data kept in $data" || rm -rf "$data"' EXIT
ready "http://127.0.0.1:$http/readyz" || { echo "the shop did not start"; exit 1; }
"$bin/loadgen" -url "http://127.0.0.1:$http" -base-port "$base" -progress=false -json -mode lifecycle \
  -rate "${RATE:-50}" -duration "${DURATION:-40s}" -drain 60s > "$data/report.json" 2> "$data/loadgen.err" &
lg=$!
sleep 15
if [ "$victim" = launcher ]; then
  kill -9 $lp; t0=$(date +%s.%N)
  # A process killed under load can take seconds to tear down its memory,
  # and holds its ports until its last thread is gone. Its first thread
  # shows as a zombie before that; wait returns only when the process can
  # be reaped, after the last thread has exited and closed its files.
  wait $lp 2>/dev/null
  while pgrep -f "$bin/(order|kitchen|menu|delivery|gateway)" > /dev/null; do sleep 0.1; done
  start
  ready "http://127.0.0.1:$http/readyz"
else
  case $victim in menu) port=$((base + 101)) ;; order) port=$((base + 102)) ;; kitchen) port=$((base + 103)) ;;
    delivery) port=$((base + 104)) ;; gateway) port=$http ;; *) echo "unknown victim $victim"; exit 2 ;; esac
  kill -9 "$(pgrep -P $lp -x "$victim")"; t0=$(date +%s.%N)
  sleep 0.1
  ready "http://127.0.0.1:$port/metrics"
fi
echo "$victim serving again $(python3 -c "print(round($(date +%s.%N) - $t0, 2))") s after kill -9"
wait $lg
python3 - "$data/report.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
p = r['phases'][0]
print({k: p.get(k) for k in ['sent', 'accepted', 'errors', 'lost', 'duplicated', 'incomplete', 'backlog_at_end']})
for k in ['order_to_display', 'order_to_ready', 'order_to_complete']:
    v = p.get(k, {})
    print(f"{k}: p50 {v.get('p50_ms')} ms, p99 {v.get('p99_ms')} ms, max {v.get('max_ms')} ms")
PY
