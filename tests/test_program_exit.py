"""A program that ends itself (exit()) keeps every line it printed (real bpftrace)."""

from __future__ import annotations

import pytest

from harness.host.parsed import run_bpftrace

pytestmark = pytest.mark.kernel

LINES = 30
PROGRAM = ('BEGIN { printf("READY_EXIT\\n"); $i = 0; '
           f'unroll({LINES}) {{ printf("line %d\\n", $i); $i++; }} @a[1] = 7; exit(); }}')


@pytest.mark.parametrize("attempt", range(5))
def test_exit_in_begin_keeps_every_printf_line_and_the_maps(attempt: int) -> None:
    # The runner used to Ctrl-C a run with no workload and no duration as soon as it attached,
    # and closed the pty of an exited bpftrace unread: printf lines and maps went missing.
    result = run_bpftrace(PROGRAM, "READY_EXIT")
    assert result.output is not None and result.error is None
    assert result.output.lines == [f"line {i}" for i in range(LINES)]  # the program's count
    assert [(m.name, m.values) for m in result.output.maps] == [("@a", [7])]
    assert not result.interrupted
