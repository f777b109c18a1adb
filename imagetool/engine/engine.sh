#!/usr/bin/env bash
# Install, start, stop and inspect the Docker engine that builds the image, and the host tools
# beside it. Run as `python -m imagetool engine VERB` (or directly: it needs no venv):
#
#   install      # idempotent; Debian hosts only
#   start        # idempotent; containerd + dockerd in the background
#   stop
#   status
#   host-tools   # idempotent: mmdebstrap, diffoscope, zstd, gpg when missing
#
# Why not the host's own packages: Debian 12's docker.io (20.10) ships a BuildKit too old for
# `--output type=oci,rewrite-timestamp=true`. Debian 13's docker.io / docker-buildx / containerd
# install on Debian 12 (libc6 >= 2.34). Which ones, and every dependency a fresh host lacks, are
# kept in the store (image/engine.toml, store/engine/debs): `install` takes them from there
# (`python -m imagetool store install-engine`), so it needs no Debian mirror once the store is filled.
set -euo pipefail

MIN_ENGINE_MAJOR=26          # first engine whose BuildKit (0.13) has rewrite-timestamp
LOG_DIR="${LOCKSTEP_DOCKER_LOG_DIR:-/var/log/lockstep-docker}"
DAEMON_JSON=/etc/docker/daemon.json
START_TIMEOUT="${LOCKSTEP_DOCKER_START_TIMEOUT:-60}"
PYTHON="${LOCKSTEP_PYTHON:-python3}"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

log() { printf 'docker-engine: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Where a non-Debian host gets an engine: printed instead of guessing at its package manager.
print_manual_install() {
    cat >&2 <<'EOF'
docker-engine: this host is not Debian/apt-based; install these yourself, then rerun `make engine`:
  - Docker Engine >= 26.1 (dockerd) with its BuildKit >= 0.13 (built in), and containerd >= 1.7
  - the docker CLI and the buildx plugin >= 0.13 (`docker buildx version`)
  - the containerd image store enabled: /etc/docker/daemon.json =
      {"features": {"containerd-snapshotter": true}}
    (Docker Desktop: Settings > General > "Use containerd for pulling and storing images")
  - mmdebstrap (Debian/Ubuntu package) to build the base root filesystem, or see README
    "Registry base pinned by digest" for the alternative.
EOF
}

is_debian() { [[ -r /etc/debian_version ]] && command -v apt-get >/dev/null && command -v dpkg >/dev/null; }

# Major version of the installed engine, or 0.
engine_major() {
    local v
    command -v dockerd >/dev/null || { echo 0; return; }
    v="$(dockerd --version 2>/dev/null | sed -n 's/^Docker version \([0-9]*\)\..*/\1/p')"
    echo "${v:-0}"
}

engine_ok() {
    [[ "$(engine_major)" -ge "$MIN_ENGINE_MAJOR" ]] \
        && command -v containerd >/dev/null \
        && docker buildx version >/dev/null 2>&1
}

# mmdebstrap (re-deriving the base, `make lock-base`) and zstd (reading the image's layers).
tools_ok() { command -v mmdebstrap >/dev/null && command -v zstd >/dev/null; }

# Major version of the engine that answers (a local dockerd, a mounted socket, DOCKER_HOST), or 0.
server_major() {
    local v
    v="$(timeout 5 docker version --format '{{.Server.Version}}' 2>/dev/null || true)"
    echo "${v%%.*}" | grep -E '^[0-9]+$' || echo 0
}

cmd_install() {
    # No dockerd here, but an engine answers that is new enough (a chroot or container given the
    # host's socket): use it as it is, install nothing beside it.
    if ! command -v dockerd >/dev/null && [[ "$(server_major)" -ge "$MIN_ENGINE_MAJOR" ]] \
        && docker buildx version >/dev/null 2>&1; then
        log "using the engine that answers ($(docker version --format '{{.Server.Version}}')); nothing to install"
        return 0
    fi
    if engine_ok && tools_ok; then
        log "engine already installed: $(dockerd --version), buildx $(docker buildx version | awk '{print $2}')"
        return 0
    fi
    if ! is_debian; then print_manual_install; exit 1; fi
    [[ "$(id -u)" -eq 0 ]] || die "install needs root (dpkg)"
    # From the store (dvc pull, or the mirror the first time: it says which), hash-checked.
    # A host whose engine is fine (e.g. Docker's own packages) gets only the tools, so nothing
    # here replaces or conflicts with it.
    local only=()
    engine_ok && only=(--tools-only)
    (cd "$REPO" && "$PYTHON" -m imagetool store install-engine "${only[@]}")
    engine_ok || die "engine installed but not usable: $(dockerd --version 2>&1)"
    tools_ok || die "mmdebstrap or zstd still missing after the install"
    log "installed $(dockerd --version)"
}

write_daemon_json() {
    # The containerd image store lets the built-in `docker` buildx driver export OCI tarballs.
    local want='{"features": {"containerd-snapshotter": true}}'
    mkdir -p "$(dirname "$DAEMON_JSON")"
    if [[ -f "$DAEMON_JSON" ]] && python3 - "$DAEMON_JSON" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
sys.exit(0 if d.get("features", {}).get("containerd-snapshotter") is True else 1)
EOF
    then return 0; fi
    if [[ -s "$DAEMON_JSON" ]]; then
        # Keep the user's other settings; only add the feature flag.
        python3 - "$DAEMON_JSON" <<'EOF'
import json, sys
p = sys.argv[1]
d = json.load(open(p))
d.setdefault("features", {})["containerd-snapshotter"] = True
open(p, "w").write(json.dumps(d, indent=2) + "\n")
EOF
    else
        echo "$want" >"$DAEMON_JSON"
    fi
}

docker_up() { timeout 5 docker info >/dev/null 2>&1; }

# The program a PID runs: /proc/PID/exe's file name (" (deleted)" once upgraded in place), else
# its comm (the kernel's 15-character name, when exe is not readable).
pid_program() {
    local exe
    if exe="$(readlink "/proc/$1/exe" 2>/dev/null)"; then
        exe="${exe% (deleted)}"
        echo "${exe##*/}"
    else
        cat "/proc/$1/comm" 2>/dev/null
    fi
}

# PID of a daemon we started, if still alive and still that program: a stale PID file whose number
# now belongs to another process names nothing of ours.
alive_pid() {
    local f="$LOG_DIR/$1.pid" pid
    [[ -r "$f" ]] || return 1
    pid="$(cat "$f")"
    [[ "$pid" =~ ^[1-9][0-9]*$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    [[ "$(pid_program "$pid")" == "$1" ]] || return 1
    echo "$pid"
}

cmd_start() {
    if docker_up; then
        if docker info --format '{{.DriverStatus}}' 2>/dev/null | grep -q 'io.containerd.snapshotter'; then
            log "engine already running"; return 0
        fi
        die "a Docker engine is running without the containerd image store; enable it in $DAEMON_JSON and restart it"
    fi
    engine_ok || die "no usable engine installed; run: make engine"
    [[ "$(id -u)" -eq 0 ]] || die "start needs root (run dockerd)"
    write_daemon_json
    mkdir -p "$LOG_DIR"

    if ! alive_pid containerd >/dev/null && ! pgrep -x containerd >/dev/null; then
        setsid containerd >>"$LOG_DIR/containerd.log" 2>&1 </dev/null &
        echo $! >"$LOG_DIR/containerd.pid"
        for _ in $(seq 1 50); do [[ -S /run/containerd/containerd.sock ]] && break; sleep 0.2; done
        [[ -S /run/containerd/containerd.sock ]] || die "containerd did not start; see $LOG_DIR/containerd.log"
    fi
    if ! alive_pid dockerd >/dev/null; then
        rm -f /var/run/docker.pid
        setsid dockerd --containerd=/run/containerd/containerd.sock \
            >>"$LOG_DIR/dockerd.log" 2>&1 </dev/null &
        echo $! >"$LOG_DIR/dockerd.pid"
    fi
    local waited=0
    until docker_up; do
        alive_pid dockerd >/dev/null || die "dockerd exited; last log lines:
$(tail -n 20 "$LOG_DIR/dockerd.log")"
        (( waited++ < START_TIMEOUT )) || die "docker info did not answer within ${START_TIMEOUT}s; see $LOG_DIR/dockerd.log"
        sleep 1
    done
    log "engine running: $(docker version --format '{{.Server.Version}}'); logs in $LOG_DIR"
}

stop_one() {
    local name="$1" pid stale
    if ! pid="$(alive_pid "$name")"; then
        if stale="$(cat "$LOG_DIR/$name.pid" 2>/dev/null)" && kill -0 "$stale" 2>/dev/null; then
            log "stale $LOG_DIR/$name.pid: PID $stale is $(pid_program "$stale"), not $name; left running"
        fi
        rm -f "$LOG_DIR/$name.pid"
        return 0
    fi
    kill "$pid"
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    rm -f "$LOG_DIR/$name.pid"
    log "stopped $name ($pid)"
}

cmd_stop() {
    # Only the daemons this script started (by recorded PID).
    stop_one dockerd
    stop_one containerd
}

cmd_status() {
    local rc=0
    if engine_ok; then log "installed: $(dockerd --version)"; else log "installed: no usable engine"; rc=1; fi
    if docker_up; then
        log "running: server $(docker version --format '{{.Server.Version}}'), buildx $(docker buildx version | awk '{print $2}')"
    else
        log "running: no"; rc=1
    fi
    return "$rc"
}

# Host tools the image build needs besides the engine:
#   mmdebstrap          builds the base root filesystem from Debian packages
#   diffoscope-minimal  file-level diff when `make verify` finds two builds differ
#   zstd                reads the image's zstd-compressed layers (size, layer diffs)
#   gpg                 the InRelease trust tests sign with a throwaway key (gpgv, which checks, comes with apt)
#   qemu-user-static    runs the pipeline on an emulated CPU (tests/integration/pipeline/test_qemu_cpu.py), and
#                       linux/arm64 RUN steps and containers through binfmt_misc (cmd_binfmt)
#   arch-test           mmdebstrap's check that a foreign architecture (arm64) can run here
cmd_host_tools() {
    local need=()
    command -v mmdebstrap >/dev/null || need+=(mmdebstrap)
    command -v diffoscope >/dev/null || need+=(diffoscope-minimal)
    command -v zstd >/dev/null || need+=(zstd)
    command -v gpg >/dev/null || need+=(gpg)
    command -v qemu-x86_64-static >/dev/null || need+=(qemu-user-static)
    command -v arch-test >/dev/null || need+=(arch-test)
    [[ ${#need[@]} -eq 0 ]] && { cmd_binfmt; return 0; }
    is_debian || die "not a Debian host; install ${need[*]} (Debian/Ubuntu package names) yourself"
    [[ "$(id -u)" -eq 0 ]] || die "host-tools needs root (apt-get)"
    log "installing ${need[*]}"
    apt-get -o DPkg::Lock::Timeout=600 -qq update
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
        --no-install-recommends "${need[@]}" >/dev/null
    cmd_binfmt
}

# The aarch64 handler with the F flag (the kernel keeps the interpreter open, so it works inside
# containers too). Lasts until the machine goes; nothing persists it. Idempotent.
cmd_binfmt() {
    local dir=/proc/sys/fs/binfmt_misc conf=/usr/lib/binfmt.d/qemu-aarch64.conf
    [[ "$(uname -m)" == aarch64 ]] && return 0
    [[ -e "$dir/qemu-aarch64" ]] && return 0
    [[ "$(id -u)" -eq 0 ]] || die "registering the aarch64 binfmt handler needs root"
    [[ -r "$conf" ]] || die "$conf missing: install qemu-user-static (make host-tools)"
    [[ -e "$dir/register" ]] || mount -t binfmt_misc binfmt_misc "$dir" \
        || die "cannot mount binfmt_misc on $dir"
    [[ -e "$dir/qemu-aarch64" ]] || cat "$conf" > "$dir/register" || die "cannot register $conf"
    log "binfmt: registered qemu-aarch64 (linux/arm64 builds and containers run emulated)"
}

case "${1:-}" in
    host-tools) cmd_host_tools ;;
    binfmt) cmd_binfmt ;;
    install) cmd_install ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    *) echo "usage: python -m imagetool engine install|start|stop|status|host-tools|binfmt" >&2; exit 2 ;;
esac
