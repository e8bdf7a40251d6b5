#!/usr/bin/env bash
# The write-up's experiment end to end on this machine, with an independent cross-check:
#   1. start one server with the bench-only baseline views (EMBED_BENCH_VIEWS=1) on a free loopback port;
#   2. `manage.py benchmark --compare --limit` against it: (a) sync view, (b) async view, (c) micro-batched;
#   3. wrk with the same connection count and duration against the same three endpoints;
#   4. print both tools' requests/s side by side, then stop the server.
# Usage: bench/compare.sh [CONCURRENCY [DURATION_S]]   (defaults: 100 20). Results go to bench/results/.
set -euo pipefail
cd "$(dirname "$0")/.."
concurrency=${1:-100}
duration=${2:-20}
results=bench/results
mkdir -p "$results"
py=.venv/bin/python
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 EMBED_BENCH_VIEWS=1

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
[ -n "$url" ] || { echo "the server did not start" >&2; cat "$log" >&2; exit 1; }
until curl -fsS "$url/ready" >/dev/null; do sleep 0.2; done
echo "server ready at $url"

"$py" manage.py benchmark --url "$url" --compare --limit --concurrency "$concurrency" --duration "$duration" \
  --json "$results/compare.json" --plot "$results/compare.png" --label "bench/compare.sh" --no-progress \
  | tee "$results/compare.txt"

: >"$results/wrk.txt"
for endpoint in /bench/get_vector_sync /bench/get_vector_async /get_vector; do
  echo "wrk -t2 -c$concurrency -d${duration}s --timeout 30s  ENDPOINT=$endpoint" | tee -a "$results/wrk.txt"
  ENDPOINT=$endpoint wrk -t2 -c"$concurrency" -d"${duration}s" --timeout 30s -s bench/wrk/get_vector.lua "$url" \
    | tee -a "$results/wrk.txt"
done

"$py" - "$results/compare.json" "$results/wrk.txt" <<'PY' | tee "$results/agreement.txt"
import json, re, sys

report = json.load(open(sys.argv[1]))
wrk = [float(m) for m in re.findall(r"wrk-summary .*?requests_per_s=([0-9.]+)", open(sys.argv[2]).read())]
print(f"{'design':<48} {'benchmark req/s':>16} {'wrk req/s':>10} {'difference':>11}")
for run, theirs in zip(report["runs"], wrk):
    ours = run["summary"]["requests_per_s"]
    print(f"{run['design']:<48} {ours:16.1f} {theirs:10.1f} {(ours - theirs) / theirs:+11.1%}")
PY
