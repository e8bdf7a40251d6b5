#!/usr/bin/env bash
# Does `manage.py benchmark` measure what wrk measures? Against ONE server, alternate the two tools on the
# same endpoint, connection count and duration, ROUNDS times (in alternating order, so a shared machine's
# slow drift favours neither tool), and print each pair and the medians.
# Usage: bench/crosscheck.sh [ENDPOINT [CONCURRENCY [DURATION_S [ROUNDS]]]]
#   ENDPOINT: get_vector (default), openai-float, tei, bench-sync, bench-async. Results: bench/results/.
set -euo pipefail
cd "$(dirname "$0")/.."
endpoint=${1:-get_vector}
concurrency=${2:-100}
duration=${3:-20}
rounds=${4:-3}
results=bench/results
mkdir -p "$results"
py=.venv/bin/python
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 EMBED_BENCH_VIEWS=1
case "$endpoint" in
  get_vector) script=get_vector.lua; path=/get_vector ;;
  bench-sync) script=get_vector.lua; path=/bench/get_vector_sync ;;
  bench-async) script=get_vector.lua; path=/bench/get_vector_async ;;
  openai-float) script=openai.lua; path="" ;;
  tei) script=embed.lua; path="" ;;
  *) echo "unknown endpoint $endpoint" >&2; exit 2 ;;
esac
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk" >&2; exit 1; }

log=$(mktemp)
"$py" manage.py serve --host 127.0.0.1 --port 0 >"$log" 2>&1 &
server=$!
stop() {
  kill -TERM "$server" 2>/dev/null || true
  for _ in $(seq 1 300); do kill -0 "$server" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$server" 2>/dev/null || true
  rm -f "$log"
}
trap stop EXIT
url=""
for _ in $(seq 1 1800); do
  url=$(grep -o 'listening on http://127\.0\.0\.1:[0-9]*' "$log" | head -1 | cut -d' ' -f3 || true)
  [ -n "$url" ] && break
  kill -0 "$server" 2>/dev/null || { cat "$log" >&2; exit 1; }
  sleep 0.1
done
until curl -fsS "$url/ready" >/dev/null; do sleep 0.2; done

out="$results/crosscheck-$endpoint.txt"
echo "server $url; endpoint $endpoint; $concurrency connections; ${duration}s per run; $rounds rounds" | tee "$out"
run_wrk() {
  # wrk gets the same few seconds of warm-up as the benchmark's default --warmup 3.
  ENDPOINT=$path wrk -t2 -c"$concurrency" -d3s --timeout 30s -s "bench/wrk/$script" "$url" >/dev/null
  ENDPOINT=$path wrk -t2 -c"$concurrency" -d"${duration}s" --timeout 30s -s "bench/wrk/$script" "$url" \
    | grep -o 'wrk-summary.*' | tee -a "$out" | sed -E 's/.*requests_per_s=([0-9.]+).*/\1/'
}
run_benchmark() {
  "$py" manage.py benchmark --url "$url" --endpoint "$endpoint" --concurrency "$concurrency" \
    --duration "$duration" --json "$results/crosscheck-$endpoint-$1.json" --label "bench/crosscheck.sh" \
    --no-progress -v0 | tee -a "$out" | grep -E '^throughput' | awk '{print $2}'
}
ours=() theirs=()
for round in $(seq 1 "$rounds"); do
  # Odd rounds run wrk first, even rounds the benchmark first: a machine that slowly gets busier
  # (or quieter) then favours neither tool.
  if [ $((round % 2)) -eq 1 ]; then w=$(run_wrk); b=$(run_benchmark "$round"); else b=$(run_benchmark "$round"); w=$(run_wrk); fi
  echo "round $round: benchmark $b req/s, wrk $w req/s" | tee -a "$out"
  ours+=("$b") theirs+=("$w")
done
"$py" - "${ours[@]}" -- "${theirs[@]}" <<'PY' | tee -a "$out"
import statistics, sys

split = sys.argv.index("--")
ours = [float(v) for v in sys.argv[1:split]]
theirs = [float(v) for v in sys.argv[split + 1:]]
b, w = statistics.median(ours), statistics.median(theirs)
ratio = statistics.median(o / t for o, t in zip(ours, theirs, strict=True))
print(f"median: benchmark {b:.1f} req/s, wrk {w:.1f} req/s, difference {(b - w) / w:+.1%}")
print(f"median of the per-round differences: {ratio - 1:+.1%}")
PY
