#!/usr/bin/env bash
# Checks the compose `proxy` profile's nginx config without Docker: renders docker/nginx/ferry.conf.template as
# the nginx image would, points it at a local ferry, and streams uploads and downloads through Debian's nginx.
#   docker/check_proxy.sh [path/to/ferry]      (needs nginx and curl; loopback only; stops what it starts)
set -euo pipefail
cd "$(dirname "$0")/.."
ferry=${1:-./target/debug/ferry}
# spelled with a unit, as ferry takes it and nginx does not: the image's entrypoint turns it into bytes
limit_setting=8MiB
limit=8388608
work=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"' EXIT

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_for() { for _ in $(seq 100); do curl -fsS -o /dev/null "$1" && return 0; sleep 0.1; done; echo "no answer from $1"; return 1; }

ferry_port=$(free_port)
RUST_LOG=info "$ferry" --addr "127.0.0.1:$ferry_port" --data-dir "$work/data" --max-upload-bytes "$limit_setting" \
  --trusted-proxies 127.0.0.1 2>"$work/ferry.log" &
pids+=($!)
wait_for "http://127.0.0.1:$ferry_port/health"

proxy_port=$(free_port)
mkdir -p "$work/nginx"
# what the image's entrypoint does (18-ferry-body-limit.envsh, then envsubst), and the service name and port
# mapped to loopback
body_bytes=$(FERRY_MAX_UPLOAD_BYTES=$limit_setting sh -c '. docker/nginx/18-ferry-body-limit.envsh && echo "$FERRY_PROXY_BODY_BYTES"')
[ "$body_bytes" = $((limit + 65536)) ] || { echo "nginx's body limit for $limit_setting: $body_bytes"; exit 1; }
sed -e "s/\${FERRY_PROXY_BODY_BYTES}/$body_bytes/g" \
    -e "s/server ferry:8000;/server 127.0.0.1:$ferry_port;/" \
    -e "s/listen 8080;/listen 127.0.0.1:$proxy_port;/" \
    docker/nginx/ferry.conf.template > "$work/nginx/ferry.conf"
cat > "$work/nginx/nginx.conf" <<CONF
$( [ "$(id -u)" = 0 ] && echo "user root root;" )
daemon off;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 256; }
http {
    access_log off;
    client_body_temp_path $work/nginx/body;
    proxy_temp_path $work/nginx/proxy;
    include $work/nginx/ferry.conf;
}
CONF
nginx -t -q -c "$work/nginx/nginx.conf" -p "$work/nginx"
nginx -c "$work/nginx/nginx.conf" -p "$work/nginx" &
pids+=($!)
proxy="http://127.0.0.1:$proxy_port"
wait_for "$proxy/health"

head -c 5000000 /dev/urandom > "$work/file.bin"
sha=$(sha256sum "$work/file.bin" | cut -d' ' -f1)
# chunked, so nothing tells nginx the size up front: it must stream the body through
stored=$(curl -fsS -H 'Transfer-Encoding: chunked' -H 'Content-Type: application/octet-stream' \
  --data-binary @"$work/file.bin" "$proxy/files/upload/stream/async_read_and_async_write")
id=$(sed -n 's/.*"id":"\([0-9a-f-]*\)".*/\1/p' <<<"$stored")
grep -q "\"sha256\":\"$sha\"" <<<"$stored" || { echo "upload through the proxy: $stored"; exit 1; }
echo "ok: a chunked upload streams through the proxy and is stored whole"

got=$(curl -fsS "$proxy/files/download/stream/async_read/$id" | sha256sum | cut -d' ' -f1)
[ "$got" = "$sha" ] || { echo "download through the proxy differs"; exit 1; }
range=$(curl -fsS -o /dev/null -w '%{http_code} %{size_download}' -H 'Range: bytes=0-99' "$proxy/files/download/file/$id")
[ "$range" = "206 100" ] || { echo "range through the proxy: $range"; exit 1; }
echo "ok: downloads and ranges come back through the proxy"

# one byte over ferry's limit is within nginx's (which allows the envelope): ferry itself answers
status=$(head -c $((limit + 1)) /dev/zero | curl -sS -o "$work/413" -w '%{http_code} %{content_type}' --data-binary @- \
  "$proxy/files/upload/stream/async_read_and_disk_write")
[ "$status" = "413 application/json" ] && grep -q '"error":"payload_too_large"' "$work/413" \
  || { echo "upload one byte over the limit through the proxy: $status $(head -c 300 "$work/413")"; exit 1; }
echo "ok: a body one byte over ferry's limit gets ferry's JSON 413 through the proxy"

# over nginx's limit too: nginx answers, in ferry's JSON shape
status=$(head -c $((body_bytes + 1)) /dev/zero | curl -sS -o "$work/413" -w '%{http_code} %{content_type}' --data-binary @- \
  "$proxy/files/upload/stream/async_read_and_disk_write")
[ "$status" = "413 application/json" ] && grep -q '"error":"payload_too_large"' "$work/413" \
  || { echo "upload over the proxy's limit: $status $(head -c 300 "$work/413")"; exit 1; }
echo "ok: a body over the proxy's own limit gets a JSON 413 from nginx"

# a resumable (tus) upload: the creation's Location, a chunked PATCH streamed through (nginx must not buffer
# it), HEAD's offset, and a second PATCH that completes it
tus=(-H 'Tus-Resumable: 1.0.0')
location=$(curl -fsS -o /dev/null -w '%header{location}' "${tus[@]}" -X POST -H "Upload-Length: 5000000" "$proxy/files/tus/")
head -c 3000000 "$work/file.bin" | curl -fsS "${tus[@]}" -X PATCH -H 'Upload-Offset: 0' -H 'Transfer-Encoding: chunked' \
  -H 'Content-Type: application/offset+octet-stream' --data-binary @- "$proxy$location"
offset=$(curl -fsS -I "${tus[@]}" "$proxy$location" | tr -d '\r' | sed -n 's/^upload-offset: //Ip')
[ "$offset" = 3000000 ] || { echo "tus offset through the proxy: $offset"; exit 1; }
tail -c +3000001 "$work/file.bin" | curl -fsS -D "$work/tus.head" "${tus[@]}" -X PATCH -H 'Upload-Offset: 3000000' \
  -H 'Content-Type: application/offset+octet-stream' --data-binary @- "$proxy$location"
tus_id=$(tr -d '\r' <"$work/tus.head" | sed -n 's/^ferry-file-id: //Ip')
got=$(curl -fsS "$proxy/files/download/stream/sync_read/$tus_id" | sha256sum | cut -d' ' -f1)
[ "$got" = "$sha" ] || { echo "tus upload through the proxy: stored ${got:-nothing} for $sha"; exit 1; }
echo "ok: a tus upload in two PATCHes, one chunked, goes through the proxy and is stored whole"

# ferry trusts this nginx (127.0.0.1): the client address it logs is the one nginx saw (curl's, from another
# loopback address), never one the client wrote itself
curl -fsS -o /dev/null --interface 127.0.0.2 -H 'X-Request-Id: spoof-1' -H 'Forwarded: for=203.0.113.9' -H 'X-Forwarded-For: 198.51.100.7' \
  "$proxy/files"
for _ in $(seq 50); do grep -q 'ferry::access spoof-1' "$work/ferry.log" && break; sleep 0.1; done
line=$(grep 'ferry::access spoof-1' "$work/ferry.log" || true)
case "$line" in
  *"] 127.0.0.2 \"GET /files\""*) echo "ok: the logged client is the one nginx saw, not what the client claimed" ;;
  *) echo "access line through the proxy: ${line:-none}"; exit 1 ;;
esac
echo "proxy: 6 passed, 0 failed"
