"""The engine's .debs installed from the store, beside engine.sh, which runs it: no Debian mirror.

python -m imagetool store install-engine [--root DIR] [--tools-only]
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from imagetool.common import ToolError, log, rel
from imagetool.inputs import base
from imagetool.inputs.apt import deb_file_version
from imagetool.inputs.fetch import ensure
from imagetool.inputs.store import (
    ENGINE_DEFINITION,
    STORE,
    StoreLock,
    engine_pins,
    load_engine_definition,
    verified_copies,
)


def installed_packages(root: Path) -> dict[str, str]:
    """Installed packages (name -> version) of the dpkg database under ``root``."""
    status = root / "var/lib/dpkg/status"
    if not status.is_file():
        return {}
    return base.parse_dpkg_status(status.read_text(encoding="utf-8", errors="replace"))


def engine_debs_to_install(
    debs: list[str], installed: dict[str, str], pins: dict[str, str], only: set[str] | None = None
) -> list[str]:
    """The store .debs a host needs: pinned packages not at their pin, and whatever is absent
    (among ``only``, when given: the tools' closure, for a host whose engine is fine).

    A dependency the host already has at another version is left alone (it is the host suite's,
    like the store's); dpkg refuses, naming it, if that version is too old.
    """
    out = []
    for name in debs:
        pkg, version = deb_file_version(Path(name).name)
        if only is not None and (pkg not in only or pkg in installed or pkg in pins):
            continue
        have = installed.get(pkg)
        if (pkg in pins and have != pins[pkg] and version == pins[pkg]) or (pkg not in pins and have is None):
            out.append(name)
    return out


def cmd_install_engine(root: Path, tools_only: bool = False) -> int:
    if os.geteuid() != 0:
        raise ToolError("installing the engine needs root (dpkg)")
    ensure(["engine"])
    lock = StoreLock.read()
    definition = load_engine_definition()
    debs = sorted(n for n in lock.files if n.startswith("engine/debs/"))
    only = set(lock.tools_closure) if tools_only else None
    chosen = engine_debs_to_install(debs, installed_packages(root), engine_pins(definition), only)
    if not chosen:
        log(f"engine: every package of {rel(ENGINE_DEFINITION)} is installed in {root}")
        return 0
    log(f"engine: installing {len(chosen)} packages from {rel(STORE)}/engine/debs into {root} (no mirror)")
    cmd = ["dpkg", "--force-confdef", "--force-confold", "-i"]
    if root.resolve() != Path("/"):
        cmd.insert(1, f"--root={root}")
    with verified_copies(chosen, lock.files) as copies:  # dpkg reads the checked copies, not the store
        p = subprocess.run(
            [*cmd, *map(str, copies)],
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
            capture_output=True,
            text=True,
            check=False,
        )
    if p.returncode != 0:
        raise ToolError(f"dpkg -i failed ({p.returncode}):\n{(p.stderr or p.stdout).strip()[-2000:]}")
    log(f"engine: installed {', '.join(deb_file_version(Path(n).name)[0] for n in chosen)}")
    return 0
