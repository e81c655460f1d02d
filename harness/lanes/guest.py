"""The VM lane's guest agent: runs inside the booted guest and serves one JSON request per run.

    python -m harness.lanes.guest DIR

DIR is the read-write directory the host shares with the guest. The agent answers `ready.json`
with the guest kernel's facts, then serves `req/<n>.json` with `resp/<n>.json` until asked to
shut down. A run whose program filters on the workload's pid asks the host for the program
text once the pid is known (`resp/<n>.pid`, answered by `req/<n>.program`), so codegen stays on
the host. Only bpftrace, the twin loader and the workload run here: under TCG every instruction
is emulated, so the agent imports no parser and no pandas (the host parses the raw text), and
one booted guest serves a whole series of runs. Requests and answers are the typed records of
harness.lanes.protocol through harness.lanes.wire, the codec the SSH agent uses too; what
goes back is the raw capture.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from harness.compare.gather import GatherRequest, gather
from harness.host.runner import RunRequest
from harness.lanes import protocol, wire
from harness.lanes.agent import kernel_facts
from harness.lanes.protocol import BenchRequest

POLL_S = 0.05


def _write_json(path: Path, data: object) -> None:
    """Write atomically: the other side polls for the name, so it must never see half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(wire.encode(data)))
    tmp.replace(path)


class Agent:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.req = root / "req"
        self.resp = root / "resp"

    def program_for(self, n: str, given: str | None) -> Callable[[int | None], str]:
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
            run = wire.decode(RunRequest, req)
            return wire.record(protocol.RunAnswer(
                protocol.run(self.program_for(n, run.program), run)))
        if op == "gather":
            return wire.record(gather(self.program_for(n, None),
                                               wire.decode(GatherRequest, req)))
        if op == "bench":
            return wire.record(protocol.bench(wire.decode(BenchRequest, req),
                                              self.program_for(n, None)))
        raise ValueError(f"unknown request op {op!r}")

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
                    answer = {"ok": False, "error": wire.error_dict(err)}
                _write_json(self.resp / f"{n}.json", answer)

    @contextlib.contextmanager
    def cancellable(self, n: str) -> Iterator[None]:
        """While request `n` is served, the host's `req/<n>.stop` (its user pressed Ctrl-C, or
        SIGTERM came: the file holds the signal's number) is a SIGINT here: the run stops its
        tracers the normal way and answers with what they gathered, stopped by that signal
        (harness.host.runner). Outside, a late SIGINT is ignored: the agent serves on."""
        done = threading.Event()
        serving = [True]
        signum = [int(signal.SIGINT)]

        def on_sigint(_: int, frame: object) -> None:
            if serving[0]:
                stop = KeyboardInterrupt()
                stop.signum = signum[0]  # type: ignore[attr-defined]
                raise stop

        def watch() -> None:
            stop = self.req / f"{n}.stop"
            while not done.wait(POLL_S):
                if stop.exists():
                    with contextlib.suppress(OSError, ValueError):
                        signum[0] = int(stop.read_text() or signal.SIGINT)
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
    (root / "req").mkdir(exist_ok=True)
    (root / "resp").mkdir(exist_ok=True)
    facts = kernel_facts()  # the SSH agent's hello: what only the guest kernel can answer
    facts["agent_started_uptime_s"] = facts["uptime_s"]
    _write_json(root / "ready.json", facts)
    Agent(root).serve()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
