-- GET the URL given to wrk, optionally with request headers (e.g. a Range).
--   wrk -s wrk/download.lua http://127.0.0.1:8000/files/download/cached/ID -- ["Range: bytes=0-1023" ...]

function init(args)
  for _, header in ipairs(args) do
    local name, value = header:match("^([^:]+):%s*(.*)$")
    assert(name, "headers look like 'Name: value'")
    wrk.headers[name] = value
  end
end
