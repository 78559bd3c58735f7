-- Send one prepared body to the URL given to wrk, over and over (POST, or the method given), with any extra
-- request headers given after the method.
--   wrk -s wrk/upload.lua http://127.0.0.1:8000/files/upload/single -- BODY_FILE [CONTENT_TYPE [METHOD [HEADER...]]]
-- BODY_FILE, CONTENT_TYPE and METHOD may also come from the environment (FERRY_BODY, FERRY_CONTENT_TYPE,
-- FERRY_METHOD). wrk/postdata.py makes the multipart and JSON bodies from any file. A tus creation-with-upload
-- is this with `application/offset+octet-stream`, POST, `Tus-Resumable: 1.0.0` and `Upload-Length: <size>`.
-- Answers other than 2xx are counted by wrk as "Non-2xx or 3xx responses".

function init(args)
  local path = args[1] or os.getenv("FERRY_BODY")
  assert(path, "usage: wrk -s upload.lua URL -- BODY_FILE [CONTENT_TYPE [METHOD [HEADER...]]]")
  local file = assert(io.open(path, "rb"))
  wrk.body = file:read("*a")
  file:close()
  wrk.method = args[3] or os.getenv("FERRY_METHOD") or "POST"
  wrk.headers["Content-Type"] = args[2] or os.getenv("FERRY_CONTENT_TYPE") or "application/octet-stream"
  for i = 4, #args do
    local name, value = args[i]:match("^([^:]+):%s*(.*)$")
    assert(name, "headers look like 'Name: value'")
    wrk.headers[name] = value
  end
end
