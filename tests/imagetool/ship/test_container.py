"""imagetool.ship.container: `make run`'s caps, the image tests' hardened flags and compose's limits
agree (one owner for the flags)."""

from __future__ import annotations


def test_make_run_the_image_tests_and_compose_cap_memory_and_pids_alike() -> None:
    """`make run`'s caps, the flags the image tests start containers with, and compose's limits agree."""
    import yaml

    from harness import REPO_ROOT
    from imagetool.ship.container import HARDENED_FLAGS, RUN_MEMORY, RUN_PIDS, make_run_command

    # make run's command is imagetool's (its flags and caps have one owner): as make would run it.
    run = " ".join(make_run_command("lockstep-x", 18000, "some/image:tag"))
    flags = " ".join(HARDENED_FLAGS)
    memory, pids = RUN_MEMORY, str(RUN_PIDS)
    for flag in (f"--memory {memory}", f"--memory-swap {memory}", f"--pids-limit {pids}"):
        assert flag in run
    assert f"--memory {memory} --memory-swap {memory}" in flags
    assert f"--pids-limit {pids}" in flags
    for flag in ("--read-only", "--cap-drop=ALL", "no-new-privileges"):
        assert flag in run
        assert flag in flags
    compose = yaml.safe_load((REPO_ROOT / "deploy/compose.yaml").read_text())
    limits = compose["services"]["api"]["deploy"]["resources"]["limits"]
    assert (limits["memory"].lower(), str(limits["pids"])) == (memory.lower(), pids)
