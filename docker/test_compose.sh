#!/usr/bin/env bash
# The compose deployment, built and run for real. There is no Docker engine on the development and CI machines:
# podman builds and runs the same images, and Debian's docker-compose 1.29 drives it through podman's
# Docker-compatible socket, with docker/Dockerfile and docker/compose.yaml unchanged. The base images, which
# cannot be pulled here, are stand-ins made by docker/standins/make.sh and kept between runs.
#   docker/test_compose.sh      (as root; needs podman, debootstrap, docker-compose, curl, python3 and a rustup
#                                toolchain; loopback and its own container network only; stops what it starts)
# It works on the compose project "ferry" and removes whatever of it an interrupted earlier run left, so it is
# not for a machine where a real ferry deployment runs under podman. Runs on one machine take turns (a lock).
#
#  1. makes or reuses the stand-in base images;
#  2. builds the image, brings the stack up and waits until the health check says healthy;
#  3. through the published port: every upload kind and download strategy that the served OpenAPI document lists
#     (its x-ferry extensions), listing and delete;
#  4. restart, then down (volumes kept) and up: the files are still there;
#  5. a stop while a large upload is in flight: it completes, or it leaves nothing;
#  6. a bind mount in place of the volume: owned by root, ferry says why it cannot start; owned by ferry's uid, or
#     with `user:` set to its owner, ferry works;
#  7. the proxy profile: the same through nginx, a multipart upload at the limit passes, one byte over gets
#     ferry's JSON 413;
#  8. the bench profile: a short pass against its own ferry, which leaves the deployed one untouched;
#  9. reports the image size and the time from `up` to healthy, tears everything down, volumes included.
# Podman runs health checks from systemd timers, which these machines lack, so the test runs them itself
# (`podman healthcheck run`, every second) for `depends_on: condition: service_healthy` to move on.
set -euo pipefail
cd "$(dirname "$0")/.."

cache=${FERRY_CI_CACHE:-/var/cache/ferry-ci}
project=ferry
mkdir -p "$cache"
exec 9>"$cache/lock"
flock -w 3600 9 || { echo "compose: another run holds $cache/lock"; exit 1; }

work=$(mktemp -d)
log=$work/compose.log
passed=0
failed=0
service_pid=
health_pid=
finished=

# podman as root here: runc (crun refuses these hybrid cgroups), and default ulimits a container may have
cat >"$cache/containers.conf" <<'CONF'
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]
[engine]
runtime = "runc"
CONF
export CONTAINERS_CONF=$cache/containers.conf
export DOCKER_HOST=unix://$work/podman.sock
# the project's name comes from docker/.env, the ports are free ones, and the limits are small enough to test at
unset COMPOSE_PROJECT_NAME COMPOSE_FILE COMPOSE_PROFILES FERRY_BIND
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
FERRY_PORT=$(free_port)
FERRY_PROXY_PORT=$(free_port)
export FERRY_PORT FERRY_PROXY_PORT
# spelled with a unit, as ferry takes it and nginx does not; the buffered strategies get the same limit, so every
# multipart endpoint is tested at it
export FERRY_MAX_UPLOAD_BYTES=24MiB FERRY_MAX_BUFFERED_BYTES=24MiB
limit=$((24 << 20))
export BENCH_SIZE=65536 BENCH_DURATION=1 BENCH_CONNECTIONS=4 BENCH_THREADS=1
base=http://127.0.0.1:$FERRY_PORT
proxy=http://127.0.0.1:$FERRY_PROXY_PORT

compose() { docker-compose -f docker/compose.yaml "$@" >>"$log" 2>&1; }
all_profiles() { compose --profile proxy --profile bench "$@"; }
containers() { podman ps -a -q --filter "label=com.docker.compose.project=$project" "$@"; }
container_of() { podman ps -q --filter "label=com.docker.compose.project=$project" --filter "label=com.docker.compose.service=$1"; }

ok() { passed=$((passed + 1)); echo "ok: $*"; }
bad() { failed=$((failed + 1)); echo "FAILED: $*"; }
# check "what" command...: one real check, counted
check() { local what=$1; shift; if "$@"; then ok "$what"; else bad "$what"; fi; }
die() {
  echo "FAILED: $*"
  echo "--- last lines of the compose log"; tail -n 40 "$log"
  echo "--- last lines of podman's service log"; tail -n 20 "$work/podman.log"
  exit 1
}

# Removes the project's containers, volumes and networks with podman itself, which works even when the socket
# is gone (timeout signals the whole process group, podman's service included).
remove_project() {
  local ids
  ids=$(containers)
  [ -z "$ids" ] || podman rm -f -v -t 5 $ids >/dev/null 2>&1 || true
  ids=$(podman volume ls -q --filter "label=com.docker.compose.project=$project")
  [ -z "$ids" ] || podman volume rm -f $ids >/dev/null 2>&1 || true
  ids=$(podman network ls -q --filter "label=com.docker.compose.project=$project")
  [ -z "$ids" ] || podman network rm -f $ids >/dev/null 2>&1 || true
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  [ -z "$health_pid" ] || kill "$health_pid" 2>/dev/null || true
  if [ -n "$service_pid" ]; then
    remove_project
    kill "$service_pid" 2>/dev/null || true
  fi
  wait 2>/dev/null || true
  rm -rf "$work"
  if [ -z "$finished" ]; then printf '\ncompose: %d passed, %d failed\n' "$passed" "$((failed + 1))"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 143' INT TERM

echo "podman: $(podman --version)"
echo "docker-compose: $(docker-compose --version)"
step() { printf '\n--- %s\n' "$*"; }

step "1. stand-in base images"
docker/standins/make.sh

podman system service --time=0 "$DOCKER_HOST" >"$work/podman.log" 2>&1 &
service_pid=$!
for _ in $(seq 100); do [ -S "$work/podman.sock" ] && break; sleep 0.1; done
[ -S "$work/podman.sock" ] || die "podman system service did not open its socket"

if [ -n "$(containers)" ] || podman volume exists "${project}_ferry-data"; then
  echo "removing what an interrupted earlier run left of the project $project"
  remove_project
fi

drive_health_checks() {
  while :; do
    for id in $(podman ps -q --filter "label=com.docker.compose.project=$project"); do
      podman healthcheck run "$id" >/dev/null 2>&1 || true
    done
    sleep 1
  done
}
drive_health_checks &
health_pid=$!

health_of() { podman inspect --format '{{.State.Health.Status}}' "$1" 2>/dev/null || echo gone; }
# wait_healthy SERVICE [SECONDS]: until its container reports healthy
wait_healthy() {
  local id
  for _ in $(seq $((${2:-60} * 5))); do
    id=$(container_of "$1")
    if [ -n "$id" ] && [ "$(health_of "$id")" = healthy ]; then return 0; fi
    sleep 0.2
  done
  echo "$1 is not healthy: $(health_of "$(container_of "$1")")"
  return 1
}

step "2. build and up"
image_before=$(podman image inspect --format '{{.Id}}' ferry:latest 2>/dev/null || true)
started=$SECONDS
compose build || die "docker-compose build"
echo "built ferry:latest in $((SECONDS - started)) s"
image_after=$(podman image inspect --format '{{.Id}}' ferry:latest)
# the image this build replaced is left without a name: drop it, so runs do not pile images up
if [ -n "$image_before" ] && [ "$image_before" != "$image_after" ]; then podman rmi "$image_before" >/dev/null 2>&1 || true; fi

up_started=$(date +%s.%N)
compose up -d || die "docker-compose up"
wait_healthy ferry 120 || die "ferry never turned healthy"
healthy_after=$(python3 -c "import time; print(f'{time.time() - $up_started:.1f}')")
ok "docker-compose up: ferry healthy ${healthy_after} s after up"
ferry_id=$(container_of ferry)

check "the project is called $project (docker/.env) and its volume is ${project}_ferry-data" \
  podman volume exists "${project}_ferry-data"
published=$(podman port "$ferry_id" 8000/tcp)
check "the port is published on 127.0.0.1 only ($published)" [ "$published" = "127.0.0.1:$FERRY_PORT" ]
check "ferry runs as uid 10001, not root" [ "$(podman top "$ferry_id" huser | tail -n +2 | tr -d ' ')" = 10001 ]

step "3. every upload kind and download strategy, listing, delete"
curl -fsS --max-time 30 "$base/api-docs/openapi.json" >"$work/openapi.json" || die "no OpenAPI document at $base"
# one line per operation: "upload BODY STRATEGY PATH" or "download - STRATEGY PATH"
python3 - "$work/openapi.json" >"$work/endpoints" <<'PY'
import json, sys
spec = json.load(open(sys.argv[1]))
for path, item in spec["paths"].items():
    for method, op in item.items():
        ferry = op.get("x-ferry") if isinstance(op, dict) else None
        if ferry and method == "post" and ferry["kind"] == "upload":
            print("upload", ferry["body"], ferry["strategy"], path)
        elif ferry and method == "get" and ferry["kind"] == "download":
            print("download", "-", ferry["strategy"], path)
PY
mapfile -t uploads < <(grep '^upload ' "$work/endpoints" | cut -d' ' -f2-)
mapfile -t downloads < <(grep '^download ' "$work/endpoints" | cut -d' ' -f3-)
kinds=$(printf '%s\n' "${uploads[@]}" | cut -d' ' -f1 | sort | uniq -c | awk '{printf "%s%d %s", sep, $1, $2; sep=", "}')
check "the served document lists ${#uploads[@]} uploads ($kinds) and ${#downloads[@]} downloads" \
  [ "$(printf '%s\n' "${uploads[@]}" | cut -d' ' -f1 | sort -u | tr '\n' ' ')" = "json multipart raw " -a "${#downloads[@]}" -gt 0 ]

json_field() { python3 -c 'import json, sys; print(json.load(open(sys.argv[1])).get(sys.argv[2], ""))' "$1" "$2" 2>/dev/null; }

# upload URL BODY FILE: sends FILE the way the endpoint takes it; the answer is in $work/answer, prints the status
upload() {
  local url=$1 body=$2 file=$3 name
  name=$(basename "$file")
  case "$body" in
    raw) curl -sS --max-time 120 -o "$work/answer" -w '%{http_code}' -H 'Content-Type: application/octet-stream' \
           --data-binary @"$file" "$url?filename=$name" ;;
    multipart) curl -sS --max-time 120 -o "$work/answer" -w '%{http_code}' \
           -F "file=@$file;type=application/octet-stream;filename=$name" "$url" ;;
    json) python3 -c 'import base64, json, os, sys
print(json.dumps({"filename": os.path.basename(sys.argv[1]), "data": base64.b64encode(open(sys.argv[1], "rb").read()).decode()}))' \
           "$file" >"$file.json"
         curl -sS --max-time 120 -o "$work/answer" -w '%{http_code}' -H 'Content-Type: application/json' \
           --data-binary @"$file.json" "$url" ;;
  esac
}

# stored FILE: the answer in $work/answer describes FILE, stored whole
stored() {
  [ "$(json_field "$work/answer" sha256)" = "$(sha256sum "$1" | cut -d' ' -f1)" ] \
    && [ "$(json_field "$work/answer" size)" = "$(stat -c %s "$1")" ]
}

# upload_all BASE WHERE: every upload kind with its own random file; sets ids[] and files[]
upload_all() {
  local target=$1 where=$2 body strategy path file status i=0
  ids=()
  files=()
  for entry in "${uploads[@]}"; do
    read -r body strategy path <<<"$entry"
    i=$((i + 1))
    # sizes that are not a multiple of any buffer, different for each
    file="$work/upload-$i${where// /-}.bin"
    head -c $((300007 + i * 4099)) /dev/urandom >"$file"
    status=$(upload "$target$path" "$body" "$file")
    if [ "$status" = 201 ] && stored "$file"; then
      ok "upload $strategy ($body)$where: 201, size and sha256 as sent"
      ids+=("$(json_field "$work/answer" id)")
      files+=("$file")
    else
      bad "upload $strategy ($body)$where: $status $(head -c 300 "$work/answer")"
    fi
  done
}

# download_all BASE WHERE: every download strategy returns every uploaded file byte for byte
download_all() {
  local target=$1 where=$2 strategy path i same
  for entry in "${downloads[@]}"; do
    read -r strategy path <<<"$entry"
    same=0
    for i in "${!ids[@]}"; do
      curl -fsS --max-time 60 -o "$work/got" "$target${path//\{id\}/${ids[$i]}}" && cmp -s "$work/got" "${files[$i]}" \
        && same=$((same + 1))
    done
    check "download $strategy$where: ${same} of ${#ids[@]} files byte for byte" [ "$same" = "${#ids[@]}" -a "$same" -gt 0 ]
  done
}

# listed BASE: the listing holds every id in ids[] (with the sha256 of its file)
listed() {
  local target=$1
  curl -fsS --max-time 30 "$target/files?limit=1000" >"$work/listing" || return 1
  python3 - "$work/listing" "${ids[@]}" <<'PY'
import json, sys
listed = {f["id"] for f in json.load(open(sys.argv[1]))}
missing = [i for i in sys.argv[2:] if i not in listed]
if missing:
    print("not listed:", missing)
sys.exit(1 if missing else 0)
PY
}

# intact BASE: every file in ids[] is listed and downloads byte for byte (first strategy)
intact() {
  local target=$1 path i
  read -r _ path <<<"${downloads[0]}"
  listed "$target" || return 1
  for i in "${!ids[@]}"; do
    curl -fsS --max-time 60 -o "$work/got" "$target${path//\{id\}/${ids[$i]}}" && cmp -s "$work/got" "${files[$i]}" || return 1
  done
}

upload_all "$base" ""
download_all "$base" ""
check "listing shows all ${#ids[@]} uploaded files" listed "$base"

# delete the last one: 204, then 404 from its metadata and from every download strategy
victim=${ids[-1]}
deleted() {
  local status path
  status=$(curl -sS --max-time 30 -o /dev/null -w '%{http_code}' -X DELETE "$base/files/$victim")
  [ "$status" = 204 ] || { echo "delete: $status"; return 1; }
  [ "$(curl -sS --max-time 30 -o /dev/null -w '%{http_code}' "$base/files/$victim")" = 404 ] || return 1
  for entry in "${downloads[@]}"; do
    read -r _ path <<<"$entry"
    [ "$(curl -sS --max-time 30 -o /dev/null -w '%{http_code}' "$base${path//\{id\}/$victim}")" = 404 ] || return 1
  done
}
check "delete: 204, then 404 from the metadata and every download" deleted
unset 'ids[-1]' 'files[-1]'

step "4. restart, down and up"
compose restart ferry || die "docker-compose restart"
wait_healthy ferry 60 || die "ferry not healthy after restart"
check "after restart: all ${#ids[@]} files listed and intact" intact "$base"

compose down || die "docker-compose down"
check "down without -v keeps the volume ${project}_ferry-data" podman volume exists "${project}_ferry-data"
compose up -d || die "docker-compose up after down"
wait_healthy ferry 60 || die "ferry not healthy after down and up"
check "after down and up: all ${#ids[@]} files listed and intact" intact "$base"

step "5. stop while a large upload is in flight"
raw_path=$(printf '%s\n' "${uploads[@]}" | awk '$1 == "raw" {print $3; exit}')
big=$work/in-flight.bin
head -c "$limit" /dev/urandom >"$big"
# about 8 s at 3 MB/s: the stop comes 2 s in, well inside actix's 30 s of grace
curl -sS --max-time 120 --limit-rate 3M -o "$work/in-flight.answer" -w '%{http_code}' \
  -H 'Content-Type: application/octet-stream' --data-binary @"$big" "$base$raw_path?filename=in-flight.bin" \
  >"$work/in-flight.status" 2>"$work/in-flight.err" &
upload_pid=$!
sleep 2
stop_started=$SECONDS
compose stop ferry || die "docker-compose stop"
stop_took=$((SECONDS - stop_started))
wait "$upload_pid" || true
status=$(cat "$work/in-flight.status")
volume_dir=$(podman volume inspect --format '{{.Mountpoint}}' "${project}_ferry-data")
left_in_tmp=$(find "$volume_dir/tmp" -mindepth 1 | wc -l)
compose start ferry || die "docker-compose start"
wait_healthy ferry 60 || die "ferry not healthy after the stop"
cp "$work/in-flight.answer" "$work/answer" 2>/dev/null || true
in_flight_outcome() {
  local listed_as
  listed_as=$(curl -fsS --max-time 30 "$base/files?limit=1000" | grep -c '"filename":"in-flight.bin"' || true)
  [ "$left_in_tmp" = 0 ] || { echo "$left_in_tmp entries in tmp/ after the stop"; return 1; }
  if [ "$status" = 201 ]; then
    echo "the upload finished during the stop (201; the stop took $stop_took s)"
    stored "$big" && [ "$listed_as" = 1 ] && {
      ids+=("$(json_field "$work/answer" id)")
      files+=("$big")
      intact "$base"
    }
  else
    echo "the upload was cut off by the stop ($status $(cat "$work/in-flight.err")); the stop took $stop_took s"
    [ "$listed_as" = 0 ]
  fi
}
check "a stop during an upload: it completes whole, or leaves nothing (no file, empty tmp/)" in_flight_outcome

step "6. a bind mount in place of the named volume"
bind=$work/bind
mkdir -p "$bind"
cat >"$work/bind.yaml" <<YAML
services:
  ferry:
    volumes:
      - $bind:/data
YAML
bound() { docker-compose -f docker/compose.yaml -f "$work/bind.yaml" "$@" >>"$log" 2>&1; }
says_why() {
  local id
  for _ in $(seq 60); do
    id=$(container_of ferry)
    if [ -n "$id" ] && podman logs "$id" 2>&1 | grep -q 'ferry: cannot use data directory /data: '; then
      podman logs "$id" 2>&1 | grep -m1 'ferry: cannot use data directory /data: '
      [ "$(health_of "$id")" != healthy ]
      return
    fi
    sleep 0.5
  done
  return 1
}
# docker-compose 1.29 carries the old container's /data over to a recreated one ("Host mapping ... has no
# effect"), so every change of what /data is starts from a removed container; removing it also ends the restart
# loop of a ferry that cannot start
bound rm -sf ferry || die "rm ferry"
bound up -d ferry || die "up with a bind mount"
check "a root-owned bind mount: ferry exits saying it cannot use /data, and is not healthy" says_why
bound rm -sf ferry || die "rm ferry"

bind_works() {
  local file=$work/bind-check.bin status
  wait_healthy ferry 60 || return 1
  head -c 100003 /dev/urandom >"$file"
  status=$(upload "$base$raw_path" raw "$file")
  [ "$status" = 201 ] && stored "$file" || { echo "upload: $status"; return 1; }
  # the file and its metadata are on the host, owned by the user ferry runs as
  [ -n "$(find "$bind/files" -type f -user "$1" 2>/dev/null)" ] \
    && [ -z "$(find "$bind" -not -user "$1" -not -path "$bind")" ]
}
chown 10001:10001 "$bind"
bound up -d ferry || die "up with a bind mount owned by 10001"
check "a bind mount owned by uid 10001 (chown -R 10001:10001 DIR): ferry stores files there" bind_works 10001
bound rm -sf ferry || die "rm ferry"

rm -rf "$bind" && mkdir -p "$bind" && chown 4242:4242 "$bind"
cat >>"$work/bind.yaml" <<'YAML'
    user: "4242:4242"
YAML
bound up -d ferry || die "up with a bind mount and user:"
check "a bind mount owned by someone else, with user: set to its owner: ferry stores files there" bind_works 4242
bound rm -sf ferry || die "rm ferry"

compose up -d ferry || die "up with the named volume again"
wait_healthy ferry 60 || die "ferry not healthy on its volume again"
check "back on the named volume: all ${#ids[@]} files listed and intact" intact "$base"

step "7. the proxy profile"
compose --profile proxy up -d || die "up with the proxy"
for _ in $(seq 150); do curl -fsS --max-time 5 -o /dev/null "$proxy/health" 2>/dev/null && break; sleep 0.2; done
proxy_id=$(container_of proxy)
rendered=$(podman exec "$proxy_id" grep -o 'client_max_body_size [0-9]*;' /etc/nginx/conf.d/default.conf || true)
check "nginx's body limit is ferry's 24MiB in bytes plus the 64 KiB envelope ($rendered)" \
  [ "$rendered" = "client_max_body_size $((limit + 65536));" ]
check "the proxy is published on 127.0.0.1 only" [ "$(podman port "$proxy_id" 8080/tcp)" = "127.0.0.1:$FERRY_PROXY_PORT" ]
kept_ids=("${ids[@]}")
kept_files=("${files[@]}")
upload_all "$proxy" " through the proxy"
download_all "$proxy" " through the proxy"

at_limit=$work/at-limit.bin
over_limit=$work/over-limit.bin
head -c "$limit" /dev/urandom >"$at_limit"
{ cat "$at_limit"; printf x; } >"$over_limit"
for entry in "${uploads[@]}"; do
  read -r body strategy path <<<"$entry"
  [ "$body" = multipart ] || continue
  status=$(upload "$proxy$path" multipart "$at_limit")
  if [ "$status" = 201 ] && stored "$at_limit"; then
    ok "multipart $strategy through the proxy: a file exactly at the limit is stored (201)"
  else
    bad "multipart $strategy through the proxy, at the limit: $status $(head -c 300 "$work/answer")"
  fi
  status=$(upload "$proxy$path" multipart "$over_limit")
  if [ "$status" = 413 ] && grep -q '"error":"payload_too_large"' "$work/answer" \
    && grep -q "limit of $limit bytes" "$work/answer"; then
    ok "multipart $strategy through the proxy: one byte over gets ferry's JSON 413"
  else
    bad "multipart $strategy through the proxy, one byte over: $status $(head -c 300 "$work/answer")"
  fi
done
# a body past the envelope too never reaches ferry: nginx refuses it, in ferry's JSON shape
head -c $((limit + 65536 + 1)) /dev/zero >"$work/past-envelope.bin"
status=$(upload "$proxy$raw_path" raw "$work/past-envelope.bin")
check "a body past the limit and the envelope: nginx's 413, as JSON ($status)" \
  grep -q '"error":"payload_too_large"' "$work/answer"
ids=("${kept_ids[@]}")
files=("${kept_files[@]}")

step "8. the bench profile"
curl -fsS --max-time 30 "$base/files?limit=1000" >"$work/before-bench" || die "no listing before the bench"
started=$SECONDS
compose --profile bench build bench || die "building the bench image"
echo "built the bench image in $((SECONDS - started)) s"
started=$SECONDS
if docker-compose -f docker/compose.yaml --profile bench run --rm -T bench >"$work/bench.out" 2>>"$log"; then bench_rc=0; else bench_rc=$?; fi
sections=$(grep -c '^### ' "$work/bench.out" || true)
errors=$(grep -E 'Non-2xx|Socket errors' "$work/bench.out" | sort | uniq -c || true)
echo "bench: exit $bench_rc, $sections wrk runs in $((SECONDS - started)) s${errors:+; $errors}"
check "the bench runs a short pass against its own ferry and exits 0, every answer 2xx" \
  [ "$bench_rc" = 0 -a "$sections" -gt 0 -a -z "$errors" ]
curl -fsS --max-time 30 "$base/files?limit=1000" >"$work/after-bench"
check "the bench wrote nothing into the deployed ferry's volume" cmp -s "$work/before-bench" "$work/after-bench"
bench_ferry=$(container_of bench-ferry)
bench_volume=$(podman inspect --format '{{range .Mounts}}{{if eq .Destination "/data"}}{{.Name}}{{end}}{{end}}' "$bench_ferry")
compose --profile bench rm -sfv bench-ferry || die "removing the bench's ferry"
bench_gone() { [ -z "$(container_of bench-ferry)" ] && [ -n "$bench_volume" ] && ! podman volume exists "$bench_volume"; }
check "rm -sfv bench-ferry removes the bench's ferry and its volume (everything it uploaded)" bench_gone

step "9. report and tear down"
size=$(podman image inspect --format '{{.Size}}' ferry:latest)
base_size=$(podman image inspect --format '{{.Size}}' docker.io/library/debian:bookworm-slim)
mb() { awk -v bytes="$1" 'BEGIN { printf "%.1f MB", bytes / 1e6 }'; }
echo "image ferry:latest: $(mb "$size") ($(mb "$base_size") of it the Debian base stand-in, $(mb $((size - base_size))) ferry's own layers)"
echo "from up to healthy: $healthy_after s (health checks run every second by this test; Docker runs the first after interval=10s)"
all_profiles down -v --remove-orphans || die "docker-compose down -v"
check "down -v leaves no container, volume or network of the project" \
  [ -z "$(containers)" -a -z "$(podman volume ls -q --filter "label=com.docker.compose.project=$project")" \
    -a -z "$(podman network ls -q --filter "label=com.docker.compose.project=$project")" ]

finished=yes
printf '\ncompose: %d passed, %d failed\n' "$passed" "$failed"
[ "$failed" = 0 ]
