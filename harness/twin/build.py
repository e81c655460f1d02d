"""Build the libbpf CO-RE twin: vmlinux.h from BTF, clang -target bpf, skeleton, loader.

Every build here is an entry of the one C build cache (harness.cbuild, shared with the native
workloads): keyed by everything that goes in (sources and headers, the BTF's vmlinux.h, arch
define and flags, the compilers), so a second build is a lookup. The seed's gotcha, a BPF build
without `-D__TARGET_ARCH_<arch>`, is recognised and reported with that define as the fix.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from harness.cbuild import cache_key, cache_root, cached
from harness.errors import HarnessError
from harness.spec.codegen_c import SHARED_HEADER

BTF_PATH = Path("/sys/kernel/btf/vmlinux")
# The hand-written twin's sources (tests/twin_example: the seed's example, kept as a test
# fixture), built by build(src); mapdump.h is the package's, shared with every loader.
SOURCES = ("ktrace.bpf.c", "ktrace.c", "ktrace.h")
DUMP_HEADER = "mapdump.h"  # the map dump every loader prints (twinload.c and ktrace.c)
TWIN_HEADER = SHARED_HEADER  # the fixed C every generated twin #includes
# uname -m -> the arch name bpf_tracing.h expects in __TARGET_ARCH_<arch>.
TARGET_ARCH = {
    "x86_64": "x86",
    "i386": "x86",
    "i686": "x86",
    "aarch64": "arm64",
    "arm64": "arm64",
    "armv7l": "arm",
    "s390x": "s390",
    "ppc64le": "powerpc",
    "ppc64": "powerpc",
    "riscv64": "riscv",
    "mips64": "mips",
    "loongarch64": "loongarch",
    "sparc64": "sparc",
}
ARCH_GOTCHA = re.compile(
    r"Must specify a BPF target arch|implicit declaration of function '(PT_REGS_PARM\d)'"
    r"|failed to find BTF for extern '(PT_REGS_PARM\d)'"
)


class BuildError(HarnessError):
    """The twin could not be built; the message names the failing step and the fix."""


@dataclass(frozen=True)
class BuildOutputs:
    """What a build produced: the CO-RE object (one for every kernel), the loader, their hash."""

    bpf_obj: Path
    loader: Path
    sha256: str
    arch_define: str


def target_arch(machine: str | None = None) -> str:
    """`uname -m` -> bpf_tracing.h's arch name, or a one-line error for an unknown machine."""
    machine = machine or platform.machine()
    try:
        return TARGET_ARCH[machine]
    except KeyError:
        raise BuildError(
            f"no BPF target arch known for machine '{machine}'",
            "pass arch= with the name bpf_tracing.h uses (x86, arm64, s390, powerpc, riscv...)",
        ) from None


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def source_dir() -> Path:
    """The C sources shipped as package data."""
    return Path(str(resources.files("harness.twin")))


def vmlinux_header(btf: Path = BTF_PATH) -> Path:
    """vmlinux.h dumped from BTF by bpftool, cached by the BTF's sha256."""
    if not btf.exists():
        raise BuildError(
            f"kernel BTF not found at {btf}",
            "use a kernel built with CONFIG_DEBUG_INFO_BTF=y (or --lane vm)",
        )
    digest = sha256_file(btf)
    out = cache_root() / "vmlinux" / f"{digest[:16]}.h"
    if not out.exists():
        text = _run(["bpftool", "btf", "dump", "file", str(btf), "format", "c"], "bpftool btf dump")
        out.parent.mkdir(parents=True, exist_ok=True)
        # A private temporary name per writer, then an atomic rename: concurrent first runs
        # each publish a complete, identical file.
        fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=out.name, suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(text)
            os.replace(tmp, out)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    return out


def build(
    src: Path,
    *,
    arch: str | None = "auto",
    btf: Path = BTF_PATH,
    extra_cflags: tuple[str, ...] = (),
) -> BuildOutputs:
    """Build (or fetch from cache) the hand-written twin in `src` (ktrace.bpf.c, its loader
    ktrace.c, ktrace.h), with the package's mapdump.h.

    `arch=None` builds without the arch define, which is how the seed's gotcha is reproduced.
    """
    define = arch_define(arch)
    header = vmlinux_header(btf)
    sources = [*(src / name for name in SOURCES), source_dir() / DUMP_HEADER]
    for path in sources:
        if not path.exists():
            raise BuildError(f"source file missing: {path}", "pass the directory that holds it")
    key = cache_key(files=sources, texts={"vmlinux.h": header.name},
                    compilers=("clang", "bpftool", "cc"), flags=(define, *extra_cflags))
    out = cached(f"ktrace-{key}", lambda work: _compile(src, work, header, define, extra_cflags))
    bpf_obj = out / "ktrace.bpf.o"
    return BuildOutputs(bpf_obj, out / "ktrace", sha256_file(bpf_obj), define)


def arch_define(arch: str | None) -> str:
    """`-D__TARGET_ARCH_<arch>` for `arch` ('auto': this machine's), '' for None (the seed's
    gotcha, reproduced on purpose)."""
    return f"-D__TARGET_ARCH_{target_arch() if arch == 'auto' else arch}" if arch else ""


def _compile(
    src: Path, work: Path, header: Path, define: str, extra_cflags: tuple[str, ...]
) -> None:
    """clang -target bpf, bpftool gen skeleton, cc the loader: all into `work`."""
    shutil.copy(header, work / "vmlinux.h")
    cflags = ["-g", "-O2", "-target", "bpf", *([define] if define else []), *extra_cflags]
    _run(
        ["clang", *cflags, f"-I{work}", f"-I{src}", "-c", str(src / "ktrace.bpf.c"),
         "-o", str(work / "ktrace.bpf.o")],
        "clang -target bpf",
    )
    skel = _run(["bpftool", "gen", "skeleton", str(work / "ktrace.bpf.o"), "name", "ktrace_bpf"],
                "bpftool gen skeleton")
    (work / "ktrace.skel.h").write_text(skel)
    libbpf_flags = _run(["pkg-config", "--cflags", "--libs", "libbpf"], "pkg-config libbpf").split()
    _run(
        ["cc", "-O2", "-g", "-Wall", f"-I{work}", f"-I{src}", f"-I{source_dir()}",
         str(src / "ktrace.c"),
         "-o", str(work / "ktrace"), *libbpf_flags],
        "cc (loader)",
    )


def _run(argv: list[str], step: str) -> str:
    """Run one build step; on failure raise the one-line error that says what to do."""
    if shutil.which(argv[0]) is None:
        raise BuildError(f"{argv[0]} is not installed", "run scripts/setup.sh")
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode == 0:
        return done.stdout
    raise explain_build_failure(step, done.stderr)


def explain_build_failure(step: str, stderr: str) -> BuildError:
    """Turn compiler/libbpf diagnostics into one line naming the cause and the fix."""
    m = ARCH_GOTCHA.search(stderr)
    if m:
        arch = TARGET_ARCH.get(platform.machine(), "<arch>")
        what = m.group(0)
        return BuildError(
            f"{step}: BPF target arch not defined ({what})",
            f"pass -D__TARGET_ARCH_{arch} to clang (bpf_tracing.h cannot infer the arch "
            "under -target bpf)",
        )
    m = re.search(r"fatal error: '([^']+)' file not found", stderr)
    if m:
        return BuildError(
            f"{step}: header '{m.group(1)}' not found",
            "install libbpf-dev (scripts/setup.sh) or add its directory with -I",
        )
    first = next((ln for ln in stderr.splitlines() if "error" in ln), stderr.strip()[:200])
    return BuildError(f"{step} failed: {first.strip()}", "see the compiler output above")


# --- generated twins: one generic loader, one .bpf.o per generated C text ----------------------

LOADER_SOURCE = "twinload.c"


@dataclass(frozen=True)
class TwinObject:
    """A compiled generated twin: the CO-RE object, its C source beside it, clang's warnings."""

    bpf_obj: Path
    source: Path
    sha256: str
    arch_define: str
    warnings: str


def generic_loader() -> Path:
    """The one loader of every generated twin (twinload.c), built once per source and libbpf.
    Linked statically (libbpf, libelf, zlib), as libbpf-bootstrap's tools are: the same binary
    runs here, in a VM guest and on a remote host of the SSH lane, whatever libbpf it has."""
    src = source_dir() / LOADER_SOURCE
    libbpf_flags = _run(["pkg-config", "--static", "--cflags", "--libs", "libbpf"],
                        "pkg-config libbpf").split()
    flags = ("-O2", "-Wall", "-static", "-s")
    key = cache_key(files=(src, source_dir() / DUMP_HEADER), compilers=("cc",),
                    flags=(*flags, *libbpf_flags))

    def make(work: Path) -> None:
        _run(["cc", *flags, f"-I{source_dir()}", str(src), "-o", str(work / "twinload"),
              *libbpf_flags], "cc (twinload)")

    return cached(f"twinload-{key}", make) / "twinload"


def build_twin(
    c_text: str, *, arch: str | None = "auto", btf: Path = BTF_PATH, name: str = "twin"
) -> TwinObject:
    """Compile generated C (cached by its text, the shared twin header, the BTF header and the
    compiler) with -Wall. The shared header is copied beside the source, so the cached build
    directory rebuilds on its own (given a vmlinux.h)."""
    define = arch_define(arch)
    header = vmlinux_header(btf)
    shared = source_dir() / TWIN_HEADER
    cflags = ("-g", "-O2", "-Wall", "-target", "bpf", *([define] if define else []))
    source = f"{name}.bpf.c"
    key = cache_key(files=(shared,), texts={source: c_text, "vmlinux.h": header.name},
                    compilers=("clang",), flags=cflags)

    def make(work: Path) -> None:
        shutil.copy(header, work / "vmlinux.h")
        (work / source).write_text(c_text)
        shutil.copy(shared, work / TWIN_HEADER)
        argv = ["clang", *cflags, f"-I{work}", "-c", str(work / source),
                "-o", str(work / f"{name}.bpf.o")]
        if shutil.which("clang") is None:
            raise BuildError("clang is not installed", "run scripts/setup.sh")
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise explain_build_failure("clang -target bpf (generated twin)", done.stderr)
        (work / "clang.log").write_text(done.stderr)
        (work / "vmlinux.h").unlink()

    out = cached(f"twin-{key}", make)
    obj = out / f"{name}.bpf.o"
    return TwinObject(obj, out / source, sha256_file(obj), define,
                      (out / "clang.log").read_text())
