# lockstep's training toolchain: the pipeline's stages run in this image (pipeline/toolchain.py).
# Build with `make toolchain` (python -m imagetool toolchain build), never by hand: the context is
# build/toolchain/context, made from the store and checked against the locks first (the base
# rootfs, requirements.txt's wheels, pip). No `# syntax=` line, --network=none, SOURCE_DATE_EPOCH
# and rewrite-timestamp: the digest is a function of those inputs (image/toolchain.lock.json).
#
# Same inputs as the service image: Debian 12's root filesystem and its python3 (3.11.2, glibc
# 2.36), the wheels of the runtime lock. Training needs all of it (scikit-learn, pandas, skl2onnx,
# onnxruntime), and the interpreter and libm come from the lock, not from the host.

FROM scratch AS base
ADD rootfs.tar /

# --- venv: requirements.txt's wheels into /opt/venv, by a pip that never reaches the final image --
FROM base AS venv
ARG SOURCE_DATE_EPOCH
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
# Dropped, as in the service image: the packages' own test suites (a third of the venv, 168 MB) and
# build-time sources; no stage imports them, and the build and its export take a third less time.
# Byte-compiled as unchecked-hash .pyc (no timestamps): the root is read-only when stages run, so
# without them every stage would compile scikit-learn, scipy and pandas from source on import.
RUN --mount=type=bind,source=wheels,target=/wheels \
    --mount=type=bind,source=requirements.txt,target=/tmp/requirements.txt \
    set -- /wheels/pip-*.whl \
 && python3 -m venv --without-pip /opt/venv \
 && /opt/venv/bin/python "$1/pip" install --no-index --find-links=/wheels \
        --require-hashes --no-deps --only-binary=:all: --no-warn-script-location --no-compile \
        -r /tmp/requirements.txt \
 && /opt/venv/bin/python -c "import numpy, scipy, sklearn, pandas, joblib, yaml, skl2onnx, onnx, onnxruntime" \
 && find /opt/venv/lib/python3.11/site-packages -type d -name tests -prune -exec rm -rf {} + \
 && find /opt/venv/lib/python3.11/site-packages -type f \( -name '*.pyi' -o -name '*.pxd' -o -name '*.pyx' \
        -o -name '*.h' -o -name '*.c' -o -name '*.cpp' -o -name '*.a' \) -delete \
 && /opt/venv/bin/python -m compileall -q -j 0 --invalidation-mode unchecked-hash \
        /opt/venv/lib/python3.11/site-packages \
 && chmod -R u=rwX,go=rX /opt/venv

# --- toolchain: the base, the venv, and the marker the launcher reads -------------------------------
FROM base AS toolchain
COPY --from=venv /opt/venv /opt/venv
# lightgbm's library needs the system's libgomp.so.1, which the base lacks: GCC's OpenMP runtime,
# which the scikit-learn wheel already vendors (xgboost-cpu vendors the same file), stands in for it,
# so one OpenMP runtime is loaded whichever library asks first.
RUN set -- /opt/venv/lib/python3.11/site-packages/scikit_learn.libs/libgomp-*.so.1.0.0 \
 && test "$#" -eq 1 && test -f "$1" \
 && ln -s "$1" /usr/lib/x86_64-linux-gnu/libgomp.so.1 \
 && /opt/venv/bin/python -c "import lightgbm, xgboost"
# LOCKSTEP_TRAIN=container: `python -m pipeline STAGE` runs the stage here instead of starting
# another container (pipeline/toolchain.py accepts it only inside this image's /opt/venv).
ENV PATH=/opt/venv/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    LOCKSTEP_TRAIN=container
