"""`python -m imagetool VERB [ARGS...]`: one command line for building, checking and shipping the image.

Each verb runs one module's own command line with the remaining arguments, so its sub-options,
messages and exit codes are that module's (`python -m imagetool VERB --help`).
"""

from __future__ import annotations

import runpy
import sys
from typing import NamedTuple


class Verb(NamedTuple):
    module: str
    summary: str
    fixed_args: tuple[str, ...] = ()  # given before the user's own (`all` runs `steps all`)


VERBS: dict[str, Verb] = {
    "all": Verb("steps", "setup, store, engine, retrain, build: one line per step", ("all",)),
    "engine": Verb(
        "engine",
        "install|start|check|stop|status the Docker engine (yours if usable); host-tools; binfmt",
    ),
    "store": Verb("store", "ensure|check|lock|install-engine|rederive-base|status the store of inputs"),
    "base": Verb("base", "build|lock|check the Debian base root filesystem"),
    "wheels": Verb("wheels", "download|check the image's locked wheels"),
    "image": Verb("image", "build|lock|verify|check|inputs the service image"),
    "toolchain": Verb("toolchain", "build|lock|verify|check|ensure the training toolchain image"),
    "second-builder": Verb("second_builder", "verify the digest with a second, newer BuildKit"),
    "minimal-root": Verb("minimal_root", "copy a package closure out of a Debian root (the Dockerfile)"),
    "locks": Verb("locks", "check LOCK.txt...: each lock matches its .in and constraints"),
    "repro-check": Verb("repro_check", "run `dvc repro`; fail, naming each output, if dvc.lock changed"),
    "sbom": Verb("sbom", "write|check image/sbom.cdx.json from the locks"),
    "provenance": Verb("provenance", "write|verify|predicate the image's SLSA provenance"),
    "deploy": Verb("deploy", "check|sync the deploy files' pinned digest with image.lock"),
    "registry": Verb("registry", "push|reference|referrers: the image in a registry, by digest"),
    "stack-images": Verb("stack_images", "build|lock|verify the stack's HAProxy and Prometheus images"),
}


def usage() -> str:
    width = max(map(len, VERBS))
    lines = [f"  {name:<{width}}  {verb.summary}" for name, verb in VERBS.items()]
    return "usage: python -m imagetool VERB [ARGS...]\n\nverbs:\n" + "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(usage(), end="")
        return 0 if argv else 2
    name, args = argv[0], argv[1:]
    verb = VERBS.get(name)
    if verb is None:
        print(f"error: unknown verb {name!r}\n\n{usage()}", end="", file=sys.stderr)
        return 2
    sys.argv = [f"python -m imagetool {name}", *verb.fixed_args, *args]
    runpy.run_module(f"imagetool.{verb.module}", run_name="__main__", alter_sys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
