"""Debian kernels for the VM lane: fetched with apt-get download, unpacked with dpkg -x, cached.

A private apt configuration (own sources list and package lists under the cache) reaches the
suite each kernel comes from (bookworm for 6.1, bookworm-backports for 6.12) through the mirror the
host already uses, so the host's apt sources are never changed and nothing is installed on it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from harness.errors import HarnessError
from harness.host.apt import host_mirror
from harness.paths import cache_home
from harness.progress import Progress, silent

# Kernel series -> the Debian suite whose linux-image-amd64 brings it.
SUITES = {"6.1": "bookworm", "6.12": "bookworm-backports"}
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"


class KernelFetchError(HarnessError):
    """A kernel could not be fetched or unpacked."""


@dataclass(frozen=True)
class KernelImage:
    """An unpacked Debian kernel: its image and the root holding lib/modules/<release>."""

    series: str
    release: str
    vmlinuz: Path
    root: Path


def cache_dir() -> Path:
    return cache_home() / "kernels"


def _apt_options(base: Path) -> list[str]:
    return [
        "-o",
        f"Dir::Etc::SourceList={base / 'sources.list'}",
        "-o",
        "Dir::Etc::SourceParts=/dev/null",
        "-o",
        f"Dir::State::Lists={base / 'lists'}",
        "-o",
        f"Dir::Cache={base / 'apt-cache'}",
        "-o",
        "APT::Sandbox::User=root",
    ]


def _run(argv: list[str], cwd: Path | None = None) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, cwd=cwd, check=False)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise KernelFetchError(
            f"{' '.join(argv[:2])} failed: {last}",
            "check that the Debian package registry is reachable",
        )
    return done.stdout


def _download(argv: list[str], debs: Path, total: int | None, what: str,
              progress: Progress) -> None:
    """`apt-get download` into `debs`, reporting the bytes that have landed there so far."""
    proc = subprocess.Popen(argv, cwd=debs, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    while proc.poll() is None:
        got = sum(f.stat().st_size for f in debs.iterdir() if f.is_file())
        progress(f"downloading {what}", got, total, "bytes")
        time.sleep(0.2)
    _, err = proc.communicate()
    if proc.returncode != 0:
        last = (err.strip().splitlines() or ["no output"])[-1]
        raise KernelFetchError(f"apt-get download failed: {last}",
                               "check that the Debian package registry is reachable")


def fetch(series: str, progress: Progress = silent) -> KernelImage:
    """Download (once) and unpack the Debian kernel of a series: '6.1' or '6.12'."""
    if series not in SUITES:
        raise KernelFetchError(
            f"no Debian kernel series '{series}'", f"choose one of: {', '.join(SUITES)}"
        )
    root = cache_dir() / series
    done = root / "root"
    found = sorted(done.glob("boot/vmlinuz-*"))
    if found:
        return _image(series, found[-1], done)
    for tool in ("apt-get", "dpkg"):
        if shutil.which(tool) is None:
            raise KernelFetchError(f"{tool} is not available", "the VM lane needs a Debian host")
    apt = root / "apt"
    (apt / "lists" / "partial").mkdir(parents=True, exist_ok=True)
    (apt / "apt-cache" / "archives" / "partial").mkdir(parents=True, exist_ok=True)
    (apt / "sources.list").write_text(
        f"deb [signed-by={KEYRING}] {host_mirror()} {SUITES[series]} main\n"
    )
    opts = _apt_options(apt)
    progress(f"reading the package lists of {SUITES[series]}")
    _run(["apt-get", *opts, "update"])
    depends = _run(["apt-cache", *opts, "depends", "linux-image-amd64"])
    m = re.search(r"Depends: (linux-image-[\w.+~-]+)", depends)
    if not m:
        raise KernelFetchError(
            f"linux-image-amd64 in {SUITES[series]} names no kernel package", "retry later"
        )
    debs = root / "debs"
    debs.mkdir(exist_ok=True)
    size = re.search(r"^Size: (\d+)", _run(["apt-cache", *opts, "show", m.group(1)]), re.M)
    _download(["apt-get", *opts, "download", m.group(1)], debs,
              int(size.group(1)) if size else None, m.group(1), progress)
    progress(f"unpacking {m.group(1)}")
    tmp = root / "root.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    for deb in sorted(debs.glob("*.deb")):
        _run(["dpkg", "-x", str(deb), str(tmp)])
    tmp.replace(done)
    found = sorted(done.glob("boot/vmlinuz-*"))
    if not found:
        raise KernelFetchError(f"{m.group(1)} holds no boot/vmlinuz-*", "report this package")
    return _image(series, found[-1], done)


def _image(series: str, vmlinuz: Path, root: Path) -> KernelImage:
    release = vmlinuz.name.removeprefix("vmlinuz-")
    if not (root / "lib" / "modules" / release).is_dir():
        raise KernelFetchError(
            f"kernel {release} has no modules in {root}", f"delete {root} and fetch again"
        )
    return KernelImage(series, release, vmlinuz, root)
