"""What the comparisons need of the kernel a run happened on, as a type: a lane offers it.

compare sits below the lanes (which run its machine side: compare.gather, compare.bench), so
it names the lane by what it asks of it, not by its class: no import reaches up.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from harness.host.capabilities import Capabilities
    from harness.host.symbols import Kallsyms


class Kernel(Protocol):
    """The kernel under test: what it can trace, its symbols, what run.json says of it."""

    def capabilities(self) -> Capabilities: ...

    def kallsyms(self) -> Kallsyms: ...

    def describe(self) -> dict[str, Any]: ...
