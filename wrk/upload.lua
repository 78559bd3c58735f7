-- Send one prepared body to the URL given to wrk, over and over (POST, or the method given).
--   wrk -s wrk/upload.lua http://127.0.0.1:8000/files/upload/single -- BODY_FILE [CONTENT_TYPE [METHOD]]
-- BODY_FILE, CONTENT_TYPE and METHOD may also come from the environment (FERRY_BODY, FERRY_CONTENT_TYPE,
-- FERRY_METHOD). wrk/postdata.py makes the multipart and JSON bodies from any file. Answers other than 2xx
-- are counted by wrk as "Non-2xx or 3xx responses".

function init(args)
  local path = args[1] or os.getenv("FERRY_BODY")
  assert(path, "usage: wrk -s upload.lua URL -- BODY_FILE [CONTENT_TYPE [METHOD]]")
  local file = assert(io.open(path, "rb"))
  wrk.body = file:read("*a")
  file:close()
  wrk.method = args[3] or os.getenv("FERRY_METHOD") or "POST"
  wrk.headers["Content-Type"] = args[2] or os.getenv("FERRY_CONTENT_TYPE") or "application/octet-stream"
end
