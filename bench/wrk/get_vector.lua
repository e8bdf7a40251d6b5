-- GET /get_vector?sentence=... over the corpus: the write-up's endpoint, as a list of GET paths.
-- wrk -t2 -c100 -d20s -s bench/wrk/get_vector.lua http://127.0.0.1:8000
-- Environment: CORPUS (one text per line); ENDPOINT (default /get_vector; /bench/get_vector_sync and
-- /bench/get_vector_async reach the baselines of a server started with EMBED_BENCH_VIEWS=1).
package.path = (os.getenv("WRK_DIR") or "bench/wrk") .. "/?.lua;" .. package.path
local common = require("common")

local endpoint = os.getenv("ENDPOINT") or "/get_vector"
local next_request

setup = common.setup

function init(args)
  local paths = {}
  for i, text in ipairs(common.corpus()) do
    paths[i] = endpoint .. "?sentence=" .. common.url_encode(text)
  end
  next_request = common.requests(paths, function(path)
    return wrk.format("GET", path)
  end)
end

function request()
  return next_request()
end

done = common.done
