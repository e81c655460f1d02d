"""The VM lane's guest agent: runs inside the booted guest and serves one JSON request per run.

    python -m harness.lanes.guest DIR

DIR is the read-write directory the host shares with the guest. The agent answers `ready.json`
with the guest kernel's facts, then serves `req/<n>.json` with `resp/<n>.json` until asked to
shut down. A run whose program filters on the workload's pid asks the host for the program
text once the pid is known (`resp/<n>.pid`, answered by `req/<n>.program`), so codegen stays on
the host. Only bpftrace, the twin loader and the workload run here: under TCG every instruction
is emulated, so the agent imports no parser and no pandas (the host parses the raw text), and
one booted guest serves a whole series of runs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import platform
import shutil
import signal
import sys
import threading
import time
import traceback
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

POLL_S = 0.05


def _write_json(path: Path, data: object) -> None:
    """Write atomically: the other side polls for the name, so it must never see half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, default=str))
    tmp.replace(path)


def _without_parser() -> None:
    """The runner parses what bpftrace printed; here that work belongs to the host, so the
    parser module is replaced by one that returns nothing (no lark import, no grammar)."""
    stub = types.ModuleType("harness.output.parse")
    stub.parse_text = lambda text, **_: None  # type: ignore[attr-defined]
    sys.modules["harness.output.parse"] = stub


def kernel_facts() -> dict[str, Any]:
    """What only the guest kernel can answer; tool versions come from the host (same root)."""
    from harness.host.capabilities import (
        BTF,
        kprobes_built_in,
        lockdown_mode,
        mount_tracefs,
        tracefs_root,
    )

    mounted = mount_tracefs()
    return {
        "kernel": platform.release(),
        "arch": platform.machine(),
        "root": os.geteuid() == 0,
        "btf": BTF.exists(),
        "tracefs": tracefs_root(),
        "kprobes": kprobes_built_in(),
        "lockdown": lockdown_mode(),
        "mounted": mounted,
    }


def error_dict(err: BaseException) -> dict[str, Any]:
    return {
        "module": type(err).__module__,
        "type": type(err).__name__,
        "cause": getattr(err, "cause", str(err)),
        "fix": getattr(err, "fix", ""),
        "traceback": "".join(traceback.format_exception(err))[-2000:],
    }


def result_dict(result: object) -> dict[str, Any]:
    """A runner RunResult as JSON-ready data (the parsed output is the host's job)."""
    fields = {f.name: getattr(result, f.name) for f in dataclasses.fields(result)}  # type: ignore[arg-type]
    fields["output"] = None
    err = fields.pop("error", None)
    fields["error"] = error_dict(err) if err is not None else None
    return fields


class Agent:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.req = root / "req"
        self.resp = root / "resp"

    def program_for(self, n: str, given: str | None) -> Any:
        """The program text: given in the request, or asked of the host once the pid is known."""

        def ask(pid: int | None) -> str:
            if given is not None:
                return given
            _write_json(self.resp / f"{n}.pid", {"pid": pid})
            answer = self.req / f"{n}.program"
            while not answer.exists():
                time.sleep(POLL_S)
            text = answer.read_text()
            answer.unlink()  # a bench asks again for each round's workload pid
            return text

        return ask

    def handle(self, n: str, req: dict[str, Any]) -> dict[str, Any]:
        op = req["op"]
        if op == "kallsyms":
            dest = self.root / "kallsyms.txt"
            with open("/proc/kallsyms", "rb") as src, open(dest, "wb") as out:
                shutil.copyfileobj(src, out)
            return {"path": str(dest)}
        if op == "run":
            from harness.host.runner import run_bpftrace

            result = run_bpftrace(
                self.program_for(n, req.get("program")),
                req["marker"],
                workload=req.get("workload"),
                duration=req.get("duration"),
                timeout=req["timeout"],
                bpftrace=req.get("bpftrace", "bpftrace"),
            )
            return {"result": result_dict(result)}
        if op == "gather":
            from harness.compare.gather import gather

            got = gather(
                self.program_for(n, None),
                req["marker"],
                workload=req["workload"],
                loader=Path(req["loader"]),
                obj=Path(req["obj"]),
                setting_names=req["setting_names"],
                func=req.get("func"),
                pid_offset=req.get("pid_offset", 0),
                cgroup=req.get("cgroup"),
                timeout=req["timeout"],
                bpftrace=req.get("bpftrace", "bpftrace"),
            )
            return {
                "result": result_dict(got.bpftrace),
                "dumps": {
                    name: {
                        **dataclasses.asdict(d),
                        "entries": [[k.hex(), v.hex()] for k, v in d.entries],
                    }
                    for name, d in got.dumps.items()
                },
                "log": got.log,
                "workload_pid": got.workload_pid,
                "libbpf_attach_s": got.libbpf_attach_s,
            }
        if op == "bench":
            return self.bench(n, req)
        raise ValueError(f"unknown request op {op!r}")

    def bench(self, n: str, req: dict[str, Any]) -> dict[str, Any]:
        """compare.bench's rounds on this kernel. Tracers come as data (argv templates, the
        ready line); the host generates each round's program and counts the events from each
        tracer output returned: a sample's events_counted is its output's index until then."""
        from harness.compare.bench import Rounds, StoppedRounds, Tracer, Workload, run_rounds

        outputs: list[str] = []
        ask = self.program_for(n, None)

        def keep(out: str) -> int:
            outputs.append(out)
            return len(outputs) - 1

        def tracer(t: dict[str, Any]) -> Tracer:
            words, prefix, text = t["template"], t["ready_prefix"], t["ready_text"]
            return Tracer(
                t["mode"],
                lambda pid: [
                    ask(pid) if w == "{program}" else w.replace("{pid}", str(pid)) for w in words
                ],
                lambda line: (prefix is not None and line.startswith(prefix))
                or (text is not None and text in line),
                keep,
            )

        try:
            samples = run_rounds(
                Workload(**req["workload"]),
                [tracer(t) for t in req["tracers"]],
                Rounds(**req["plan"]),
            )
        except StoppedRounds as stop:  # the host's Ctrl-C: the runs that finished go back
            return {"samples": [dataclasses.asdict(s) for s in stop.samples],
                    "outputs": outputs, "stopped": True}
        return {"samples": [dataclasses.asdict(s) for s in samples], "outputs": outputs}

    def serve(self) -> None:
        while True:
            names = sorted(p.name for p in self.req.glob("*.json"))
            if not names:
                time.sleep(POLL_S)
                continue
            for name in names:
                path = self.req / name
                req = json.loads(path.read_text())
                path.rename(path.with_suffix(".taken"))
                n = name.removesuffix(".json")
                if req["op"] == "shutdown":
                    _write_json(self.resp / f"{n}.json", {"ok": True})
                    return
                try:
                    with self.cancellable(n):
                        answer = {"ok": True, **self.handle(n, req)}
                except BaseException as err:  # every failure goes back to the host
                    answer = {"ok": False, "error": error_dict(err)}
                _write_json(self.resp / f"{n}.json", answer)

    @contextlib.contextmanager
    def cancellable(self, n: str) -> Iterator[None]:
        """While request `n` is served, the host's `req/<n>.stop` (its user pressed Ctrl-C)
        is a SIGINT here: the run stops its tracers the normal way and answers with what they
        gathered (harness.host.runner). Outside, a late SIGINT is ignored: the agent serves on."""
        done = threading.Event()
        serving = [True]

        def on_sigint(signum: int, frame: object) -> None:
            if serving[0]:
                raise KeyboardInterrupt

        def watch() -> None:
            stop = self.req / f"{n}.stop"
            while not done.wait(POLL_S):
                if stop.exists():
                    os.kill(os.getpid(), signal.SIGINT)
                    return

        old = signal.signal(signal.SIGINT, on_sigint)
        watcher = threading.Thread(target=watch, name="stop-watch", daemon=True)
        watcher.start()
        try:
            yield
        finally:
            serving[0] = False
            done.set()
            watcher.join()
            signal.signal(signal.SIGINT, old)


def main(argv: list[str]) -> int:
    root = Path(argv[1])
    _without_parser()
    (root / "req").mkdir(exist_ok=True)
    (root / "resp").mkdir(exist_ok=True)
    facts = kernel_facts()
    facts["agent_started_uptime_s"] = float(Path("/proc/uptime").read_text().split()[0])
    _write_json(root / "ready.json", facts)
    Agent(root).serve()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
