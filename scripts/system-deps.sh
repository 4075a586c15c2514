#!/usr/bin/env bash
# Debian libraries for headless MuJoCo (EGL), video encoding, openssl for the TLS tests, and chromium for the HTML page tests. Installs only what is missing,
# and only as root; otherwise it says what to install.
set -euo pipefail
packages=(libegl1 libgl1 libgl1-mesa-dri ffmpeg openssl chromium)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "vla: please install: sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "vla: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
