#!/bin/sh
# Run by the compose `bench` profile next to a healthy ferry: every upload and download endpoint under wrk,
# against FERRY_URL (the ferry service by name). Prints wrk's report for each; stops when done.
set -eu
url=${FERRY_URL:-http://ferry:8000}
size=${BENCH_SIZE:-262144}
duration=${BENCH_DURATION:-10}
connections=${BENCH_CONNECTIONS:-100}
threads=${BENCH_THREADS:-2}
cd /tmp
head -c "$size" /dev/urandom > fixture.bin
python3 /bench/postdata.py fixture.bin > /dev/null
multipart="multipart/form-data; boundary=gouchicao0123456789"

run() {
  printf '\n### %s\n' "$1"
  shift
  wrk -t "$threads" -c "$connections" -d "${duration}s" --latency "$@"
}

for path in stream/async_read_and_memory_write stream/async_read_and_disk_write stream/async_read_and_async_write; do
  run "upload $path" -s /bench/upload.lua "$url/files/upload/$path" -- fixture.bin application/octet-stream
done
for path in single single/sync single/stream single/stream/async_read_sync_write single/stream/sync_read_sync_write; do
  run "upload $path" -s /bench/upload.lua "$url/files/upload/$path" -- fixture.bin.multipart "$multipart"
done
run "upload raw/json/base64decode" -s /bench/upload.lua "$url/files/upload/raw/json/base64decode" -- fixture.bin.json application/json

id=$(curl -fsS --data-binary @fixture.bin "$url/files/upload/stream/async_read_and_async_write?filename=fixture.bin" \
  | sed -n 's/.*"id":"\([0-9a-f-]*\)".*/\1/p')
for path in stream/sync_read stream/async_read file file/sync cached; do
  run "download $path" -s /bench/download.lua "$url/files/download/$path/$id"
done
