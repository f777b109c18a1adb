"""Read the host's apt sources, so no mirror address is ever committed.

The base root filesystem comes "from the host's Debian mirror" by default: whichever archive the
build host's apt already uses (a local mirror, a caching proxy, ...). Users may instead give
explicit one-line sources, e.g. a point in time of the Debian snapshot archive.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import parsedate_to_datetime
from pathlib import Path


@dataclass(frozen=True)
class Source:
    uri: str
    suite: str
    components: tuple[str, ...]
    options: tuple[str, ...] = field(default=())

    def line(self) -> str:
        opts = f"[{' '.join(self.options)}] " if self.options else ""
        return f"deb {opts}{self.uri} {self.suite} {' '.join(self.components)}"


def parse_deb822(text: str) -> list[Source]:
    """Sources of a deb822 ``*.sources`` file: one per (URI, suite); ``deb-src`` and disabled skipped."""
    out: list[Source] = []
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key = None
        for raw in stanza.splitlines():
            if raw.startswith("#") or not raw.strip():
                continue
            if raw[0] in " \t" and key:  # continuation line
                fields[key] += " " + raw.strip()
                continue
            k, _, v = raw.partition(":")
            key = k.strip().lower()
            fields[key] = v.strip()
        if "deb" not in fields.get("types", "").split() or fields.get("enabled", "yes").lower() == "no":
            continue
        opts = (f"signed-by={fields['signed-by']}",) if "signed-by" in fields else ()
        comps = tuple(fields.get("components", "").split())
        for uri in fields.get("uris", "").split():
            for suite in fields.get("suites", "").split():
                out.append(Source(uri.rstrip("/"), suite, comps, opts))
    return out


def parse_one_line(text: str) -> list[Source]:
    """Sources of a one-line ``sources.list``: ``deb [opts] URI SUITE COMPONENT...``."""
    out: list[Source] = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        m = re.match(r"^deb\s+(?:\[([^\]]*)\]\s+)?(\S+)\s+(\S+)\s*(.*)$", line)
        if not m:
            continue
        opts = tuple(m.group(1).split()) if m.group(1) else ()
        out.append(Source(m.group(2).rstrip("/"), m.group(3), tuple(m.group(4).split()), opts))
    return out


def host_sources(etc_apt: Path = Path("/etc/apt")) -> list[Source]:
    found: list[Source] = []
    for f in sorted((etc_apt / "sources.list.d").glob("*.sources")):
        found += parse_deb822(f.read_text(encoding="utf-8", errors="replace"))
    for f in [etc_apt / "sources.list", *sorted((etc_apt / "sources.list.d").glob("*.list"))]:
        if f.is_file():
            found += parse_one_line(f.read_text(encoding="utf-8", errors="replace"))
    return found


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
                picked.append(Source(src.uri, s, tuple(components), src.options))
                break
    if not picked or picked[0].suite != suite:
        raise LookupError(f"the host's apt sources have no entry for suite {suite!r}")
    return picked


def release_date(inrelease: str) -> int:
    """``Date:`` of an (In)Release file, as a Unix timestamp."""
    for line in inrelease.splitlines():
        if line.startswith("Date:"):
            dt: datetime = parsedate_to_datetime(line.split(":", 1)[1].strip())
            return int(dt.timestamp())
    raise ValueError("no Date: field in Release file")
