# The stack's helper images, HAProxy (target `proxy`) and Prometheus (target `prometheus`), from
# Debian 12's own packages. Built by `make stack-images` (imagetool/images/stack_images.py), never by hand:
# it puts in the context the base rootfs (image/base.lock.json), the .debs of image/stack.toml from
# the store (hash-checked against image/store.lock.json), minimal_root.py and haproxy.cfg, and builds
# with --network=none, SOURCE_DATE_EPOCH and rewrite-timestamp, so the digests are reproducible
# (locked in image.lock's `stack`). No `# syntax=` line: nothing is pulled.

FROM scratch AS base
ADD rootfs.tar /

# --- installed: the stored .debs on the base's dpkg database, then each program's package closure --
# policy-rc.d forbids the maintainer scripts from starting a daemon in the build. dpkg takes the
# files in name order, which can break a Pre-Depends chain (libpam-modules before -bin): a second
# pass installs what the first had to refuse, and must succeed. What the images
# keep is only the closure of haproxy or prometheus: maintainer-script tools (dpkg, adduser, perl,
# init-system-helpers, lsb-base) stay behind, and with them every shell.
FROM base AS installed
RUN --mount=type=bind,source=debs,target=/debs \
    --mount=type=bind,source=minimal_root.py,target=/tmp/minimal_root.py \
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d \
 && chmod 755 /usr/sbin/policy-rc.d \
 && export DEBIAN_FRONTEND=noninteractive \
 && { dpkg -i /debs/*.deb >/dev/null 2>&1 || dpkg -i /debs/*.deb; } \
 && python3 /tmp/minimal_root.py / /out/proxy haproxy base-files base-passwd \
        -dpkg -mawk -adduser -init-system-helpers -lsb-base \
 && python3 /tmp/minimal_root.py / /out/prometheus prometheus base-files base-passwd \
        -dpkg -mawk -adduser -init-system-helpers

# --- proxy: HAProxy 2.6 and its configuration; no shell ---------------------------------------------
FROM scratch AS proxy
COPY --from=installed /out/proxy/ /
COPY haproxy.cfg /etc/haproxy/haproxy.cfg
USER 10001:10001
# SIGUSR1: finish the requests in flight, then exit (Swarm's stop_signal in deploy/compose.yaml).
ENTRYPOINT ["/usr/sbin/haproxy", "-db", "-f", "/etc/haproxy/haproxy.cfg"]

# --- prometheus: the server binary and its web assets; no shell --------------------------------------
FROM scratch AS prometheus
COPY --from=installed /out/prometheus/ /
USER 10001:10001
ENTRYPOINT ["/usr/bin/prometheus"]
