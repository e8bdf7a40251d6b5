#!/bin/bash
# What one request costs the service's event loop, with a near-free model (bench/tiny_model.py).
#
#   HF_HUB_OFFLINE=1 .venv/bin/python bench/tiny_model.py /tmp/tiny-model
#   bench/loop_cost.sh uvicorn /tmp/tiny-model        # or daphne; ROUNDS=3 DURATION=8 by default
#
# The server runs on CPU 0 and wrk (-t1 -c100, bench/wrk/get_vector.lua) on CPU 1, so neither takes the
# other's core. Each round prints wrk's requests/s, the server process's CPU per request and its event
# loop thread's CPU per request (from /proc/<pid>/stat and /proc/<pid>/task/<pid>/stat). Run two trees
# alternately (REPO=...) and compare medians: one run alone says little on a shared machine.
set -euo pipefail
server=${1:?daphne or uvicorn}
model=${2:?a model directory, e.g. from bench/tiny_model.py}
repo=${REPO:-$(cd "$(dirname "$0")/.." && pwd)}
port=${PORT:-8123}
cd "$repo"
data=$(mktemp -d)
export EMBED_DATA_DIR=$data EMBED_MODEL=$model HF_HUB_OFFLINE=1
.venv/bin/python manage.py migrate --noinput -v0
taskset -c 0 .venv/bin/python manage.py serve --host 127.0.0.1 --port "$port" --server "$server" >"$data/server.log" 2>&1 &
pid=$!
trap 'kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$data"' EXIT
for _ in $(seq 240); do curl -sf "http://127.0.0.1:$port/ready" >/dev/null && break; sleep 0.5; done
curl -sf "http://127.0.0.1:$port/ready" >/dev/null || { cat "$data/server.log"; exit 1; }
cpu() { awk '{print $14 + $15}' "$1"; }  # utime + stime, in clock ticks
tick_us=$((1000000 / $(getconf CLK_TCK)))
taskset -c 1 wrk -t1 -c100 -d3s -s bench/wrk/get_vector.lua "http://127.0.0.1:$port" >/dev/null
for round in $(seq "${ROUNDS:-3}"); do
  process0=$(cpu /proc/$pid/stat) loop0=$(cpu /proc/$pid/task/$pid/stat)
  out=$(taskset -c 1 wrk -t1 -c100 -d"${DURATION:-8}s" -s bench/wrk/get_vector.lua "http://127.0.0.1:$port")
  process1=$(cpu /proc/$pid/stat) loop1=$(cpu /proc/$pid/task/$pid/stat)
  n=$(awk '/requests in/ {print $1}' <<<"$out")
  rate=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  failed=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
  echo "$server round $round: $rate req/s, server $(((process1 - process0) * tick_us / n)) us CPU a request," \
    "event loop $(((loop1 - loop0) * tick_us / n)) us, non-2xx ${failed:-0}"
done
