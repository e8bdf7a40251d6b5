-- POST /embed with K texts of the corpus per request (client-side batching, the TEI contract).
-- INPUTS=64 wrk -t2 -c16 -d20s -s bench/wrk/embed_batch.lua http://127.0.0.1:8000
-- Environment: CORPUS (one text per line), INPUTS (texts per request, default 64). Run from the repository root.
package.path = (os.getenv("WRK_DIR") or "bench/wrk") .. "/?.lua;" .. package.path
local common = require("common")

local per_request = tonumber(os.getenv("INPUTS") or "64")
local next_request

setup = common.setup

function init(args)
  local texts = common.corpus()
  local bodies = {}
  for start = 1, #texts, per_request do
    local quoted = {}
    for i = 0, per_request - 1 do
      quoted[#quoted + 1] = common.json_string(texts[(start + i - 1) % #texts + 1])
    end
    bodies[#bodies + 1] = '{"inputs":[' .. table.concat(quoted, ",") .. "]}"
  end
  next_request = common.post_json("/embed", bodies)
end

function request()
  return next_request()
end

done = common.done
