-- The wrk kit's own script (wrk/upload.lua or wrk/download.lua, named by FERRY_KIT_SCRIPT), recording every
-- answer: at the end, the file named by FERRY_RECORD gets one line per answer, "<status> <id>" (the id of a 201,
-- read from ferry's JSON; "-" otherwise), then one line of wrk's socket errors:
-- "errors <connect> <read> <write> <timeout>".
--   FERRY_KIT_SCRIPT=wrk/upload.lua FERRY_RECORD=out.txt wrk -s tests/cluster/record.lua URL -- [the kit's args]

dofile(assert(os.getenv("FERRY_KIT_SCRIPT"), "FERRY_KIT_SCRIPT names wrk/upload.lua or wrk/download.lua"))
local kit_init = init
local threads = {}

function setup(thread)
  threads[#threads + 1] = thread
end

function init(args)
  kit_init(args)
  answers = {}
end

function response(status, headers, body)
  local id = "-"
  if status == 201 then
    id = body:match('"id"%s*:%s*"([0-9a-fA-F-]+)"') or "?"
  end
  answers[#answers + 1] = status .. " " .. id
end

function done(summary, latency, requests)
  local out = assert(io.open(assert(os.getenv("FERRY_RECORD"), "FERRY_RECORD names the output file"), "w"))
  for _, thread in ipairs(threads) do
    for _, line in ipairs(thread:get("answers")) do
      out:write(line, "\n")
    end
  end
  local e = summary.errors
  out:write(string.format("errors %d %d %d %d\n", e.connect, e.read, e.write, e.timeout))
  out:close()
end
