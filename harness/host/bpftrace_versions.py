"""Which bpftrace a run uses: the system's, or a newer release from a cached Debian root.

Debian 12 ships bpftrace 0.17; users run 0.20-0.27, whose output and program syntax changed.
`--bpftrace 0.27` (or `latest`) runs the bpftrace of Debian forky from a root built once with
mmdebstrap into `cache_home()/roots/forky/` (built in a temporary directory and renamed, under a
file lock, so concurrent first uses build it once). A wrapper script in that directory starts
bpftrace with /proc, /sys and /dev bind-mounted (and a tmpfs on /tmp) inside a PRIVATE mount
namespace (`unshare --mount`) and chroots into the root: the mounts belong to that namespace
and vanish with its last process, however it ends; the host's mount table never sees them.
The chroot shares the host's pid namespace, so pid filters and the host-side workload work
unchanged.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from harness.errors import HarnessError
from harness.host.apt import host_mirror
from harness.host.capabilities import capabilities, parse_version
from harness.paths import cache_home, locked

SYSTEM = "system"


class BpftraceVersionError(HarnessError):
    """A requested bpftrace version is unknown, or its root could not be built."""


@dataclass(frozen=True)
class Recipe:
    """How to get one bpftrace release: the Debian suite whose package carries it."""

    version: str
    suite: str
    package: str = "bpftrace"


# Version name -> recipe. Debian forky carries bpftrace 0.27.0.
RECIPES = {"0.27": Recipe("0.27", "forky")}
ALIASES = {"latest": "0.27"}

WRAPPER = """#!/bin/sh
# bpftrace {version} of the Debian {suite} root next to this script. The binds (and a private
# /tmp, which bpftrace writes and a VM guest's read-only view of the root lacks) are made in a
# private mount namespace, so they vanish with bpftrace however it ends; pids are the host's.
root="$(dirname "$(readlink -f "$0")")/root"
exec unshare --mount --propagation private -- /bin/sh -c '
for d in proc sys dev; do mount --rbind "/$d" "$0/$d" || exit 125; done
mount -t tmpfs -o size=64m tmpfs "$0/tmp" || exit 125
exec chroot "$0" /usr/bin/bpftrace "$@"' "$root" "$@"
"""

# The same bpftrace on the host's filesystem (no chroot, no mounts): its own loader and
# libraries from the root. For tools that hand bpftrace host paths: program files, `-c CMD`
# (scripts/make_corpus.py). The harness runs the chroot wrapper above.
HOSTFS_WRAPPER = """#!/bin/sh
# bpftrace {version} of the Debian {suite} root next to this script, on the host's filesystem.
root="$(dirname "$(readlink -f "$0")")/root"
lib="$root/lib/x86_64-linux-gnu:$root/usr/lib/x86_64-linux-gnu"
exec "$root/lib64/ld-linux-x86-64.so.2" --library-path "$lib" "$root/usr/bin/bpftrace" "$@"
"""
LAUNCHERS = {"bpftrace": WRAPPER, "bpftrace-hostfs": HOSTFS_WRAPPER}


@dataclass(frozen=True)
class Bpftrace:
    """One bpftrace a run can use: the command to start it, its version, where it comes from."""

    name: str
    command: str
    version_text: str
    origin: str
    root: str | None = None

    @property
    def version(self) -> tuple[int, int, int]:
        return parse_version(self.version_text)

    @property
    def short_version(self) -> str:
        major, minor, patch = self.version
        return f"{major}.{minor}.{patch}"

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def roots_dir() -> Path:
    return cache_home() / "roots"


def canonical(name: str | None) -> str:
    """'latest' -> '0.27', None/'' -> 'system'; other names as given (stripped, no 'v')."""
    if not name:
        return SYSTEM
    name = name.strip().removeprefix("v")
    return ALIASES.get(name, name)


def system() -> Bpftrace:
    """The bpftrace on PATH (Debian 12: 0.17)."""
    path = shutil.which("bpftrace")
    text = capabilities().bpftrace or ""
    if path is not None and not text:  # the capability probe's 20 s ran out (a TCG guest)
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            done = subprocess.run(
                [path, "--version"], capture_output=True, text=True, timeout=300, check=False
            )
            text = done.stdout.strip()
    if path is None or not text:
        raise BpftraceVersionError(
            "no bpftrace on PATH", "install it (scripts/setup.sh) or pass --bpftrace 0.27"
        )
    return Bpftrace(SYSTEM, "bpftrace", text, f"{path} (host package)")


def resolve(name: str | None = None, *, build: bool = True) -> Bpftrace:
    """The bpftrace for `--bpftrace NAME`: the system's when NAME is empty, 'system' or the
    system's own version (e.g. '0.17'); a cached root's for a known newer release."""
    wanted = canonical(name)
    if wanted == SYSTEM:
        return system()
    for recipe in RECIPES.values():  # '0.27' or '0.27.0'
        if _matches(wanted, recipe.version):
            return ensure_root(recipe, build=build)
    with contextlib.suppress(BpftraceVersionError):
        found = system()
        if _matches(found.short_version, wanted):
            return found
    raise BpftraceVersionError(
        f"no bpftrace {name!r} here",
        f"choose one of: {', '.join(available_names())}",
    )


def _matches(version: str, wanted: str) -> bool:
    """'0.17.0' matches '0.17' and '0.17.0' but not '0.1' (a name starting a version)."""
    return version == wanted or version.startswith(wanted + ".")


def available_names() -> list[str]:
    """Names `--bpftrace` accepts: system, its version, each recipe and alias."""
    names = [SYSTEM]
    with contextlib.suppress(BpftraceVersionError):
        major, minor, _ = system().version
        names.append(f"{major}.{minor}")
    return [*names, *RECIPES, *ALIASES]


def split_names(text: str) -> list[str]:
    """'0.17,0.27' -> ['0.17', '0.27'] (the matrix's list of versions)."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise BpftraceVersionError("no bpftrace version given", "e.g. --bpftrace 0.17,0.27")
    return names


def root_path(recipe: Recipe) -> Path:
    return roots_dir() / recipe.suite


def built(recipe: Recipe) -> Bpftrace | None:
    """The recipe's bpftrace when its root is already built, else None (nothing is run)."""
    base = root_path(recipe)
    manifest = base / "manifest.json"
    if not manifest.is_file() or not (base / "root" / "usr" / "bin" / "bpftrace").is_file():
        return None
    info = json.loads(manifest.read_text())
    launchers = _write_launchers(recipe, base)
    return Bpftrace(
        recipe.version,
        str(launchers["bpftrace"]),
        str(info["bpftrace"]),
        f"Debian {recipe.suite} root in {base} (mmdebstrap, {info.get('mirror', '?')})",
        str(base / "root"),
    )


def ensure_root(recipe: Recipe, *, build: bool = True) -> Bpftrace:
    """The recipe's bpftrace, building its root first if needed (once, even concurrently)."""
    found = built(recipe)
    if found is not None:
        return found
    if not build:
        raise BpftraceVersionError(
            f"bpftrace {recipe.version} is not built yet",
            f"run `python -m harness.host.bpftrace_versions {recipe.version}` "
            "(mmdebstrap, about a minute)",
        )
    base = root_path(recipe)
    base.parent.mkdir(parents=True, exist_ok=True)
    with locked(base.parent / f"{recipe.suite}.lock"):
        found = built(recipe)  # another process built it while we waited
        if found is not None:
            return found
        tmp = base.parent / f".{recipe.suite}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)  # a stale half-build: we hold the lock
        try:
            _build(recipe, tmp)
            tmp.rename(base)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    found = built(recipe)
    assert found is not None
    return found


def _build(recipe: Recipe, tmp: Path) -> None:
    """mmdebstrap the suite with the package into tmp/root, add the wrapper and a manifest."""
    for tool in ("mmdebstrap", "unshare", "chroot"):
        if shutil.which(tool) is None:
            raise BpftraceVersionError(
                f"{tool} is not installed; it builds the bpftrace {recipe.version} root",
                "apt-get install mmdebstrap util-linux (scripts/setup.sh does)",
            )
    if os.geteuid() != 0:
        raise BpftraceVersionError(
            f"building the bpftrace {recipe.version} root needs root", "run as root (sudo)"
        )
    mirror = host_mirror()
    tmp.mkdir(parents=True)
    argv = [
        "mmdebstrap",
        "--variant=apt",
        f"--include={recipe.package}",
        # Release files of a frozen mirror snapshot can be past their Valid-Until date.
        "--aptopt=Acquire::Check-Valid-Until \"false\"",
        recipe.suite,
        str(tmp / "root"),
        mirror,
    ]
    _run_with_progress(argv, tmp / "build.log", f"bpftrace {recipe.version} root")
    wrapper = _write_launchers(recipe, tmp)["bpftrace"]
    done = subprocess.run(
        [str(wrapper), "--version"], capture_output=True, text=True, timeout=60, check=False
    )
    text = done.stdout.strip()
    if done.returncode != 0 or not _matches(_version_of(text), recipe.version):
        raise BpftraceVersionError(
            f"the {recipe.suite} root's bpftrace says {text or done.stderr.strip()!r}, "
            f"not {recipe.version}",
            f"update RECIPES in {__name__} to the suite that carries it",
        )
    manifest = {
        "bpftrace": text,
        "suite": recipe.suite,
        "mirror": mirror,
        "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": argv,
    }
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


def _write_launchers(recipe: Recipe, base: Path) -> dict[str, Path]:
    """The wrapper scripts next to the root, by name. The chroot wrapper's file is named by its
    content (`bpftrace-<sha>`): checkouts of different harness versions share one cache, and
    none may rewrite the wrapper another is running. A read-only cache (a VM guest's view)
    must already hold it: the host writes it first (harness.cli.options.prepare_bpftrace)."""
    import hashlib

    out = {}
    for name, template in LAUNCHERS.items():
        text = template.format(version=recipe.version, suite=recipe.suite)
        if name == "bpftrace":
            name = f"bpftrace-{hashlib.sha256(text.encode()).hexdigest()[:10]}"
        path = base / name
        if not path.is_file() or path.read_text() != text:
            tmp = base / f".{name}.{os.getpid()}"
            try:
                tmp.write_text(text)
                tmp.chmod(0o755)
                tmp.replace(path)
            except OSError as err:
                raise BpftraceVersionError(
                    f"cannot write the bpftrace {recipe.version} wrapper {path}: {err.strerror}",
                    "resolve the release on the host first (harness run ... --bpftrace "
                    f"{recipe.version} there), or make {base} writable",
                ) from None
        out["bpftrace" if name.startswith("bpftrace-") and "hostfs" not in name else name] = path
    # Checkouts from before content-named wrappers look for a plain `bpftrace`; without it
    # they would try to rebuild the root. Keep one (never rewritten here).
    legacy = base / "bpftrace"
    if not legacy.exists() and os.access(base, os.W_OK):
        legacy.write_text(out["bpftrace"].read_text())
        legacy.chmod(0o755)
    return out


def _version_of(text: str) -> str:
    m = re.search(r"(\d+\.\d+\.\d+)", text)
    return m.group(1) if m else ""


def _run_with_progress(argv: list[str], log: Path, what: str) -> None:
    """Run a long build; on a terminal show its latest step on one line, else stay quiet."""
    tty = sys.stderr.isatty()
    t0 = time.monotonic()
    if tty:
        print(f"building the {what} (first use, about a minute)...", file=sys.stderr)
    with log.open("w") as out, subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            out.write(line)
            if tty and line.startswith("I: "):
                step = line[3:].strip()[:70]
                print(f"\r\033[K  {time.monotonic() - t0:4.0f}s {step}", end="", file=sys.stderr)
        status = proc.wait()
    if tty:
        print(file=sys.stderr)
    if status != 0:
        tail = log.read_text().strip().splitlines()[-1:] or ["no output"]
        raise BpftraceVersionError(
            f"building the {what} failed ({argv[0]} exit {status}): {tail[0]}",
            f"see {log}; check that the Debian mirror is reachable",
        )


def listing() -> list[tuple[str, str, str]]:
    """(name, version, origin) for every bpftrace `--bpftrace` can name, built or not."""
    rows = []
    try:
        sys_bt = system()
        major, minor, _ = sys_bt.version
        rows.append((f"{SYSTEM} ({major}.{minor})", sys_bt.version_text, sys_bt.origin))
    except BpftraceVersionError as err:
        rows.append((SYSTEM, "missing", str(err)))
    for name, recipe in RECIPES.items():
        aliases = [a for a, target in ALIASES.items() if target == name]
        label = name + (f" ({', '.join(aliases)})" if aliases else "")
        found = built(recipe)
        if found is not None:
            rows.append((label, found.version_text, found.origin))
        else:
            rows.append(
                (
                    label,
                    "not built",
                    f"Debian {recipe.suite}'s {recipe.package}, built on first use into "
                    f"{root_path(recipe)} (mmdebstrap)",
                )
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    """`python -m harness.host.bpftrace_versions [NAME ...]`: build (or find) each root."""
    names = (sys.argv[1:] if argv is None else argv) or list(RECIPES)
    try:
        for name in names:
            found = resolve(name)
            print(f"{found.name}: {found.version_text} ({found.origin})")
    except HarnessError as err:
        print(f"bpftrace_versions: error: {err}", file=sys.stderr)
        return err.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
