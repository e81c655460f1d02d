"""The seed's hand-written ktrace twin (ktrace.bpf.c, its loader ktrace.c, ktrace.h): a test
fixture that the generated twin is compared with, not part of the package."""

from pathlib import Path

EXAMPLE = Path(__file__).resolve().parent
