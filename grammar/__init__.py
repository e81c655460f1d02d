"""Grammars shipped as package data (`harness.grammar`); see bpftrace_output.lark."""
