-- Shared by the wrk scripts: read the corpus, JSON/URL-encode texts, give each thread its own
-- starting point, and print one machine-readable summary line at the end.
-- Environment: CORPUS (default bench/corpora/default.txt, one text per line).
local common = {}

function common.corpus()
  local path = os.getenv("CORPUS") or "bench/corpora/default.txt"
  local texts = {}
  for line in io.lines(path) do
    if line:match("%S") then
      texts[#texts + 1] = line:match("^%s*(.-)%s*$")
    end
  end
  assert(#texts > 0, "corpus " .. path .. " holds no text")
  return texts
end

function common.json_string(s)
  s = s:gsub('[%c"\\]', function(c)
    if c == '"' then return '\\"' end
    if c == "\\" then return "\\\\" end
    return string.format("\\u%04x", c:byte())
  end)
  return '"' .. s .. '"'
end

function common.url_encode(s)
  return (s:gsub("[^%w%-_%.~]", function(c) return string.format("%%%02X", c:byte()) end))
end

-- Threads start at different places in the corpus so they do not send the same text at the same time.
local threads = 0
function common.setup(thread)
  thread:set("thread_index", threads)
  threads = threads + 1
end

function common.requests(items, build)
  local n = #items
  local position = ((thread_index or 0) * 997) % n
  return function()
    position = position % n + 1
    return build(items[position])
  end
end

-- POST each body in turn as JSON to `path` (the request generator of the POST scripts).
function common.post_json(path, bodies)
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  return common.requests(bodies, function(body)
    return wrk.format("POST", path, nil, body)
  end)
end

function common.done(summary, latency, requests)
  local errors = summary.errors
  local failed = errors.connect + errors.read + errors.write + errors.timeout + errors.status
  io.write(string.format(
    "wrk-summary requests=%d duration_s=%.2f requests_per_s=%.1f p50_ms=%.1f p90_ms=%.1f p99_ms=%.1f "
      .. "p999_ms=%.1f max_ms=%.1f non_2xx=%d connect_errors=%d read_errors=%d timeouts=%d\n",
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
    latency:percentile(99.9) / 1000, latency.max / 1000, errors.status, errors.connect, errors.read,
    errors.timeout))
  if failed > 0 then
    io.write(string.format("wrk-failed %d\n", failed))
  end
end

return common
