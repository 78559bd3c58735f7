#!/bin/sh
# Run by the compose `bench` profile next to a healthy ferry: every upload and download endpoint under wrk,
# against FERRY_URL (the ferry service by name). The endpoints are the ones ferry's OpenAPI document lists with
# an `x-ferry` extension, in their `order`. Prints wrk's report for each; stops when done.
#   BENCH_LIST=1 prints the endpoints it found (kind, strategy, body, path) and exits.
# Runs from any directory holding the wrk/ scripts (/bench in the image).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
url=${FERRY_URL:-http://ferry:8000}
size=${BENCH_SIZE:-262144}
duration=${BENCH_DURATION:-10}
connections=${BENCH_CONNECTIONS:-100}
threads=${BENCH_THREADS:-2}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"

curl -fsS "$url/api-docs/openapi.json" > openapi.json
# one line per endpoint: kind strategy body path (the same reading as wrk/bench.py's endpoints_from_spec)
python3 - openapi.json > endpoints <<'EOF'
import json, re, sys
spec = json.load(open(sys.argv[1]))
shapes = {"upload": ("post", r"/files/upload/(.+)"), "download": ("get", r"/files/download/(.+)/\{[^/{}]+\}")}
found = []
for path, item in spec.get("paths", {}).items():
    for method, op in item.items():
        x = op.get("x-ferry") if isinstance(op, dict) else None
        if not x or method == "head" or x.get("kind") not in shapes:
            continue
        kind = x["kind"]
        want, pattern = shapes[kind]
        m = re.fullmatch(pattern, path)
        if method != want or not m:
            sys.exit(f"{method.upper()} {path}: not where an x-ferry {kind} belongs")
        body = x.get("body", "-") if kind == "upload" else "-"
        found.append((kind != "upload", x["order"], kind, x.get("strategy", m.group(1)), body, path))
if not found:
    sys.exit("the spec lists no x-ferry operation")
for _, _, kind, strategy, body, path in sorted(found):
    print(kind, strategy, body, path)
EOF
if [ "${BENCH_LIST:-}" ]; then
  cat endpoints
  exit 0
fi

head -c "$size" /dev/urandom > fixture.bin
python3 "$here/postdata.py" fixture.bin > /dev/null
multipart="multipart/form-data; boundary=gouchicao0123456789"

run() {
  printf '\n### %s\n' "$1"
  shift
  wrk -t "$threads" -c "$connections" -d "${duration}s" --latency "$@" < /dev/null
}

id=
while read -r kind strategy body path; do
  if [ "$kind" = upload ]; then
    case $body in
      raw) file=fixture.bin type=application/octet-stream ;;
      multipart) file=fixture.bin.multipart type=$multipart ;;
      json) file=fixture.bin.json type=application/json ;;
      *) echo "upload/$strategy: unknown body $body" >&2; exit 1 ;;
    esac
    run "upload $strategy" -s "$here/upload.lua" "$url$path" -- "$file" "$type"
  else
    if [ -z "$id" ]; then
      # store the fixture once, through the first raw upload the spec lists
      raw=$(awk '$1 == "upload" && $3 == "raw" { print $4; exit }' endpoints)
      id=$(curl -fsS --data-binary @fixture.bin -H 'Content-Type: application/octet-stream' \
        "$url$raw?filename=fixture.bin" < /dev/null | sed -n 's/.*"id":"\([^"]*\)".*/\1/p')
      [ -n "$id" ] || { echo "could not store the download fixture through $raw" >&2; exit 1; }
    fi
    run "download $strategy" -s "$here/download.lua" "$url$(printf '%s' "$path" | sed "s/{[^}]*}/$id/")"
  fi
done < endpoints
