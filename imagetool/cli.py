"""`python -m imagetool VERB [ARGS...]`: every verb's command line, in one place.

The modules below hold the work and no command line of their own; each verb here parses its
arguments and calls them. A verb imports its modules when it runs: `all` runs on the system
python3 before the venv exists, and `run` (`make run`) without one (both stdlib only), and `--help`
loads nothing.

Exit status, for every verb: 0 done; 1 a check that failed or a ToolError (one line, no
traceback); 2 bad input, an InputError (one line) or a usage error; 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import NamedTuple

from imagetool.common import InputError, ToolError, log


class Verb(NamedTuple):
    run: Callable[[list[str]], int]
    summary: str


def _parser(verb: str, module: ModuleType | None = None) -> argparse.ArgumentParser:
    """The verb's parser; its description is the first line of the module that does the work."""
    description = (module.__doc__ or "").split("\n")[0] if module is not None else None
    return argparse.ArgumentParser(prog=f"python -m imagetool {verb}", description=description)


def _choose(argv: list[str], verb: str, choices: tuple[str, ...]) -> str:
    """`argv`'s single sub-command if it is one of `choices`; else the usage line and exit 2."""
    if len(argv) == 1 and argv[0] in choices:
        return argv[0]
    print(f"usage: python -m imagetool {verb} {{{','.join(choices)}}}", file=sys.stderr)
    raise SystemExit(2)


# --- verbs -------------------------------------------------------------------------------------


def _summary(argv: list[str]) -> int:
    from imagetool import summary

    if argv:
        print("usage: python3 -m imagetool summary", file=sys.stderr)
        return 2
    for line in summary.summary():
        print(line)
    return 0


def _engine(argv: list[str]) -> int:
    from imagetool import engine

    p = _parser("engine", engine)
    p.add_argument("command", choices=["install", "start", "check", "stop", "status", "host-tools", "binfmt"])
    return engine.run(p.parse_args(argv).command)


def _store(argv: list[str]) -> int:
    from imagetool import platforms
    from imagetool.engine import install
    from imagetool.inputs import fetch, rederive, store

    p = _parser("store", store)
    sub = p.add_subparsers(dest="command", required=True)
    for name in ("ensure", "lock"):
        sp = sub.add_parser(name)
        sp.add_argument(
            "groups", nargs="*", metavar="GROUP", help=f"any of {', '.join(store.GROUPS)} (default: all)"
        )
    sub.add_parser("check")
    sp = sub.add_parser("rederive-base", help="rebuild the base from store/base/debs (offline); == the lock?")
    platforms.add_argument(sp)
    sub.add_parser("status")
    sp = sub.add_parser("install-engine")
    sp.add_argument("--root", type=Path, default=Path("/"), help="install into this root (dpkg --root)")
    sp.add_argument("--tools-only", action="store_true", help="only mmdebstrap, zstd and what they need")
    args = p.parse_args(argv)
    unknown = [g for g in getattr(args, "groups", []) if g not in store.GROUPS]
    if unknown:
        p.error(f"unknown group(s) {', '.join(unknown)}; choose from {', '.join(store.GROUPS)}")
    if args.command == "ensure":
        fetch.ensure(args.groups or list(store.GROUPS))
        return 0
    if args.command == "lock":
        return fetch.cmd_lock(args.groups or list(store.GROUPS))
    if args.command == "install-engine":
        return install.cmd_install_engine(args.root, args.tools_only)
    if args.command == "rederive-base":
        for plat in platforms.chosen(args.platform):
            rederive.cmd_rederive_base(plat)
        return 0
    return store.cmd_check() if args.command == "check" else store.cmd_status()


def _base(argv: list[str]) -> int:
    from imagetool import platforms
    from imagetool.inputs import base, base_build, fetch

    p = _parser("base", base)
    p.add_argument("command", choices=["build", "lock", "check"])
    platforms.add_argument(p)
    args = p.parse_args(argv)
    command = {"build": fetch.place_base, "lock": base_build.cmd_lock, "check": base.cmd_check}[args.command]
    for plat in platforms.chosen(args.platform):
        command(plat)
    return 0


def _wheels(argv: list[str]) -> int:
    from imagetool import platforms
    from imagetool.inputs import fetch, wheels

    p = _parser("wheels", wheels)
    p.add_argument("command", choices=["download", "check"])
    platforms.add_argument(p)
    args = p.parse_args(argv)
    for plat in platforms.chosen(args.platform):
        fetch.place_wheels(plat) if args.command == "download" else wheels.cmd_check(plat)
    return 0


def _image(argv: list[str]) -> int:
    from imagetool import platforms
    from imagetool.images import image

    p = _parser("image", image)
    sub = p.add_subparsers(dest="command", required=True)
    for name in ("build", "lock", "verify", "check", "inputs"):
        sp = sub.add_parser(name)
        if name in ("build", "lock"):
            sp.add_argument("--no-cache", action="store_true", help="rebuild every layer")
        if name == "build":
            sp.add_argument("--no-load", action="store_true", help="write the OCI tarball only")
        platforms.add_argument(sp)
        if name in ("build", "lock", "verify"):
            sp.add_argument(
                "--allow-untracked", action="store_true", help="let files git does not track into the context"
            )
    args = p.parse_args(argv)
    handlers = {
        "build": image.cmd_build,
        "lock": image.cmd_lock,
        "verify": image.cmd_verify,
        "check": image.cmd_check,
        "inputs": image.cmd_inputs,
    }
    return handlers[args.command](args)


def _toolchain(argv: list[str]) -> int:
    from imagetool.images import toolchain

    p = _parser("toolchain", toolchain)
    sub = p.add_subparsers(dest="command", required=True)
    handlers = {
        "build": toolchain.cmd_build,
        "lock": toolchain.cmd_lock,
        "verify": toolchain.cmd_verify,
        "check": toolchain.cmd_check,
        "ensure": toolchain.cmd_ensure,
    }
    for name in handlers:
        sp = sub.add_parser(name)
        if name in ("build", "lock"):
            sp.add_argument("--no-cache", action="store_true", help="rebuild every layer")
    args = p.parse_args(argv)
    return handlers[args.command](args)


def _second_builder(argv: list[str]) -> int:
    from imagetool.images import second_builder

    p = _parser("second-builder", second_builder)
    p.add_argument("command", choices=["verify"])
    p.parse_args(argv)
    return second_builder.cmd_verify()


def _minimal_root(argv: list[str]) -> int:
    from imagetool import minimal_root  # its own command line too: the Dockerfile runs it as a file

    return minimal_root.main(argv)


def _locks(argv: list[str]) -> int:
    from imagetool.common import ROOT
    from imagetool.inputs import locks

    if not argv or argv[0] not in ("check", "compile"):
        print(
            "usage: python -m imagetool locks {check,compile} [--no-upgrade] [LOCK.txt ...]", file=sys.stderr
        )
        return 2
    if argv[0] == "compile":
        names = [name for name in argv[1:] if name != "--no-upgrade"]
        return locks.compile_locks(ROOT, tuple(names), upgrade=len(names) == len(argv) - 1)
    return locks.check_all([Path(name) for name in argv[1:] or locks.CHECKED])


def _repro_check(argv: list[str]) -> int:
    from contract import DVC_LOCK_FILE
    from imagetool.images import repro_check

    return repro_check.check(Path(argv[0]) if argv else DVC_LOCK_FILE)


def _sbom(argv: list[str]) -> int:
    from imagetool.ship import sbom

    return sbom.write_or_check(_choose(argv, "sbom", ("write", "check")))


def _provenance(argv: list[str]) -> int:
    from imagetool.ship import provenance

    p = _parser("provenance")
    sub = p.add_subparsers(dest="command", required=True)
    write = sub.add_parser("write")
    write.add_argument("out", nargs="?", type=Path, default=provenance.DEFAULT_OUT)
    check = sub.add_parser("verify")
    check.add_argument("file", type=Path)
    check.add_argument("--image", help="also check this local image's digest (e.g. lockstep:latest)")
    pred = sub.add_parser("predicate", help="the SLSA predicate alone, for cosign attest --predicate")
    pred.add_argument("file", type=Path)
    pred.add_argument("out", nargs="?", type=Path, default=provenance.PREDICATE_OUT)
    args = p.parse_args(argv)
    if args.command == "write":
        return provenance.write(args.out)
    if args.command == "predicate":
        return provenance.write_predicate(args.file, args.out)
    return provenance.check(args.file, args.image)


def _deploy(argv: list[str]) -> int:
    from imagetool.ship import deploy

    return deploy.check_or_sync(_choose(argv, "deploy", ("check", "sync")))


def _registry(argv: list[str]) -> int:
    from imagetool.ship import registry
    from imagetool.ship.registry_client import DEADLINE

    p = _parser("registry", registry)
    sub = p.add_subparsers(dest="command", required=True)
    push = sub.add_parser("push", help="push build/image/lockstep.oci.tar (image.lock's digest)")
    push.add_argument("registry", help="HOST:PORT[/PREFIX] or NAME.DOMAIN[/PREFIX]")
    push.add_argument("--tag", default="latest", help="also tag the manifest (default: latest)")
    push.add_argument("--sbom", type=Path, help="attach this CycloneDX file (e.g. image/sbom.cdx.json)")
    push.add_argument(
        "--oci", type=Path, default=registry.OCI_TAR, help=f"the OCI tarball (default {registry.OCI_TAR})"
    )
    push.add_argument(
        "--index",
        action="store_true",
        help="push every platform's image (--oci's and, beside it, lockstep-arm64.oci.tar or the like)"
        " and image.lock's index over them",
    )
    push.add_argument(
        "--sbom-dir", type=Path, help="with --index: attach each platform's SBOM from here (e.g. image/)"
    )
    refs = sub.add_parser("referrers", help="list the artifacts attached to the image")
    refs.add_argument("registry", help="HOST:PORT[/PREFIX] or NAME.DOMAIN[/PREFIX]")
    refs.add_argument("digest", nargs="?", help="default: image.lock's digest")
    for talking in (push, refs):
        talking.add_argument(
            "--deadline",
            type=float,
            default=DEADLINE,
            help=f"seconds for the whole run (default {DEADLINE:g})",
        )
    ref = sub.add_parser(
        "reference", help="print REGISTRY/lockstep@<image.lock's index digest> (what deploy/ pins)"
    )
    ref.add_argument("registry", help="HOST:PORT[/PREFIX] or NAME.DOMAIN[/PREFIX]")
    args = p.parse_args(argv)
    if args.command == "reference":
        return registry.print_reference(args.registry)
    if args.command == "referrers":
        return registry.print_referrers(args.registry, args.digest, args.deadline)
    return registry.push(
        args.registry, args.tag, args.oci, args.sbom, args.index, args.sbom_dir, args.deadline
    )


def _run(argv: list[str]) -> int:
    import os
    import shlex

    from imagetool.ship import container

    p = _parser("run", container)
    p.add_argument("--name", default="lockstep-run")
    p.add_argument("--port", type=int, default=8000, help="published on 127.0.0.1 only")
    p.add_argument("--tag", default="lockstep:latest")
    p.add_argument("--platform", default="", help="linux/arm64 runs emulated (qemu); default: native")
    p.add_argument("--memory", default=container.RUN_MEMORY, help="memory and memory+swap cap")
    p.add_argument("--pids", type=int, default=container.RUN_PIDS, help="process and thread cap")
    p.add_argument("--print", action="store_true", help="print the docker command instead of running it")
    args = p.parse_args(argv)
    command = container.run_command(args.name, args.port, args.tag, args.platform, args.memory, args.pids)
    if args.print:
        print(shlex.join(command))
        return 0
    try:
        os.execvp(command[0], command)  # docker in this process's place: `make run`'s Ctrl-C reaches it
    except OSError as exc:
        raise ToolError(f"cannot run {command[0]}: {exc.strerror}") from None


def _stack_images(argv: list[str]) -> int:
    from imagetool.images import stack_images

    if argv[:1] != ["build"]:
        verb = _choose(argv, "stack-images", ("build", "lock", "verify"))
        return stack_images.cmd_lock() if verb == "lock" else stack_images.cmd_verify()
    for name in argv[1:] or stack_images.NAMES:
        print(stack_images.build(name))
    return 0


VERBS: dict[str, Verb] = {
    "summary": Verb(_summary, "the built image: digest, equal to image.lock?, size, what next (make all)"),
    "engine": Verb(
        _engine, "install|start|check|stop|status the Docker engine (yours if usable); host-tools; binfmt"
    ),
    "store": Verb(_store, "ensure|check|lock|install-engine|rederive-base|status the store of inputs"),
    "base": Verb(_base, "build|lock|check the Debian base root filesystem"),
    "wheels": Verb(_wheels, "download|check the image's locked wheels"),
    "image": Verb(_image, "build|lock|verify|check|inputs the service image"),
    "toolchain": Verb(_toolchain, "build|lock|verify|check|ensure the training toolchain image"),
    "second-builder": Verb(_second_builder, "verify the digest with a second, newer BuildKit"),
    "minimal-root": Verb(_minimal_root, "copy a package closure out of a Debian root (the Dockerfile)"),
    "locks": Verb(_locks, "compile|check the requirement locks: each from, or still matching, its .in"),
    "repro-check": Verb(_repro_check, "run `dvc repro`; fail, naming each output, if dvc.lock changed"),
    "sbom": Verb(_sbom, "write|check image/sbom.cdx.json from the locks"),
    "provenance": Verb(_provenance, "write|verify|predicate the image's SLSA provenance"),
    "deploy": Verb(_deploy, "check|sync the deploy files' pinned digest with image.lock"),
    "registry": Verb(_registry, "push|reference|referrers: the image in a registry, by digest"),
    "stack-images": Verb(_stack_images, "build|lock|verify the stack's HAProxy and Prometheus images"),
    "run": Verb(_run, "the image hardened on 127.0.0.1 (make run): read-only, no capabilities, capped"),
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
    try:
        return verb.run(args)
    except InputError as exc:  # every module's bad-input error is one
        log(f"error: {exc}")
        return 2
    except ToolError as exc:
        log(f"error: {exc}")
        return 1
    except KeyboardInterrupt:
        return 130
