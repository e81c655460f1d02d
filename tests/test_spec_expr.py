"""Spec expressions are parsed, never pasted: hostile spec text cannot add a probe or a map.

The property tests read the generated program back INDEPENDENTLY: with bpftrace's own parser
(`bpftrace -d` prints its AST) and with a small tokenizer written here for the purpose, and
assert the program holds exactly the spec's probes and maps.
"""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from spec_lines import line

from harness.errors import UsageError
from harness.spec import codegen, expr
from harness.spec.model import ProbeSpec

PROBE = "tracepoint:net:net_dev_queue"


def program(spec: ProbeSpec, version: tuple[int, int, int] = (0, 17, 0)) -> str:
    return codegen.generate(spec, None, version, "MK", pid=1234)


def test_the_reported_injections_are_refused_or_escaped() -> None:
    hostile = (
        '1) / { } END { printf("INJECTED\\n"); @injected = 42; } '
        "tracepoint:net:net_dev_queue /(1"
    )
    with pytest.raises(UsageError, match=r"--filter .*unexpected '\)' at column 2"):
        line(PROBE, "--filter", hostile)
    text = program(line(PROBE, "--comm", 'py"thon'))
    assert '/comm == "py\\"thon"/' in text
    text = program(line(PROBE, "--cgroup", '/x"); } END { @a = 1; } BEGIN { ("'))
    assert 'cgroupid("/x\\"); } END { @a = 1; } BEGIN { (\\"")' in text
    with pytest.raises(UsageError, match=r"--arg skb .*unexpected '\)' at column 17"):
        line("kprobe:f", "--arg", "skb=struct sk_buff *) arg0); @x = 1; ((int")
    with pytest.raises(UsageError, match="bad kprobe target"):
        line("kprobe:f { @x = 1; } kprobe:g")


def test_expressions_are_re_emitted_from_the_tree() -> None:
    spec = line(
        "kprobe:udp_send_skb",
        "--arg", "skb=struct sk_buff *",
        "--arg", "n=unsigned int",
        "--hist", "skb->len + n * 2",
        "--filter", "!(skb->len != 3) && -n < 4 || comm == \"a\\\\b\"",
    )
    text = program(spec)
    assert "hist(((struct sk_buff *)arg0)->len + (((uint32)arg1) * 2))" in text
    assert (
        '/((!(((struct sk_buff *)arg0)->len != 3) && (-((uint32)arg1) < 4))'
        ' || (comm == "a\\\\b"))/' in text
    )
    # args.f / args->f written either way follow the bpftrace version.
    tp = line(PROBE, "--sum", "args->len", "--max", "args.len")
    assert "sum(args->len)" in program(tp) and "max(args->len)" in program(tp)
    assert "sum(args.len)" in program(tp, (0, 23, 0))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("--filter", "a b"), "--filter 'a b': unexpected 'b' at column 3"),
        (("--filter", "x =="), "--filter 'x ==': ends early at column 5"),
        (("--hist", "args.len;"), "--hist 'args.len;': unexpected ';' at column 9"),
        (("--count-by", "kstack}"), "--count-by 'kstack}': unexpected '}' at column 7"),
        (("--sum", "foo + 1"), "--sum 'foo \\+ 1': unknown name 'foo'"),
        (("--avg", "args"), "'args' alone"),
        (("--filter", "a\nb"), "line break at column 2"),
        (("--comm", "a\0b"), "--comm 'a\\\\x00b': NUL at column 2"),
        (("--arg", "x=strukt foo *"), "--arg x 'strukt foo \\*': unknown type 'strukt foo'"),
        (("--arg", "comm=int"), "bad --arg name 'comm'"),
        (("--by", '"x" @y'), "unexpected '@' at column 5"),
        (("--count-by", "kstack(perf, 0)"), "a stack holds 1 to 127 frames"),
        (("--count-by", "kstack(8, perf)"), "a mode, a frame limit, or both \\(mode first\\)"),
        (("--count-by", "kstack(fast)"), "the modes are bpftrace, perf, raw"),
        (("--count-by", "system(1)"), "system\\(\\) is no function a spec may call"),
        (("--count-by", "kstack()"), "unexpected '\\)' at column 8"),
        (("--sum", "kstack(3)"), "a kstack\\(\\)/ustack\\(\\) is a whole map key"),
        (("--count-by", "kstack(3) + 1"), "a kstack\\(\\)/ustack\\(\\) is a whole map key"),
        (("--filter", "ustack(perf) == 0"), "is a whole map key"),
    ],
)
def test_bad_text_is_a_one_line_error_naming_option_and_column(
    argv: tuple[str, ...], message: str
) -> None:
    with pytest.raises(UsageError, match=message) as info:
        spec = line(PROBE, *argv)
        program(spec)
    assert "\n" not in str(info.value)


def test_stack_keys_in_every_mode_and_limit_are_re_emitted() -> None:
    """`kstack(perf, 8)`, `ustack(3)`, `kstack(raw)`: bpftrace's own spelling, a kstack or
    ustack column, and the twin one stack-trace map per frame limit."""
    from harness.spec.codegen_c import generate_c

    spec = line("uprobe:/lib/x86_64-linux-gnu/libc.so.6:getppid", "--count-by", "kstack(perf, 8)",
                "--count-by", "comm", "--sum", "1", "--by", "ustack(bpftrace, 3)",
                "--by", "kstack(raw)")
    text = program(spec)
    assert "@count[kstack(perf, 8), comm] = count();" in text
    assert "@sum[ustack(3), kstack(raw)] = sum(1);" in text
    assert spec.key_names() == {"@count": ["kstack", "comm"], "@sum": ["ustack", "kstack"]}
    twin = generate_c(spec)
    assert "value_size, 8 * sizeof(__u64)" in twin.text and "} twin_stacks_8 SEC" in twin.text
    assert "value_size, 3 * sizeof(__u64)" in twin.text and "} twin_stacks_3 SEC" in twin.text
    assert "value_size, 127 * sizeof(__u64)" in twin.text  # kstack(raw): no limit
    keys = {(k.column, k.stack_map, k.mode) for m in twin.maps for k in m.keys if k.column}
    assert keys >= {("kstack", "twin_stacks_8", "perf"), ("ustack", "twin_stacks_3", "bpftrace"),
                    ("kstack", "twin_stacks", "raw")}


def test_quote_round_trips_through_the_grammar() -> None:
    for value in ['py"thon', "a\\b", "tab\there", "new\nline", "plain"]:
        assert expr.parse(expr.quote(value)) == expr.Str(value)
    assert expr.quote("é") == '"\\303\\251"'


# --- property: hostile text in every option --------------------------------------------

FRAGMENTS = [
    '"', "\\", "/", "{", "}", ";", ")", "(", "@x = 1", "END", "BEGIN", "printf(\"I\")",
    "tracepoint:a:b", "kprobe:f", "*", "->", ".", "==", "&&", "!", "#", "//", "/*", "*/",
    "\n", "\t", "'", "$1", "arg0", "args.len", "comm", "kstack", "1", "0x10", " ", "@",
]
hostile = st.lists(
    st.one_of(st.sampled_from(FRAGMENTS), st.text(min_size=1, max_size=3)), max_size=8
).map("".join)
OPTIONS = [
    "--filter", "--comm", "--cgroup", "--count-by", "--by", "--sum", "--avg", "--min", "--max",
    "--stats", "--hist", "--collect", "--lhist", "--arg", "probe",
]


def hostile_spec(option: str, text: str) -> ProbeSpec:
    """A spec with `text` in one option, the rest ordinary (raises UsageError when refused)."""
    if option == "probe":
        return line(f"kprobe:{text}", "--count-by", "kstack")
    if option == "--lhist":
        return line(PROBE, f"--lhist={text}:0:100:10")
    if option == "--arg":
        return line("kprobe:f", f"--arg=skb={text}", "--hist", "skb->len")
    if option == "--by":
        return line(PROBE, f"--by={text}", "--hist", "args.len")
    return line(PROBE, f"{option}={text}")  # `=`: text starting with '-' stays a value


def tokens(text: str) -> list[str]:
    """A bpftrace tokenizer for this check only: strings (with escapes) and comments are
    single tokens, so braces and map names inside them are not counted."""
    pattern = re.compile(
        r'"(?:\\.|[^"\\\n])*"|//[^\n]*|/\*.*?\*/|@[A-Za-z0-9_]*|[A-Za-z_][\w:.*]*|\S', re.S
    )
    return pattern.findall(text)


def shape(text: str) -> tuple[list[str], set[str]]:
    """(probe headers at brace depth 0, map names) of a bpftrace program."""
    probes, maps, depth, header = [], set(), 0, True
    for tok in tokens(text):
        if tok.startswith('"') or tok.startswith("//") or tok.startswith("/*"):
            continue
        if tok == "{":
            depth += 1
        elif tok == "}":
            depth -= 1
        elif tok.startswith("@"):
            maps.add(tok)
        elif depth == 0 and header and re.match(r"[A-Za-z_]", tok):
            probes.append(tok)
            header = False
        if depth == 0 and tok == "}":
            header = True
    return probes, maps


def expected(spec: ProbeSpec) -> tuple[list[str], set[str]]:
    return ["BEGIN", spec.probe.text()], {a.map for a in spec.aggs}


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(option=st.sampled_from(OPTIONS), text=hostile)
def test_hostile_text_never_changes_the_program_shape(option: str, text: str) -> None:
    try:
        spec = hostile_spec(option, text)
        text_out = program(spec)
    except UsageError as err:
        assert "\n" not in str(err)
        return
    assert shape(text_out) == expected(spec), text_out


def bpftrace_ast_shape(text: str) -> tuple[list[str], set[str]]:
    """Probes and maps as bpftrace's own parser sees them (`-d` prints the AST, attaches
    nothing)."""
    done = subprocess.run(
        ["bpftrace", "-d", "-e", text], capture_output=True, text=True, timeout=60, check=False
    )
    out = done.stdout + done.stderr
    assert "AST after: parser" in out, out[-2000:]
    ast = out.split("AST after: parser", 1)[1].split("AST after:", 1)[0]
    probes = [ln[1:] for ln in ast.splitlines() if re.match(r" \S", ln)]
    maps = set(re.findall(r"map: (@\w*)", ast))
    return probes, maps


@pytest.mark.skipif(shutil.which("bpftrace") is None, reason="bpftrace not installed")
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(option=st.sampled_from(OPTIONS), text=hostile)
def test_bpftrace_parses_exactly_the_specs_probes_and_maps(option: str, text: str) -> None:
    try:
        spec = hostile_spec(option, text)
        text_out = program(spec)
    except UsageError:
        return
    assert bpftrace_ast_shape(text_out) == expected(spec), text_out
