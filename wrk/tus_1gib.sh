#!/usr/bin/env bash
# A 1 GiB tus upload in 128 PATCHes of 8 MiB (curl), against one raw streaming upload of the same file, each on a
# fresh ferry: peak RSS (VmHWM), wall time, the server's own time (the access log's durations) and the sha256.
#   wrk/tus_1gib.sh [path/to/ferry]
set -euo pipefail
ferry=${1:-./target/release/ferry}
w=$(mktemp -d)
trap 'kill $pid 2>/dev/null; rm -rf $w' EXIT
head -c $((1 << 30)) /dev/urandom > $w/src.bin
sha=$(sha256sum $w/src.bin | cut -d' ' -f1)
for round in tus raw; do
  rm -rf $w/d
  "$ferry" --addr 127.0.0.1:0 --workers 2 --data-dir $w/d --fsync false --max-upload-bytes 2GiB 2>$w/log &
  pid=$!
  sleep 1.5
  base=$(grep -o 'listening on http://[0-9.:]*' $w/log | cut -d' ' -f3)
  start=$(date +%s.%N)
  if [ $round = tus ]; then
    loc=$(curl -fsS -o /dev/null -w '%header{location}' -X POST -H 'Tus-Resumable: 1.0.0' -H "Upload-Length: $((1 << 30))" $base/files/tus/)
    for i in $(seq 0 127); do
      dd if=$w/src.bin bs=8M skip=$i count=1 status=none | curl -fsS -X PATCH -H 'Expect:' -H 'Tus-Resumable: 1.0.0' \
        -H "Upload-Offset: $((i << 23))" -H 'Content-Type: application/offset+octet-stream' --data-binary @- \
        -D $w/h $base$loc
    done
    id=$(tr -d '\r' < $w/h | sed -n 's/^ferry-file-id: //Ip')
  else
    id=$(curl -fsS -H 'Expect:' -X POST -T $w/src.bin "$base/files/upload/stream/async_read_and_async_write?filename=a" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
  fi
  end=$(date +%s.%N)
  served=$(grep -E "\"(PATCH|POST) " $w/log | grep -o "[0-9.]*ms" | tr -d ms | awk "{s += \$1} END {printf \"%.1f\", s / 1000}")
  hwm=$(grep VmHWM /proc/$pid/status | awk '{print $2}')
  got=$(curl -fsS $base/files/$id | python3 -c 'import json,sys; print(json.load(sys.stdin)["sha256"])')
  echo "$round: peak RSS $((hwm / 1024)) MiB, $(python3 -c "print(round($end - $start, 1))") s, server time $served s, sha256 $([ "$got" = "$sha" ] && echo matches || echo DIFFERS)"
  kill $pid; wait $pid 2>/dev/null || true
done
