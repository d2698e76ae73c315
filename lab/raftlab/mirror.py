"""The Debian mirror this machine is configured with (never a hard-coded host)."""

from __future__ import annotations

from pathlib import Path

from .errors import LabError

DEB822_SOURCES = Path("/etc/apt/sources.list.d/debian.sources")
ONE_LINE_SOURCES = Path("/etc/apt/sources.list")


def mirror_from_deb822(text: str) -> str | None:
    """First `URIs:` of a stanza that is not the security archive, from a deb822 sources file."""
    for stanza in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if ":" in line and not line.lstrip().startswith("#"):
                key, value = line.split(":", 1)
                fields[key.strip().lower()] = value.strip()
        uris = fields.get("uris", "").split()
        suites = fields.get("suites", "")
        if uris and "security" not in suites and "deb" in fields.get("types", "deb").split():
            return uris[0]
    return None


def mirror_from_one_line(text: str) -> str | None:
    """First `deb URI suite ...` line that is not the security archive, from sources.list."""
    for line in text.splitlines():
        parts = line.split("#", 1)[0].split()
        if len(parts) >= 3 and parts[0] == "deb":
            rest = [p for p in parts[1:] if not p.startswith("[")]
            # Skip bracketed options such as [signed-by=...] that may span one token.
            rest = [p for p in rest if not p.endswith("]")]
            if len(rest) >= 2 and "security" not in rest[1]:
                return rest[0]
    return None


def configured_mirror() -> str:
    """The machine's Debian mirror URI; LabError if none is configured."""
    if DEB822_SOURCES.exists():
        found = mirror_from_deb822(DEB822_SOURCES.read_text())
        if found:
            return found
    if ONE_LINE_SOURCES.exists():
        found = mirror_from_one_line(ONE_LINE_SOURCES.read_text())
        if found:
            return found
    raise LabError(
        f"no Debian mirror configured: expected a `URIs:` line in {DEB822_SOURCES} "
        f"or a `deb` line in {ONE_LINE_SOURCES}"
    )
