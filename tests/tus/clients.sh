#!/usr/bin/env bash
# tus clients that ferry did not write, against the real binary: tuspy and tus-js-client (under node) each
# upload 256 MiB twice, once through a proxy that cuts the connection after 100 MiB, once while ferry is killed
# (SIGKILL) and started again. Each must resume (not start over), and the stored file's sha256 must be the
# source's. Prints "tus clients: N passed, N failed".
#
#   tests/tus/clients.sh FERRY_BINARY PYTHON_PACKAGES_DIR NODE_MODULES_DIR
set -uo pipefail
ferry=$(realpath "$1")
export PYTHONPATH=$2 NODE_PATH=$3
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
ferry_pid=
proxy_pid=
cleanup() {
  for pid in $ferry_pid $proxy_pid; do kill -9 "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

size=$((256 << 20))
head -c "$size" /dev/urandom >"$work/source.bin"
source_sha=$(sha256sum "$work/source.bin" | cut -d' ' -f1)
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
port=$(free_port)
metrics_port=$(free_port)
base="http://127.0.0.1:$port"
passed=0
failed=0

start_ferry() {
  "$ferry" --addr "127.0.0.1:$port" --metrics-addr "127.0.0.1:$metrics_port" --data-dir "$work/data" \
    --max-upload-bytes 1GiB 2>>"$work/ferry.log" &
  ferry_pid=$!
  for _ in $(seq 100); do
    curl -fs "$base/health/live" >/dev/null && return 0
    sleep 0.1
  done
  echo "ferry did not start:"; tail -n 20 "$work/ferry.log"; return 1
}

# Bytes the server holds for the largest upload in progress (0 when there is none yet).
partial_bytes() {
  { find "$work/data/uploads" -name data -type f -printf '%s\n' 2>/dev/null; echo 0; } | sort -n | tail -n1
}

# Body bytes this ferry process has received through tus.
received() {
  curl -fs "http://127.0.0.1:$metrics_port/metrics" | awk '/^ferry_received_bytes_total\{strategy="tus"\}/ {print $2}'
}

# check NAME ID: the stored file must be the source, byte for byte.
check() {
  local name=$1 id=$2 stored_sha
  stored_sha=$(curl -fs "$base/files/download/stream/sync_read/$id" | sha256sum | cut -d' ' -f1)
  local recorded
  recorded=$(curl -fs "$base/files/$id" | python3 -c 'import json, sys; print(json.load(sys.stdin)["sha256"])')
  if [ "$stored_sha" = "$source_sha" ] && [ "$recorded" = "$source_sha" ]; then
    echo "ok: $name (stored $id, sha256 $source_sha)"
    passed=$((passed + 1))
  else
    echo "FAILED: $name: stored ${stored_sha:-nothing}, recorded ${recorded:-nothing}, source $source_sha"
    failed=$((failed + 1))
  fi
}

fail() {
  echo "FAILED: $1"
  failed=$((failed + 1))
}

client() {
  local which=$1 url=$2 chunk=$3; shift 3
  case $which in
    tuspy) timeout 600 python3 "$here/tuspy_upload.py" "$url" "$work/source.bin" "$chunk" "$@" ;;
    tus-js-client) timeout 600 node "$here/tusjs_upload.cjs" "$url" "$work/source.bin" "$chunk" ;;
  esac
}

python3 -c 'import tusclient, importlib.metadata as m; print("tuspy:", m.version("tuspy"))'
node -e 'console.log("tus-js-client:", require("tus-js-client/package.json").version)'
start_ferry || exit 1

for which in tuspy tus-js-client; do
  # 1. the connection is cut after 100 MiB of a one-PATCH upload
  python3 "$here/cutting_proxy.py" --upstream "127.0.0.1:$port" --cut-after $((100 << 20)) \
    --report "$work/proxy.json" >"$work/proxy.port" &
  proxy_pid=$!
  for _ in $(seq 50); do [ -s "$work/proxy.port" ] && break; sleep 0.1; done
  proxy="http://127.0.0.1:$(cat "$work/proxy.port")/files/tus/"
  if id=$(client "$which" "$proxy" 0 | tail -n1) && [ -n "$id" ]; then
    read -r cuts forwarded < <(python3 -c 'import json, sys; r = json.load(open(sys.argv[1])); print(r["cuts"], r["forwarded"])' "$work/proxy.json")
    echo "$which through the cutting proxy: $cuts cut(s), $((forwarded >> 20)) MiB sent for $((size >> 20)) MiB"
    if [ "$cuts" -lt 1 ]; then
      fail "$which: the proxy never cut the connection"
    elif [ "$forwarded" -ge $((size + (32 << 20))) ]; then
      fail "$which: it sent $forwarded bytes for $size: it started over instead of resuming"
    else
      check "$which resumes after its connection is cut" "$id"
    fi
  else
    fail "$which through the cutting proxy: the client failed"
  fi
  kill "$proxy_pid"; wait "$proxy_pid" 2>/dev/null; proxy_pid=
  rm -f "$work/proxy.json" "$work/proxy.port"

  # 2. ferry is killed with SIGKILL after about 96 MiB of 8 MiB PATCHes, and started again
  extra=()
  [ "$which" = tuspy ] && extra=(--checksum)
  client "$which" "$base/files/tus/" $((8 << 20)) "${extra[@]}" >"$work/client.out" 2>"$work/client.err" &
  client_pid=$!
  for _ in $(seq 600); do
    [ "$(partial_bytes)" -ge $((96 << 20)) ] && break
    sleep 0.1
  done
  held=$(partial_bytes)
  kill -9 "$ferry_pid"; wait "$ferry_pid" 2>/dev/null
  sleep 1
  start_ferry || exit 1
  if wait "$client_pid" && id=$(tail -n1 "$work/client.out") && [ -n "$id" ]; then
    after=$(received); after=${after:-0}
    echo "$which across a restart: ferry was killed holding $((held >> 20)) MiB; the new ferry received $((${after%.*} >> 20)) MiB"
    if [ "$held" -lt $((64 << 20)) ]; then
      fail "$which: ferry was killed before the upload was under way ($held bytes)"
    elif [ "${after%.*}" -gt $((size - (48 << 20))) ]; then
      fail "$which: the new ferry received ${after} bytes: the client started over instead of resuming"
    else
      check "$which resumes after ferry is killed and started again" "$id"
    fi
  else
    fail "$which across a restart: the client failed: $(tail -n3 "$work/client.err")"
  fi
done

echo "tus clients: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
