-- POST /v1/embeddings with one text of the corpus per request (the OpenAI contract).
-- wrk -t2 -c64 -d20s -s bench/wrk/openai.lua http://127.0.0.1:8000
-- Environment: CORPUS (one text per line), ENCODING (float, the default, or base64). Run from the repository root.
package.path = (os.getenv("WRK_DIR") or "bench/wrk") .. "/?.lua;" .. package.path
local common = require("common")

local encoding = os.getenv("ENCODING") or "float"
local next_request

setup = common.setup

function init(args)
  local bodies = {}
  for i, text in ipairs(common.corpus()) do
    bodies[i] = '{"input":' .. common.json_string(text) .. ',"encoding_format":"' .. encoding .. '"}'
  end
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  next_request = common.requests(bodies, function(body)
    return wrk.format("POST", "/v1/embeddings", nil, body)
  end)
end

function request()
  return next_request()
end

done = common.done
