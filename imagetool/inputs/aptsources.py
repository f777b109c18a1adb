"""Read the host's apt sources, so no mirror address is ever committed.

The base root filesystem comes "from the host's Debian mirror" by default: whichever archive the
build host's apt already uses (a local mirror, a caching proxy, ...). Users may instead give
explicit one-line sources, e.g. a point in time of the Debian snapshot archive.

Sources whose options turn off or weaken apt's signature checks are refused (`check_sources`):
the base's packages are only as trustworthy as the signed archive index they were taken from.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from imagetool.common import InputError

# apt's boolean spellings (apt-pkg's StringToBool).
_TRUE = {"yes", "true", "with", "on", "enable", "1"}
_FALSE = {"no", "false", "without", "off", "disable", "0"}

# Options that weaken verification when set to the given truth value, and what that does.
WEAKENING: dict[str, tuple[bool, str]] = {
    "trusted": (True, "turns off apt's signature check"),
    "allow-insecure": (True, "lets apt use an unsigned archive"),
    "allow-weak": (True, "lets apt accept weak signatures (e.g. SHA-1)"),
    "allow-downgrade-to-insecure": (True, "lets apt accept the archive dropping its signature"),
    "check-valid-until": (False, "lets apt accept an expired Release file (a replayed old archive)"),
    "check-date": (False, "lets apt accept a Release file dated in the future"),
}
# deb822 fields are case-insensitive; these carry over as one-line options of the same meaning.
_DEB822_OPTIONS = ("signed-by", *WEAKENING)


@dataclass(frozen=True)
class Source:
    uri: str
    suite: str
    components: tuple[str, ...]
    options: tuple[str, ...] = field(default=())
    # Where the source was written (file:line, or a field of image/base.toml), for messages.
    origin: str = field(default="", compare=False)

    def line(self) -> str:
        opts = f"[{' '.join(self.options)}] " if self.options else ""
        return f"deb {opts}{self.uri} {self.suite} {' '.join(self.components)}"

    def option(self, name: str) -> str | None:
        """Value of option ``name`` (``name=v``, ``name+=v``), or None."""
        for opt in self.options:
            key, sep, value = opt.partition("=")
            if sep and key.rstrip("+-").lower() == name:
                return value
        return None

    def signed_by(self) -> list[str]:
        """The keyring paths and key fingerprints ``signed-by`` names ([] when it has none)."""
        value = self.option("signed-by")
        return [] if value is None else [v for v in re.split(r"[\s,]+", value) if v]


def parse_deb822(text: str, origin: str = "") -> list[Source]:
    """Sources of a deb822 ``*.sources`` file: one per (URI, suite); ``deb-src`` and disabled skipped."""
    out: list[Source] = []
    stanzas: list[tuple[int, list[str]]] = []
    for number, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            stanzas.append((0, []))
        elif not raw.startswith("#"):
            if not stanzas or not stanzas[-1][1]:
                stanzas.append((number, []))
            stanzas[-1][1].append(raw)
    for first_line, lines in stanzas:
        if not lines:
            continue
        fields: dict[str, str] = {}
        key = None
        for raw in lines:
            if raw[0] in " \t" and key:  # continuation line
                fields[key] += " " + raw.strip()
                continue
            k, _, v = raw.partition(":")
            key = k.strip().lower()
            fields[key] = v.strip()
        if "deb" not in fields.get("types", "").split() or fields.get("enabled", "yes").lower() == "no":
            continue
        opts = tuple(f"{name}={fields[name]}" for name in _DEB822_OPTIONS if name in fields)
        comps = tuple(fields.get("components", "").split())
        where = f"{origin}:{first_line}" if origin else f"stanza at line {first_line}"
        for uri in fields.get("uris", "").split():
            for suite in fields.get("suites", "").split():
                out.append(Source(uri.rstrip("/"), suite, comps, opts, where))
    return out


def parse_one_line(text: str, origin: str = "") -> list[Source]:
    """Sources of a one-line ``sources.list``: ``deb [opts] URI SUITE COMPONENT...``."""
    out: list[Source] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        m = re.match(r"^deb\s+(?:\[([^\]]*)\]\s+)?(\S+)\s+(\S+)\s*(.*)$", line)
        if not m:
            continue
        opts = tuple(m.group(1).split()) if m.group(1) else ()
        where = f"{origin}:{number}" if origin else f"line {number}"
        out.append(Source(m.group(2).rstrip("/"), m.group(3), tuple(m.group(4).split()), opts, where))
    return out


def host_sources(etc_apt: Path = Path("/etc/apt")) -> list[Source]:
    found: list[Source] = []
    for f in sorted((etc_apt / "sources.list.d").glob("*.sources")):
        found += parse_deb822(f.read_text(encoding="utf-8", errors="replace"), str(f))
    for f in [etc_apt / "sources.list", *sorted((etc_apt / "sources.list.d").glob("*.list"))]:
        if f.is_file():
            found += parse_one_line(f.read_text(encoding="utf-8", errors="replace"), str(f))
    return found


def source_problems(src: Source) -> list[str]:
    """Why ``src`` may not be used, one line each naming where it was written; [] if it may."""
    problems = []
    for opt in src.options:
        key, sep, value = opt.partition("=")
        name = key.rstrip("+-").lower()
        if not sep or name not in WEAKENING:
            continue
        weak_when, why = WEAKENING[name]
        safe = _FALSE if weak_when else _TRUE
        if value.lower() in safe:
            continue
        reason = why if value.lower() in (_TRUE | _FALSE) else f"{value!r} is not a yes/no value"
        problems.append(
            f"{src.origin}: {src.line()!r}: option {opt}: {reason}; refused "
            "(remove it: apt checks the signed InRelease, over plain http:// too)"
        )
    if "BEGIN PGP" in (src.option("signed-by") or ""):
        problems.append(
            f"{src.origin}: Signed-By holds an inline key block, which a one-line source cannot "
            "carry; put the key in a keyring file and name its path"
        )
    return problems


def check_sources(sources: list[Source]) -> list[Source]:
    """``sources``, unless one of them weakens verification: then an InputError naming each."""
    problems = [p for src in sources for p in source_problems(src)]
    if problems:
        raise InputError("\n".join(problems))
    return sources


def sources_for_suite(available: list[Source], suite: str, components: list[str]) -> list[Source]:
    """Pick ``suite``, ``suite-updates`` and ``suite-security`` from the host's sources.

    Only the first URI per suite is used, and only the wanted components: the result depends on
    the archive's content, not on which of the host's mirrors answered.
    """
    wanted = [suite, f"{suite}-updates", f"{suite}-security"]
    picked: list[Source] = []
    for s in wanted:
        for src in available:
            if src.suite == s:
                picked.append(Source(src.uri, s, tuple(components), src.options, src.origin))
                break
    if not picked or picked[0].suite != suite:
        raise LookupError(f"the host's apt sources have no entry for suite {suite!r}")
    return picked
