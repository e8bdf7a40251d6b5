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
  next_request = common.post_json("/v1/embeddings", bodies)
end

function request()
  return next_request()
end

done = common.done
