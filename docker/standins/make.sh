#!/usr/bin/env bash
# Makes the base images that docker/Dockerfile, docker/wrk.Dockerfile and docker/compose.yaml name, on a machine
# that cannot pull from a container registry, out of Debian's packages and the host's Rust toolchain, and tags
# each with the exact name those files use, so that they build and run unchanged:
#   docker.io/library/debian:bookworm-slim   debootstrap --variant=minbase, imported (also the bench's base)
#   docker.io/library/rust:1-bookworm        the Debian stand-in + gcc + the host's toolchain and CA bundle
#   docker.io/library/nginx:1.27-bookworm    the Debian stand-in + Debian's nginx + the official entrypoint's ways
# An image that exists is kept while its recipe is the same (a hash of what made it, in the label ferry.standin);
# a fresh machine, or a changed recipe, toolchain or CA bundle, makes it anew.
#   docker/standins/make.sh      (root, podman, debootstrap; test_compose.sh runs it with its CONTAINERS_CONF)
set -euo pipefail
cd "$(dirname "$0")"
cache=${FERRY_CI_CACHE:-/var/cache/ferry-ci}
mirror=${FERRY_DEBIAN_MIRROR:-http://deb.debian.org/debian}
ca_bundle=${FERRY_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
label=ferry.standin
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$cache/debs"

debian=docker.io/library/debian:bookworm-slim
rust=docker.io/library/rust:1-bookworm
nginx=docker.io/library/nginx:1.27-bookworm

recipe() { sha256sum | cut -c1-16; }
current() { podman image inspect --format "{{ index .Labels \"$label\" }}" "$1" 2>/dev/null || true; }

# Makes image $1 with function $2 unless it exists with recipe $3.
ensure() {
  local image=$1 maker=$2 want=$3 started
  if [ "$(current "$image")" = "$want" ]; then
    echo "stand-in $image: reused (recipe $want)"
    return 0
  fi
  started=$SECONDS
  echo "stand-in $image: making (recipe $want)"
  "$maker" "$want"
  echo "stand-in $image: made in $((SECONDS - started)) s"
}

make_debian() {
  local root=$work/rootfs
  if ! debootstrap --variant=minbase --cache-dir="$cache/debs" bookworm "$root" "$mirror" >"$work/debootstrap.log" 2>&1; then
    tail -n 30 "$work/debootstrap.log"
    return 1
  fi
  # as in the official image: deb822 sources with the updates and security suites, and dpkg leaves out
  # documentation, so that images built on it stay small
  rm -f "$root/etc/apt/sources.list"
  cat >"$root/etc/apt/sources.list.d/debian.sources" <<'SOURCES'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
  cat >"$root/etc/dpkg/dpkg.cfg.d/docker" <<'DPKG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
DPKG
  find "$root/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
  rm -rf "$root"/usr/share/{man,info,locale,groff,lintian,linda}/* "$root"/var/lib/apt/lists/* \
    "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb "$root"/var/log/*.log
  tar --numeric-owner -C "$root" -c . \
    | podman import --quiet --change "LABEL $label=$1" --change 'CMD ["bash"]' - "$debian" >/dev/null
  rm -rf "$root"
}

make_rust() {
  mkdir -p "$work/rust"
  cp "$ca_bundle" "$work/rust/ca-certificates.crt"
  podman build --format docker --pull=never --quiet -f rust.Containerfile \
    --build-arg TOOLCHAIN="$(basename "$sysroot")" --volume "$sysroot:/toolchain:ro" \
    --label "$label=$1" -t "$rust" "$work/rust" >/dev/null
}

make_nginx() {
  podman build --format docker --pull=never --quiet -f nginx.Containerfile --label "$label=$1" -t "$nginx" nginx >/dev/null
}

sysroot=$(rustc --print sysroot)
ensure "$debian" make_debian "$(declare -f make_debian | cat - <(echo "$mirror") | recipe)"
base=$(current "$debian")
ensure "$rust" make_rust "$(cat rust.Containerfile "$ca_bundle" <(echo "$base") <(rustc --version) | recipe)"
ensure "$nginx" make_nginx "$(cat nginx.Containerfile nginx/* <(echo "$base") | recipe)"
