-- POST /embed with one text of the corpus per request (the TEI contract).
-- wrk -t2 -c64 -d20s -s bench/wrk/embed.lua http://127.0.0.1:8000
-- Environment: CORPUS (one text per line). Run from the repository root.
package.path = (os.getenv("WRK_DIR") or "bench/wrk") .. "/?.lua;" .. package.path
local common = require("common")

local next_request

setup = common.setup

function init(args)
  local bodies = {}
  for i, text in ipairs(common.corpus()) do
    bodies[i] = '{"inputs":' .. common.json_string(text) .. "}"
  end
  next_request = common.post_json("/embed", bodies)
end

function request()
  return next_request()
end

done = common.done
