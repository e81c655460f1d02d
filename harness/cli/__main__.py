"""`python -m harness.cli`: the same as the `harness` command (entry(): no teardown window in
which a late SIGINT/SIGTERM would meet Python's default handlers)."""

from harness.cli import entry

entry()
