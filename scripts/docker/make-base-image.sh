#!/usr/bin/env bash
# Make a Debian base image without any registry: debootstrap a minimal bookworm with
# Python, then `docker import` it. For air-gapped labs and for CI, where nothing can be pulled.
# Idempotent: does nothing when the image already exists (FORCE=1 rebuilds).
#
#   scripts/docker/make-base-image.sh [IMAGE]        # default vla-base:bookworm
#   MIRROR=http://deb.debian.org/debian SUITE=bookworm scripts/docker/make-base-image.sh
#
# The image has Debian's python3 (3.11 on bookworm), python3-venv, pip and the CA store;
# images/runtime/Dockerfile builds on it with BASE_IMAGE=vla-base:bookworm.
set -euo pipefail

IMAGE="${1:-vla-base:bookworm}"
SUITE="${SUITE:-bookworm}"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
say() { printf '[make-base-image] %s\n' "$*"; }

if [ "${FORCE:-0}" != 1 ] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
    say "$IMAGE already exists (FORCE=1 to rebuild)"
    exit 0
fi
if ! command -v debootstrap >/dev/null 2>&1; then
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq debootstrap >/dev/null
fi

root="$(mktemp -d /tmp/vla-base.XXXXXX)"
cleanup() {
    # debootstrap mounts /proc (and may bind /dev or /sys) inside the root: unmount before
    # removing, or rm -rf would walk into the host's filesystems.
    awk -v r="$root" 'index($2, r) == 1 {print $2}' /proc/mounts | sort -r | while read -r m; do
        $SUDO umount -l "$m" || true
    done
    $SUDO rm -rf --one-file-system "$root" "$root.log"
}
trap cleanup EXIT
start=$(date +%s)
say "debootstrap $SUITE (minbase) into $root"
$SUDO debootstrap --variant=minbase \
    --include=python3,python3-venv,python3-pip,ca-certificates \
    "$SUITE" "$root" "$MIRROR" >"$root.log" 2>&1 || { tail -n 40 "$root.log" >&2; exit 1; }
# Shrink: package lists and caches are not needed in a base image.
$SUDO rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* "$root"/usr/share/man/*
say "importing as $IMAGE"
$SUDO tar -C "$root" --exclude='./proc/*' --exclude='./sys/*' --exclude='./dev/*' -c . | docker import \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["python3"]' \
    --message "debootstrap $SUITE minbase + python3 (vla scripts/docker/make-base-image.sh)" \
    - "$IMAGE" >/dev/null
say "$IMAGE ready in $(( $(date +%s) - start ))s ($(docker image inspect -f '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB", $1/1e6}'))"
