"""ktrace's tracepoint equivalent counts the UDP sends of the workload, not every packet queued
under its pid: net:net_dev_queue also fires for the TCP packets a process sends (and for those
a softirq sends while it is current), which kprobe:udp_send_skb never sees."""

from __future__ import annotations

import shlex
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

import harness
from harness.output.frames import to_frames
from harness.output.parse import parse_text
from harness.spec.codegen import WORKLOAD_PID, generate
from harness.spec.model import ProbeSpec

# Sends N datagrams to its own UDP socket while streaming over a TCP loopback connection, so
# TCP packets (data and ACKs) are queued under the same pid; prints the datagrams it sent.
WORKLOAD = r"""
import socket, sys, threading
n = int(sys.argv[1])
server = socket.create_server(("127.0.0.1", 0))
def drain():
    conn, _ = server.accept()
    while conn.recv(65536):
        pass
threading.Thread(target=drain, daemon=True).start()
tcp = socket.create_connection(server.getsockname())
rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
rx.bind(("127.0.0.1", 0))
tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sent = 0
for _ in range(n):
    tcp.sendall(b"x" * 3000)
    sent += tx.sendto(b"y" * 100, rx.getsockname()) > 0
    rx.recv(200)
tcp.close()
print("udp datagrams sent", sent)
"""


def _stacks_total(spec: ProbeSpec, workload: list[str]) -> tuple[int, str]:
    """Runs the spec's bpftrace program (pid: bpftrace's own child) around the workload."""
    program = generate(spec, pid=WORKLOAD_PID).replace(WORKLOAD_PID, "cpid")  # dry-run form
    done = subprocess.run(["bpftrace", "-e", program, "-c", shlex.join(workload)],
                          capture_output=True, text=True, timeout=120, check=True)
    frames = to_frames(parse_text(done.stdout))
    return int(frames["@stacks"]["value"].sum()), done.stdout


@pytest.mark.usefixtures("needs_bpf")
def test_tcp_packets_of_the_workload_are_not_counted_as_udp_sends(tmp_path: Path) -> None:
    n = 30
    script = tmp_path / "udp_and_tcp.py"
    script.write_text(WORKLOAD)
    workload = [sys.executable, "-S", str(script), str(n)]
    spec = harness.catalog.get("ktrace").equivalents["tracepoint"]
    counted, stdout = _stacks_total(spec, workload)
    # The workload's own count is the reading to trust: exactly its datagrams.
    assert f"udp datagrams sent {n}" in stdout
    assert counted == n
    # Without the UDP filter the same workload's TCP packets are counted too: what the filter
    # is there for (and what this test would miss if the workload sent no TCP packet).
    unfiltered, _ = _stacks_total(replace(spec, predicates=()), workload)
    assert unfiltered > n
