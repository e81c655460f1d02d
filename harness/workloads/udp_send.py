#!/usr/bin/env python3
"""Deterministic UDP workload: exactly N datagrams of given sizes to a bound loopback receiver.

Senders are connected sockets, so the kernel gives each a random flow hash (sk_txhash) that every
skb it sends carries in skb->hash: --sockets K gives K distinct hash values to collect.
The receiver is bound first so no ICMP port-unreachable replies add sends of their own. The pid is
printed first and, unless --no-wait, the sender waits for a line on stdin ("go") so tracers can
attach with a filter on that pid before the first datagram leaves.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time
from types import SimpleNamespace


def parse_sizes(text: str) -> list[int]:
    """'1,100,1000' -> [1, 100, 1000]; each size must fit one loopback UDP datagram."""
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise SystemExit(f"udp_send: --sizes takes integers like 1,100, got {text!r}") from None
    if not sizes or any(s < 0 or s > 65507 for s in sizes):
        raise SystemExit("udp_send: each size must be between 0 and 65507 bytes")
    return sizes


OPTIONS = {"--count": "count", "--sizes": "sizes", "--sockets": "sockets"}


def quick_args(argv: list[str]) -> SimpleNamespace | None:
    """The options read without argparse (its import takes 0.5 s of each run in a TCG guest),
    for an argv made only of them with well-formed values; None for anything else (help, a bad
    value), which argparse reads and answers."""
    args = SimpleNamespace(count=100, sizes="1,100,1000", sockets=2, no_wait=False)
    words = iter(argv)
    for word in words:
        if word == "--no-wait":
            args.no_wait = True
            continue
        name, eq, value = word.partition("=")
        if name not in OPTIONS:
            return None
        value = value if eq else next(words, "")
        if name != "--sizes" and not value.isdigit():
            return None
        setattr(args, OPTIONS[name], value if name == "--sizes" else int(value))
    return args


def full_args(argv: list[str] | None) -> SimpleNamespace:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--count", type=int, default=100, help="datagrams to send (default 100)")
    ap.add_argument("--sizes", default="1,100,1000", help="payload sizes, cycled")
    ap.add_argument("--sockets", type=int, default=2, help="connected senders, used in turn")
    ap.add_argument("--no-wait", action="store_true", help="send at once, without waiting for 'go'")
    return SimpleNamespace(**vars(ap.parse_args(argv)))


def main(argv: list[str] | None = None) -> int:
    args = quick_args(sys.argv[1:] if argv is None else argv) or full_args(argv)
    if args.count < 0 or args.sockets < 1:
        raise SystemExit("udp_send: --count must be >= 0 and --sockets >= 1")
    sizes = parse_sizes(args.sizes)

    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
    rx.bind(("127.0.0.1", 0))
    senders = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(args.sockets)]
    for tx in senders:
        tx.connect(rx.getsockname())
    print(os.getpid(), flush=True)
    if not args.no_wait:
        sys.stdin.readline()

    received = 0
    start, cpu_start = time.monotonic_ns(), time.thread_time_ns()
    for i in range(args.count):
        senders[i % len(senders)].send(b"x" * sizes[i % len(sizes)])
        # Drain as we go so the receive buffer never drops (and so never sends anything else).
        rx.setblocking(False)
        try:
            while True:
                rx.recv(65536)
                received += 1
        except BlockingIOError:
            pass
    rx.setblocking(True)
    rx.settimeout(5)
    while received < args.count:
        rx.recv(65536)
        received += 1
    cpu = time.thread_time_ns() - cpu_start  # loopback's softirq work runs in this thread too
    elapsed = time.monotonic_ns() - start
    print(f"sent {args.count} received {received}", flush=True)
    # compare.bench reads it: wall time and this thread's CPU time around the loop
    print(f"events {args.count} elapsed_ns {elapsed} cpu_ns {cpu}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
