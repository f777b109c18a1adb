"""The pinned numeric environment every stage runs in, and the proof that it took effect.

Four libraries pick code by the CPU they run on, and a different pick gives different bits:
- OpenBLAS (numpy's and scipy's own copies) picks its kernel when it loads: OPENBLAS_CORETYPE.
- numpy dispatches its SIMD loops (sort, exp/log, sums, ...) up to the CPU's best level:
  NPY_DISABLE_CPU_FEATURES, read when numpy loads.
- glibc's ifuncs choose libm's exp/log/pow variants (FMA or not) and the glibc-hwcaps library
  directories: GLIBC_TUNABLES=glibc.cpu.hwcaps, read only when the process starts, so the
  launcher re-executes the interpreter once with it set (`reexec_command`).
- OpenMP and BLAS split work by thread count: one thread.
The pinned level is the lowest, x86-64-v2 (SSE4.2, POPCNT; no AVX, no FMA), so every x86-64-v2
CPU computes the same bits. Masks the caller already set (a CPU simulation) add up with these.
After the pins, `check` reads what each library itself reports and names the first one that is
not pinned: the stage then exits 2 rather than train on an unpinned dispatcher.
"""

from __future__ import annotations

import importlib
import os
import platform
import shlex
import sys
from collections.abc import Mapping

PINNED_LEVEL = "x86-64-v2"
# numpy's dispatch targets above its X86_V2 baseline (numpy 2.4: __cpu_dispatch__). `check`
# refuses a numpy that dispatches to a target this list does not name.
NUMPY_DISABLED = ("X86_V3", "X86_V4", "AVX512_ICL", "AVX512_SPR")
NUMPY_BASELINE = "X86_V2"
# glibc's names for everything above x86-64-v2 (2.33+; the *_Usable spellings are glibc < 2.33's).
# Unknown names are ignored by glibc, so one list serves every version.
GLIBC_MASKED = (
    "AVX",
    "AVX2",
    "FMA",
    "FMA4",
    "F16C",
    "BMI1",
    "BMI2",
    "LZCNT",
    "MOVBE",
    "AVX512F",
    "AVX512CD",
    "AVX512BW",
    "AVX512DQ",
    "AVX512ER",
    "AVX512PF",
    "AVX512VL",
    "AVX512_FP16",
    "AVX_VNNI",
    "AVX_Usable",
    "AVX2_Usable",
    "FMA_Usable",
    "FMA4_Usable",
    "AVX512F_Usable",
    "AVX512DQ_Usable",
)
HWCAPS = "glibc.cpu.hwcaps"
OPENBLAS_CORE = "Prescott"  # SSE3 kernels: present on every x86-64 CPU
# What OpenBLAS then reports: x86-64 builds alias the older 32-bit core names to the Prescott
# kernels and name the table by the first alias (measured: "Katmai").
OPENBLAS_REPORTED = ("Prescott", "Katmai")
PINNED_ENV = {
    "OPENBLAS_CORETYPE": OPENBLAS_CORE,
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}
# Set on the one re-execution: a second one means the pins did not survive exec (a loop).
REEXEC_MARK = "LOCKSTEP_PINNED_REEXEC"


class PinError(Exception):
    """A dispatcher that cannot be pinned on this host (one line, exit 2)."""


def _merge_words(current: str | None, ours: tuple[str, ...], sep: str) -> str:
    """A list setting (`sep`-separated; numpy also takes commas) with `ours` added, in order, once."""
    text = current or ""
    words = text.replace(",", " ").split() if sep == " " else [w for w in text.split(sep) if w]
    return sep.join(dict.fromkeys([*words, *ours]))


def merge_tunables(current: str | None) -> str:
    """GLIBC_TUNABLES with our hwcaps masks added to the caller's: other tunables are kept, a
    caller's own hwcaps list is extended, not replaced."""
    entries = [e for e in (current or "").split(":") if e]
    masks = tuple(f"-{name}" for name in GLIBC_MASKED)
    merged, found = [], False
    for entry in entries:
        key, _, value = entry.partition("=")
        if key == HWCAPS:
            entry, found = f"{HWCAPS}={_merge_words(value, masks, ',')}", True
        merged.append(entry)
    if not found:
        merged.append(f"{HWCAPS}={','.join(masks)}")
    return ":".join(merged)


def pinned_environ(environ: Mapping[str, str]) -> dict[str, str]:
    """`environ` with every pin applied; idempotent. NPY_ENABLE_CPU_FEATURES (which would raise the
    level) is dropped."""
    env = {k: v for k, v in environ.items() if k != "NPY_ENABLE_CPU_FEATURES"}
    env.update(PINNED_ENV)
    env["NPY_DISABLE_CPU_FEATURES"] = _merge_words(
        environ.get("NPY_DISABLE_CPU_FEATURES"), NUMPY_DISABLED, " "
    )
    env["GLIBC_TUNABLES"] = merge_tunables(environ.get("GLIBC_TUNABLES"))
    return env


def needs_reexec(environ: Mapping[str, str]) -> bool:
    """True when this process did not start with the pins (glibc reads them only at start)."""
    pinned = pinned_environ(environ)
    return any(environ.get(k) != v for k, v in pinned.items()) or "NPY_ENABLE_CPU_FEATURES" in environ


def reexec_command(argv: list[str]) -> list[str]:
    """The command that starts this stage again with the pins: the same interpreter and module."""
    return [sys.executable, "-m", "pipeline", *argv]


# glibc's view: __x86_get_cpuid_feature_leaf(index) -> {cpuid[4], active[4]} (eax, ebx, ecx, edx).
# (index, register, bit) of what x86-64-v2 needs and of what the pins must turn off.
_GLIBC_BITS = {
    "SSSE3": (0, 2, 9),
    "SSE4_1": (0, 2, 19),
    "SSE4_2": (0, 2, 20),
    "POPCNT": (0, 2, 23),
    "FMA": (0, 2, 12),
    "AVX": (0, 2, 28),
    "AVX2": (1, 1, 5),
    "AVX512F": (1, 1, 16),
}
_GLIBC_REQUIRED = ("SSSE3", "SSE4_1", "SSE4_2", "POPCNT")


def glibc_active() -> dict[str, bool]:
    """Which features glibc's ifuncs may use in this process (after GLIBC_TUNABLES)."""
    import ctypes

    try:
        leaf = ctypes.CDLL(None).__x86_get_cpuid_feature_leaf
    except AttributeError:
        raise PinError(
            "glibc's ifuncs cannot be checked on this host (glibc < 2.33 has no "
            "__x86_get_cpuid_feature_leaf): run the stages in the toolchain"
        ) from None
    leaf.restype = ctypes.POINTER(ctypes.c_uint * 8)
    leaf.argtypes = [ctypes.c_uint]
    return {
        name: bool(leaf(index).contents[4 + reg] >> bit & 1)
        for name, (index, reg, bit) in _GLIBC_BITS.items()
    }


def check() -> None:
    """Raise PinError naming the first dispatcher that is not at the pinned level. Imports numpy:
    call it only once the environment is pinned."""
    if platform.machine() not in ("x86_64", "AMD64"):
        raise PinError(f"the numeric pins are for x86-64; this host is {platform.machine()}")
    glibc = glibc_active()
    missing = [f for f in _GLIBC_REQUIRED if not glibc[f]]
    if missing:
        raise PinError(f"this CPU is below {PINNED_LEVEL} (no {', '.join(missing)}): nothing to pin it to")
    above = [f for f, on in glibc.items() if on and f not in _GLIBC_REQUIRED]
    if above:
        raise PinError(f"glibc's ifuncs still use {', '.join(above)}: GLIBC_TUNABLES did not take effect")
    umath = importlib.import_module("numpy._core._multiarray_umath")  # numpy's own CPU report

    features, dispatch = umath.__cpu_features__, umath.__cpu_dispatch__
    unknown = [t for t in dispatch if t not in NUMPY_DISABLED]
    if unknown:
        raise PinError(f"numpy dispatches to {', '.join(unknown)}, which the pins do not name")
    if not features.get(NUMPY_BASELINE):
        raise PinError(f"numpy does not find its baseline {NUMPY_BASELINE} on this CPU")
    active = [t for t in dispatch if features.get(t)]
    if active:
        raise PinError(
            f"numpy still dispatches to {', '.join(active)}: NPY_DISABLE_CPU_FEATURES did not take effect"
        )
    check_openblas()


def check_openblas() -> None:
    """Every OpenBLAS loaded so far (numpy's, scipy's) runs the pinned kernel with one thread."""
    import scipy.linalg  # type: ignore[import-untyped]  # noqa: F401  # loads scipy's own OpenBLAS: checked too
    from threadpoolctl import threadpool_info

    for lib in threadpool_info():
        if lib.get("internal_api") != "openblas":
            continue
        if lib.get("architecture") not in OPENBLAS_REPORTED or lib.get("num_threads") != 1:
            raise PinError(
                f"OpenBLAS {lib.get('filepath')} runs kernel {lib.get('architecture')} with "
                f"{lib.get('num_threads')} threads, not {OPENBLAS_CORE} with 1"
            )


def main() -> int:
    """`python -m pipeline.pinning`: the pinned environment's variables as shell assignments (for a
    wrapper that must set them before its interpreter starts, e.g. under an emulator)."""
    env = pinned_environ(os.environ)
    for key in sorted(set(env) - {k for k, v in os.environ.items() if env.get(k) == v}):
        print(f"export {key}={shlex.quote(env[key])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
