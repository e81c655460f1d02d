"""The host's apt sources: the Debian mirror they name. The bpftrace release roots (harness.host)
and the guest kernels (harness.lanes.debian) are both fetched from it, so it lives at the lower
layer."""

from __future__ import annotations

import re
from pathlib import Path

from harness.errors import HarnessError


class AptError(HarnessError):
    """The host's apt sources name no Debian mirror."""


def host_mirror(text: str | None = None) -> str:
    """The Debian mirror the host's apt uses (deb822 `URIs:` or one-line `deb URL`)."""
    if text is None:
        parts = []
        for path in [Path("/etc/apt/sources.list"), *Path("/etc/apt/sources.list.d").glob("*")]:
            if path.is_file() and path.suffix in (".list", ".sources", ""):
                parts.append(path.read_text(errors="replace"))
        text = "\n".join(parts)
    for m in re.finditer(r"^(?:URIs:\s*|deb\s+(?:\[[^]]*\]\s+)?)(\S+)", text, re.M):
        url = m.group(1).rstrip("/")
        if url.endswith("/debian"):
            return url
    raise AptError(
        "no Debian mirror found in /etc/apt/sources.list*",
        "add a Debian 'deb' source for the host, then retry",
    )
