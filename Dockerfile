# lockstep prediction service: a hermetic, deterministic image.
# Build with `make image` (python -m imagetool image build), never by hand: it checks every input
# against its lock first and passes SOURCE_DATE_EPOCH and the labels. No `# syntax=` line: the
# engine's built-in frontend is used, so the build pulls nothing. Runs with --network=none.
#
# Layers, least to most often changed: minimal root | venv (+ the serve lock) | api/ | model.

# --- base: Debian 12 root filesystem from mmdebstrap (image/base.lock.json) ---------------------
# Per platform (imagetool/platforms.py): linux/arm64 passes build/base/arm64/rootfs.tar and
# build/wheels-arm64. ARGs of these stages never reach the final image's config.
FROM scratch AS base
ARG BASE_ROOTFS=build/base/rootfs.tar
ADD ${BASE_ROOTFS} /

# --- serve-lock: the lock the image installs (imagetool/images/recipe.py passes SERVE_LOCK) -------------
FROM scratch AS serve-lock
ARG SERVE_LOCK=requirements/serve.txt
COPY ${SERVE_LOCK} /requirements-serve.txt

# --- deps: the locked wheels into /opt/venv, by a pip that never reaches the final image --------
FROM base AS deps
ARG SOURCE_DATE_EPOCH
ARG WHEELS=build/wheels
# Byte-compiled after trimming, as unchecked-hash .pyc: no build timestamps, and no per-import
# re-hashing of the source, which can never change on the read-only root (~0.4 s of start-up).
# Dropped: the packages' own test suites (~1/3 of the venv) and build-time sources (headers,
# Cython, stubs, static libs); the service never imports them, and pip is not there to mind.
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
# An exact-path LightGBM model (serve-lightgbm.txt): its library needs the system's libgomp.so.1,
# which the base lacks; GCC's OpenMP runtime that scikit-learn's wheel vendors stands in for it (as
# in the toolchain), linked into /usr/lib/<multiarch> of this image only. Other images: no change.
# The tmpfs hides the host's CPU topology: under qemu (linux/arm64 on an amd64 host) onnxruntime's
# cpuinfo reads the x86 host's /sys entries at import and crashes; natively it falls back cleanly.
RUN --mount=type=bind,source=${WHEELS},target=/wheels \
    --mount=type=tmpfs,target=/sys/devices/system/cpu \
    --mount=type=bind,from=serve-lock,source=/requirements-serve.txt,target=/tmp/requirements-serve.txt \
    set -- /wheels/pip-*.whl \
 && python3 -m venv --without-pip /opt/venv \
 && /opt/venv/bin/python "$1/pip" install --no-index --find-links=/wheels \
        --require-hashes --no-deps --only-binary=:all: --no-warn-script-location --no-compile \
        -r /tmp/requirements-serve.txt \
 && /opt/venv/bin/python -c "import numpy, onnxruntime, uvicorn, fastapi, uvloop, httptools, orjson, yaml, prometheus_client" \
 && if [ -d /opt/venv/lib/python3.11/site-packages/lightgbm ]; then \
        set -- /opt/venv/lib/python3.11/site-packages/scikit_learn.libs/libgomp-*.so.1.0.0 \
     && test "$#" -eq 1 && test -f "$1" \
     && lib="/out/usr/lib/$(python3 -c 'import sysconfig; print(sysconfig.get_config_var("MULTIARCH"))')" \
     && mkdir -p "$lib" && ln -s "$1" "$lib/libgomp.so.1" \
     && LD_LIBRARY_PATH="$lib" /opt/venv/bin/python -c "import lightgbm"; \
    fi \
 && find /opt/venv/lib/python3.11/site-packages -type d -name tests -prune -exec rm -rf {} + \
 && find /opt/venv/lib/python3.11/site-packages -type f \( -name '*.pyi' -o -name '*.pxd' -o -name '*.pyx' \
        -o -name '*.h' -o -name '*.c' -o -name '*.cpp' -o -name '*.a' \) -delete \
 && /opt/venv/bin/python -m compileall -q --invalidation-mode unchecked-hash \
        /opt/venv/lib/python3.11/site-packages \
 && mkdir -p /out/opt /out/app \
 && mv /opt/venv /out/opt/venv \
 && cp /tmp/requirements-serve.txt /out/app/requirements-serve.txt

# --- code: api/ and the artifact contract, byte-compiled like the deps (unchecked-hash) ----------
FROM base AS code
COPY api /out/app/api
COPY contract /out/app/contract
RUN chmod -R u=rwX,go=rX /out/app \
 && python3 -m compileall -q --invalidation-mode unchecked-hash /out/app/api /out/app/contract

# --- model: the DVC outputs the service loads, and the lock that proves them -----------------------
# Which model files: imagetool/images/recipe.py passes MODEL_FILES (the ONNX graph or the pickle, with
# serving.json and metadata.json); the .dockerignore allow-list lets in every candidate.
FROM base AS model
ARG MODEL_FILES
COPY models /tmp/models/
COPY dvc.lock /out/app/dvc.lock
RUN mkdir -p /out/app/models \
 && for f in $MODEL_FILES; do cp /tmp/models/"$f" /out/app/models/"$f"; done \
 && chmod -R u=rwX,go=rX /out/app

# --- runtime-root: the interpreter's package closure only (imagetool/minimal_root.py) ------------
# No shell, perl, dpkg, coreutils or login tools, and no setuid/setgid file (the script refuses
# one): the service needs Python and the C++ runtime, and the HEALTHCHECK runs Python too.
FROM base AS runtime-root
RUN --mount=type=bind,source=imagetool/minimal_root.py,target=/tmp/minimal_root.py \
    python3 /tmp/minimal_root.py / /out

# --- runtime ------------------------------------------------------------------------------------
FROM scratch AS runtime
COPY --from=runtime-root /out/ /
# No ARG, LABEL or EXPOSE here: BuildKit releases render those differently into the config's
# history (`ARG X` vs `ARG X=v`, `EXPOSE map[8000/tcp:{}]` vs `EXPOSE [8000/tcp]`), which changed
# the digest between builders. The labels come from `docker buildx build --label` (imagetool.images.image)
# and the port is documented (8000, `make run`), so the digest does not depend on the builder.
ENV PATH=/opt/venv/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    LOCKSTEP_HOST=0.0.0.0 \
    LOCKSTEP_REQUIREMENTS_PATH=/app/requirements-serve.txt \
    LOCKSTEP_PORT=8000
WORKDIR /app
COPY --from=deps /out/ /
COPY --from=code /out/ /
COPY --from=model /out/ /
USER 10001:10001
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-m", "api.healthcheck"]
ENTRYPOINT ["python", "-m", "api"]
