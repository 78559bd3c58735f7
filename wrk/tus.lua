-- tus creation-with-upload: one POST per file, carrying the whole file, so the tus endpoint compares with the
-- one-request strategies (each answer is 201 and stores a file).
--   wrk -s wrk/tus.lua http://127.0.0.1:8000/files/tus/ -- BODY_FILE

function init(args)
  local path = args[1] or os.getenv("FERRY_BODY")
  assert(path, "usage: wrk -s tus.lua URL -- BODY_FILE")
  local file = assert(io.open(path, "rb"))
  wrk.body = file:read("*a")
  file:close()
  wrk.method = "POST"
  wrk.headers["Tus-Resumable"] = "1.0.0"
  wrk.headers["Upload-Length"] = tostring(#wrk.body)
  wrk.headers["Upload-Metadata"] = "filename YmVuY2guYmlu"
  wrk.headers["Content-Type"] = "application/offset+octet-stream"
end
