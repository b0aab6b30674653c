#!/usr/bin/env bash
# Checks that scripts/setup.sh works on a plain Debian 12 with nothing added:
# makes a minbase root with debootstrap, copies this checkout into it, runs
# scripts/setup.sh there (which installs every package and configures the
# build) and fails if any of it fails, e.g. when a package the build needs is
# missing from setup.sh. A machine that has been used for a while hides such a
# gap; this root cannot. Needs root (chroot, mount) and Debian's mirror.
#
#   scripts/check-fresh-setup.sh [--build]    --build also compiles there
#
# Downloaded .debs are kept in $DASH_FRESH_CACHE (default
# /var/cache/dashnas-fresh) so a second run downloads nothing; the root itself
# is made anew every time and removed afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
src=$PWD
build=0
[[ ${1:-} == --build ]] && build=1

if [[ $(id -u) -ne 0 ]]; then
  echo "check-fresh-setup: needs root (debootstrap, chroot and mount)" >&2
  exit 2
fi
export DEBIAN_FRONTEND=noninteractive
if ! command -v debootstrap >/dev/null; then
  apt-get update -q >/dev/null && apt-get install -y -q debootstrap >/dev/null
fi

cache=${DASH_FRESH_CACHE:-/var/cache/dashnas-fresh}
mkdir -p "$cache/debootstrap" "$cache/apt"
root=$(mktemp -d /var/tmp/dashnas-fresh.XXXXXX)
log=$root.log

mounts=(proc dev var/cache/apt/archives)
cleanup() {
  local m
  for m in "${mounts[@]}"; do umount "$root/$m" 2>/dev/null || true; done
  # Remove the root only when nothing is mounted under it any more: a bind
  # mount of /dev left behind must never be deleted through.
  if ! findmnt -rn -o TARGET | grep -q "^$root/"; then rm -rf "$root"; fi
}
trap cleanup EXIT

SECONDS=0
echo "== debootstrap --variant=minbase bookworm ($root)"
if ! debootstrap --variant=minbase --cache-dir="$cache/debootstrap" bookworm "$root" >"$log" 2>&1; then
  tail -n 20 "$log"; exit 1
fi
echo "   done in ${SECONDS}s"

# The checkout as git sees it (tracked files and new ones not ignored), without
# build outputs. git itself is not in a minbase root.
mkdir -p "$root/root/project"
git ls-files -z --cached --others --exclude-standard |
  (cd "$src" && tar --null -T - -cf - 2>/dev/null) | tar -xf - -C "$root/root/project"

cp /etc/resolv.conf "$root/etc/resolv.conf"
mount -t proc proc "$root/proc"
mount --bind /dev "$root/dev"
mount --bind "$cache/apt" "$root/var/cache/apt/archives"
# A minbase root's apt deletes .debs after installing; keep them for next time.
rm -f "$root/etc/apt/apt.conf.d/docker-clean"
echo 'Binary::apt::APT::Keep-Downloaded-Packages "true";' >"$root/etc/apt/apt.conf.d/01keep-debs"

run_in_root() {
  chroot "$root" /usr/bin/env -i HOME=/root LANG=C.UTF-8 \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    bash -c "cd /root/project && $1"
}

step() {
  echo "== in the fresh root: $1"
  SECONDS=0
  if ! run_in_root "$1" >>"$log" 2>&1; then
    echo "FAILED after ${SECONDS}s; the log's tail:" >&2
    tail -n 25 "$log" >&2
    exit 1
  fi
  echo "   ok in ${SECONDS}s"
}

step scripts/setup.sh
if [[ $build -eq 1 ]]; then
  step 'cmake --build build -j "$(nproc)"'
fi
echo "fresh Debian 12 setup: ok"
