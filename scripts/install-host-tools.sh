#!/usr/bin/env bash
# Host tools the image build needs besides the engine (scripts/docker-engine.sh):
#   mmdebstrap          builds the base root filesystem from Debian packages
#   diffoscope-minimal  file-level diff when `make verify` finds two builds differ
#   zstd                reads the image's zstd-compressed layers (size, layer diffs)
#   gpg                 the InRelease trust tests sign with a throwaway key (gpgv, which checks, comes with apt)
# Idempotent: installs only what is missing. Elsewhere than Debian, says what to install.
set -euo pipefail

need=()
command -v mmdebstrap >/dev/null || need+=(mmdebstrap)
command -v diffoscope >/dev/null || need+=(diffoscope-minimal)
command -v zstd >/dev/null || need+=(zstd)
command -v gpg >/dev/null || need+=(gpg)
[[ ${#need[@]} -eq 0 ]] && exit 0

if [[ ! -r /etc/debian_version ]] || ! command -v apt-get >/dev/null; then
    echo "install-host-tools: not a Debian host; install ${need[*]} (Debian/Ubuntu package names) yourself" >&2
    exit 1
fi
[[ "$(id -u)" -eq 0 ]] || { echo "install-host-tools: needs root: sudo $0" >&2; exit 1; }
echo "install-host-tools: installing ${need[*]}" >&2
apt-get -o DPkg::Lock::Timeout=600 -qq update
DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
    --no-install-recommends "${need[@]}" >/dev/null
