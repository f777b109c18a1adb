#!/usr/bin/env bash
# Install, start, stop and inspect the Docker engine that builds the image.
#
#   scripts/docker-engine.sh install   # idempotent; Debian hosts only
#   scripts/docker-engine.sh start     # idempotent; containerd + dockerd in the background
#   scripts/docker-engine.sh stop
#   scripts/docker-engine.sh status
#
# Why not the host's own packages: Debian 12's docker.io (20.10) ships a BuildKit too old for
# `--output type=oci,rewrite-timestamp=true`. Debian 13's docker.io / docker-buildx / containerd
# install on Debian 12 (libc6 >= 2.34), so they are fetched with a separate apt state (the
# host's sources stay untouched) and installed as local .deb files.
#
# The Debian mirror is read from the host's own apt sources at run time; nothing host-specific is
# committed. Override with LOCKSTEP_DEBIAN_MIRROR=<uri>.
set -euo pipefail

ENGINE_SUITE="${LOCKSTEP_ENGINE_SUITE:-trixie}"
# Pin exact versions (CI does, to match image.lock's builder) with e.g.
# LOCKSTEP_ENGINE_PACKAGES="docker.io=26.1.5+dfsg1-9+deb13u1+b1 docker-cli=... ..."
read -r -a ENGINE_PACKAGES <<<"${LOCKSTEP_ENGINE_PACKAGES:-docker.io docker-cli docker-buildx containerd}"
MIN_ENGINE_MAJOR=26          # first engine whose BuildKit (0.13) has rewrite-timestamp
LOG_DIR="${LOCKSTEP_DOCKER_LOG_DIR:-/var/log/lockstep-docker}"
STATE_DIR="${LOCKSTEP_ENGINE_APT_DIR:-/var/cache/lockstep-engine-apt}"
DAEMON_JSON=/etc/docker/daemon.json
START_TIMEOUT="${LOCKSTEP_DOCKER_START_TIMEOUT:-60}"

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

# Pinned packages (name=version) must be installed at exactly that version.
pins_ok() {
    local spec
    for spec in "${ENGINE_PACKAGES[@]}"; do
        [[ "$spec" == *=* ]] || continue
        [[ "$(dpkg-query -W -f='${Version}' "${spec%%=*}" 2>/dev/null)" == "${spec#*=}" ]] || return 1
    done
}

engine_ok() {
    [[ "$(engine_major)" -ge "$MIN_ENGINE_MAJOR" ]] \
        && command -v containerd >/dev/null \
        && docker buildx version >/dev/null 2>&1 \
        && { ! command -v dpkg-query >/dev/null || pins_ok; }
}

# First archive URI of the host's main Debian suite (not -security/-updates), from deb822
# *.sources files or one-line sources.list entries.
host_mirror() {
    if [[ -n "${LOCKSTEP_DEBIAN_MIRROR:-}" ]]; then echo "$LOCKSTEP_DEBIAN_MIRROR"; return; fi
    local codename f uri
    codename="$(. /etc/os-release && echo "${VERSION_CODENAME:-}")"
    for f in /etc/apt/sources.list.d/*.sources; do
        [[ -r "$f" ]] || continue
        uri="$(awk -v cn="$codename" '
            BEGIN { RS=""; FS="\n" }
            {
                uris=""; suites=""; types=""
                for (i = 1; i <= NF; i++) {
                    if ($i ~ /^URIs:/)   { uris = $i;   sub(/^URIs:[ \t]*/, "", uris) }
                    if ($i ~ /^Suites:/) { suites = $i; sub(/^Suites:[ \t]*/, "", suites) }
                    if ($i ~ /^Types:/)  { types = $i }
                }
                if (types !~ /(^|[ \t])deb([ \t]|$)/) next
                n = split(suites, s, /[ \t]+/)
                for (j = 1; j <= n; j++) if (s[j] == cn) { split(uris, u, /[ \t]+/); print u[1]; exit }
            }' "$f")"
        if [[ -n "$uri" ]]; then echo "$uri"; return; fi
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [[ -r "$f" ]] || continue
        # deb [options] URI SUITE COMPONENTS...
        uri="$(sed -e 's/\[[^]]*\]//' "$f" | awk -v cn="$codename" '$1 == "deb" && $3 == cn { print $2; exit }')"
        if [[ -n "$uri" ]]; then echo "$uri"; return; fi
    done
    die "no Debian mirror for '$codename' in the host's apt sources; set LOCKSTEP_DEBIAN_MIRROR"
}

cmd_install() {
    if engine_ok; then
        log "engine already installed: $(dockerd --version), buildx $(docker buildx version | awk '{print $2}')"
        return 0
    fi
    if ! is_debian; then print_manual_install; exit 1; fi
    [[ "$(id -u)" -eq 0 ]] || die "install needs root (apt-get install)"

    local mirror keyring arch
    mirror="$(host_mirror)"
    keyring=/usr/share/keyrings/debian-archive-keyring.gpg
    arch="$(dpkg --print-architecture)"
    log "fetching ${ENGINE_PACKAGES[*]} from $ENGINE_SUITE ($mirror)"

    # Separate apt state: the host's lists and sources are not touched.
    mkdir -p "$STATE_DIR"/{lists/partial,cache/archives/partial,sources.list.d,debs}
    echo "deb [signed-by=$keyring arch=$arch] $mirror $ENGINE_SUITE main" >"$STATE_DIR/sources.list"
    local apt_opts=(
        -o "Dir::Etc::SourceList=$STATE_DIR/sources.list"
        -o "Dir::Etc::SourceParts=$STATE_DIR/sources.list.d"
        -o "Dir::State::Lists=$STATE_DIR/lists"
        -o "Dir::Cache=$STATE_DIR/cache"
        -o "APT::Architecture=$arch"
        -o "APT::Sandbox::User=root"
    )
    apt-get "${apt_opts[@]}" -qq update
    rm -f "$STATE_DIR"/debs/*.deb
    (cd "$STATE_DIR/debs" && apt-get "${apt_opts[@]}" -qq download "${ENGINE_PACKAGES[@]}")

    # Dependencies (runc, tini, iptables, ...) come from the host's own suite.
    # Others may be running apt at the same time: wait for the dpkg lock instead of failing.
    apt-get -o DPkg::Lock::Timeout=600 -qq update
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
        --no-install-recommends "$STATE_DIR"/debs/*.deb
    engine_ok || die "engine installed but not usable: $(dockerd --version 2>&1)"
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

# PID of a daemon we started, if still alive.
alive_pid() {
    local f="$LOG_DIR/$1.pid" pid
    [[ -r "$f" ]] || return 1
    pid="$(cat "$f")"
    kill -0 "$pid" 2>/dev/null && echo "$pid"
}

cmd_start() {
    if docker_up; then
        if docker info --format '{{.DriverStatus}}' 2>/dev/null | grep -q 'io.containerd.snapshotter'; then
            log "engine already running"; return 0
        fi
        die "a Docker engine is running without the containerd image store; enable it in $DAEMON_JSON and restart it"
    fi
    engine_ok || die "no usable engine installed; run: scripts/docker-engine.sh install"
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
    local name="$1" pid
    pid="$(alive_pid "$name")" || { rm -f "$LOG_DIR/$name.pid"; return 0; }
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

case "${1:-}" in
    install) cmd_install ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    mirror) host_mirror ;;
    *) echo "usage: $0 install|start|stop|status|mirror" >&2; exit 2 ;;
esac
