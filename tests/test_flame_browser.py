"""The flame graph and diff pages in a real browser: headless Chromium over the DevTools protocol
(tests/browser.py), real mouse and keyboard input, counts checked against the literal stacks."""

from __future__ import annotations

import json
import re
import struct
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from browser import HEIGHT, WIDTH, Browser

from harness.report import flamediff, flamegraph

pytestmark = pytest.mark.browser

TRUNK = ("entry_SYSCALL_64_after_hwframe+118", "do_syscall_64+113")
SEND = (*TRUNK, "__x64_sys_sendto+32", "__sys_sendto+450", "udp_sendmsg+2534")
COUNTS = Counter(
    {
        (*SEND, "udp_send_skb+423", "ip_output+95", "ip_finish_output2+705"): 50,
        (*SEND, "udp_send_skb+423", "ip_output+95", "neigh_resolve_output+300"): 7,
        (*SEND, "ip_make_skb+80", "__ip_append_data+120"): 3,
        (*TRUNK, "__x64_sys_getppid+5"): 2,
        (*TRUNK, "__x64_sys_close+9", "fput+12"): 2,
    }
)
TOTAL = sum(COUNTS.values())


def paths(counts: Counter[tuple[str, ...]]) -> Counter[tuple[str, ...]]:
    """Every frame of the graph as its path from the root, with its inclusive count."""
    out: Counter[tuple[str, ...]] = Counter()
    for stack, n in counts.items():
        for d in range(len(stack) + 1):
            out[stack[:d]] += n
    return out


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    b = Browser()
    try:
        yield b
    finally:
        b.close()


def frames(b: Browser) -> list[dict[str, object]]:
    """Each drawn frame: its name, rect geometry and fill, as the browser laid them out."""
    value = b.js(
        """[...document.querySelectorAll('#flame g.f')].map(g => {
             const r = g.querySelector('rect').getBoundingClientRect();
             return {name: g.getAttribute('aria-label'), cls: g.getAttribute('class'),
                     fill: g.querySelector('rect').getAttribute('fill'),
                     x: r.x, y: r.y, w: r.width};
           })"""
    )
    assert isinstance(value, list)
    return value


def test_flame_graph_draws_searches_and_zooms(browser: Browser, tmp_path: Path) -> None:
    title = f"@stacks · tracepoint:net:net_dev_queue · {TOTAL} samples"
    page = flamegraph.write_flame_html(COUNTS, tmp_path / "stacks.flame.html", title, merge=False)
    browser.open(page)
    drawn = frames(browser)
    expected = paths(COUNTS)
    assert len(drawn) == len(expected)  # one rect per distinct path, root included
    assert browser.js("document.getElementById('title').textContent") == title
    root = next(f for f in drawn if f["name"] == "all")
    assert all(float(f["y"]) < float(root["y"]) for f in drawn if f is not root)  # root at bottom
    svg_w = browser.js("document.getElementById('flame').getBoundingClientRect().width")
    # widths proportional to counts; children of one parent left to right by name
    for f in drawn:
        (count,) = [n for p, n in expected.items() if (p[-1] if p else "all") == f["name"]]
        assert abs(float(f["w"]) - count / TOTAL * svg_w) < 1.0, f
    under_ip_output = sorted((f for f in drawn if f["name"] in ("ip_finish_output2+705",
                              "neigh_resolve_output+300")), key=lambda f: float(f["x"]))
    assert [f["name"] for f in under_ip_output] == ["ip_finish_output2+705",
                                                      "neigh_resolve_output+300"]
    assert re.fullmatch(r"rgb\((\d+),(\d+),(\d+)\)", str(root["fill"]))
    reds = [int(c) for f in drawn for c in re.findall(r"\d+", str(f["fill"]))[:1]]
    assert min(reds) >= 205  # the warm palette: red channel always high

    # tooltip: frame, count and percent
    browser.hover('#flame g.f[aria-label="udp_send_skb+423"]')
    tip = browser.js("document.getElementById('tip').textContent")
    assert tip.startswith("udp_send_skb+423\n57 samples") and f"{100 * 57 / TOTAL:.2f}%" in tip

    # search: a regex typed into the box highlights exactly the matching frames
    browser.type_into("#search", "^ip_|neigh")
    pattern = re.compile("^ip_|neigh")
    matching = [p for p in expected if p and pattern.search(p[-1])]
    hits = [f for f in frames(browser) if "match" in str(f["cls"])]
    assert sorted(str(f["name"]) for f in hits) == sorted(p[-1] for p in matching)
    assert {f["fill"] for f in hits} == {"rgb(230,0,230)"}
    # matched share: ip_output (57) and ip_make_skb (3) cover their matching children once
    assert browser.js("document.getElementById('matched').textContent").startswith(
        f"Matched: {100 * 60 / TOTAL:.2f}% (60 of {TOTAL} samples"
    )
    browser.screenshot(tmp_path / "search.png")

    # click-to-zoom: the clicked frame fills the width, only its ancestors and subtree remain
    browser.click('#flame g.f[aria-label="neigh_resolve_output+300"]')
    zoomed = frames(browser)
    target = next(f for f in zoomed if f["name"] == "neigh_resolve_output+300")
    assert abs(float(target["w"]) - svg_w) < 1.0
    ancestors = next(p for p in expected if p and p[-1] == "neigh_resolve_output+300")
    assert sorted(str(f["name"]) for f in zoomed) == sorted(["all", *ancestors])
    assert all("ancestor" in str(f["cls"]) for f in zoomed if f is not target)
    shot = browser.screenshot(tmp_path / "zoomed.png")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">I", shot.read_bytes()[16:20])[0] == WIDTH
    browser.click("#reset")
    assert len(frames(browser)) == len(expected)
    assert browser.js("document.getElementById('reset').disabled") is True

    # icicle: the root goes to the top
    browser.click("#flip")
    flipped = frames(browser)
    top = min(float(f["y"]) for f in flipped)
    assert next(float(f["y"]) for f in flipped if f["name"] == "all") == top
    assert browser.errors() == []


def write_run(path: Path, stacks: dict[str, int]) -> Path:
    path.mkdir(parents=True)
    pd.DataFrame({"kstack": list(stacks), "value": list(stacks.values())}).to_csv(
        path / "stacks.csv", index=False
    )
    (path / "run.json").write_text(json.dumps({"program": "kprobe:udp_send_skb { }"}))
    return path


def test_diff_page_colours_growth_red_and_shrinkage_blue(browser: Browser, tmp_path: Path) -> None:
    a = write_run(tmp_path / "a", {"main+1;grows+2": 5, "main+1;shrinks+3": 20, "main+1;same+4": 9})
    b = write_run(tmp_path / "b", {"main+7;grows+8": 25, "main+7;shrinks+9": 4, "main+7;same+5": 9})
    diff = flamediff.write_diff(a, b, tmp_path / "d")
    browser.open(next(p for p in diff.files if p.suffix == ".html"))
    drawn = {str(f["name"]): f for f in frames(browser)}
    assert set(drawn) == {"all", "main", "grows", "shrinks", "same"}
    rgb = {n: tuple(int(c) for c in re.findall(r"\d+", str(f["fill"]))) for n, f in drawn.items()}
    assert rgb["grows"][0] == 255 and rgb["grows"][1] == rgb["grows"][2] < 255  # red
    assert rgb["shrinks"][2] == 255 and rgb["shrinks"][0] == rgb["shrinks"][1] < 255  # blue
    assert min(rgb["same"]) >= 230  # unchanged count, share 9/34 -> 9/38: a faint blue at most
    svg_w = browser.js("document.getElementById('flame').getBoundingClientRect().width")
    assert abs(float(drawn["grows"]["w"]) - 25 / 38 * svg_w) < 1.0  # widths from B
    browser.hover('#flame g.f[aria-label="shrinks"]')
    tip = browser.js("document.getElementById('tip').textContent")
    assert "before 20, change -16 (-80.0%)" in tip
    browser.screenshot(tmp_path / "diff.png")
    assert browser.errors() == []


def widths(b: Browser, svg: str = "flame") -> dict[str, float]:
    """Drawn width of each frame name in one <svg>, as a share of the svg's width (names that
    repeat add up)."""
    value = b.js(
        f"""(() => {{ const s = document.getElementById('{svg}').getBoundingClientRect().width;
             const out = {{}};
             for (const g of document.querySelectorAll('#{svg} g.f')) {{
               const n = g.getAttribute('aria-label');
               out[n] = (out[n] || 0) + g.querySelector('rect').getBoundingClientRect().width / s;
             }}
             return out; }})()"""
    )
    assert isinstance(value, dict)
    return {str(k): float(v) for k, v in value.items()}


def text(b: Browser, element_id: str) -> str:
    return str(b.js(f"document.getElementById('{element_id}').textContent"))


KERNEL = ("entry_SYSCALL_64_after_hwframe+118_[k]", "do_syscall_64+113_[k]")
PROFILE = Counter(
    {
        ("dd", "__libc_read+18", *KERNEL, "ksys_read+111_[k]", "read_zero+55_[k]"): 30,
        ("dd", "__libc_read+18", *KERNEL, "ksys_read+111_[k]", "read_zero+114_[k]"): 20,
        ("dd", "__libc_write+20", *KERNEL, "ksys_write+111_[k]", "fdget_pos+43_[k]"): 25,
        ("dd", "main+40", "copy_loop+7", "__libc_read+18", *KERNEL, "fdget_pos+43_[k]"): 5,
        ("dd", "main+40", "copy_loop+9", "memcpy+3"): 4,
    }
)


def test_merge_offsets_units_kernel_colours_and_totals(browser: Browser, tmp_path: Path) -> None:
    total = sum(PROFILE.values())
    page = flamegraph.write_flame_html(PROFILE, tmp_path / "p.flame.html", "@profile",
                                       unit="µs", printed_total=total)
    browser.open(page)
    # merged by default: one frame per function, widths as the offset-free stacks add up
    merged = paths(flamediff.strip_offsets({tuple(f.removesuffix("_[k]") for f in s): n
                                            for s, n in PROFILE.items()}))
    by_name: Counter[str] = Counter()
    for path, n in merged.items():
        by_name[path[-1] if path else "all"] += n
    drawn = widths(browser)
    assert drawn.keys() == by_name.keys()  # read_zero+55/+114 are one `read_zero`; no `_[k]`
    for name, n in by_name.items():
        assert abs(drawn[name] - n / total) < 0.002, name
    assert len(frames(browser)) == len(merged)
    # kernel frames (the `_[k]` mark) orange, user frames red; the legend says so
    fills = {str(f["name"]): str(f["fill"]) for f in frames(browser)}
    kernel = {str(f["name"]) for f in frames(browser) if "kernel" in str(f["cls"])}
    assert kernel == {"entry_SYSCALL_64_after_hwframe", "do_syscall_64", "ksys_read",
                      "ksys_write", "read_zero", "fdget_pos"}
    for name, fill in fills.items():
        r, g, b = (int(c) for c in re.findall(r"\d+", fill))
        if name in kernel:
            assert r >= 225 and 115 <= g <= 180 and b <= 30, (name, fill)  # orange
        else:
            assert r >= 200 and g <= 100 and b <= 100, (name, fill)  # red
    assert "orange: kernel frames" in text(browser, "legend")
    # units from the map, and the printed total met
    assert text(browser, "shown") == f"{total} of {total} µs shown: all that bpftrace printed."
    assert browser.js("document.getElementById('shown').className") == "ok"
    browser.hover('#flame g.f[aria-label="read_zero"]')
    assert text(browser, "tip") == f"read_zero  [kernel]\n50 µs ({100 * 50 / total:.2f}% of all)"
    # offsets kept: exactly the printed frames again
    browser.click("#merge")
    assert len(frames(browser)) == len(paths(PROFILE))
    assert widths(browser)["read_zero+114"] == pytest.approx(20 / total, abs=0.002)
    assert text(browser, "merge") == "Offsets: kept"
    assert browser.errors() == []

    # a printed total the page does not reach is said, loudly
    short = flamegraph.write_flame_html(PROFILE, tmp_path / "s.flame.html", "@profile",
                                        printed_total=total + 7)
    browser.open(short)
    assert text(browser, "shown").startswith(f"{total} of {total + 7} samples shown: 7 samples")
    assert browser.js("document.getElementById('shown').className") == "warn"


def test_search_ignores_case_on_request(browser: Browser, tmp_path: Path) -> None:
    browser.open(flamegraph.write_flame_html(PROFILE, tmp_path / "p.flame.html", "@profile"))
    browser.type_into("#search", "READ_ZERO|Ksys")
    assert text(browser, "matched").startswith("Matched: 0.00% (0 of 84 samples, 0 frames)")
    browser.click("#nocase")
    hits = sorted(str(f["name"]) for f in frames(browser) if "match" in str(f["cls"]))
    assert hits == ["ksys_read", "ksys_write", "read_zero"]
    # ksys_read holds read_zero: 50 + ksys_write's 25
    assert text(browser, "matched").startswith(f"Matched: {100 * 75 / 84:.2f}% (75 of 84")
    browser.click("#nocase")
    assert not [f for f in frames(browser) if "match" in str(f["cls"])]
    assert browser.errors() == []


def test_long_names_wrap_inside_the_tooltip(browser: Browser, tmp_path: Path) -> None:
    long = ("demo::Engine<std::vector<std::pair<std::string, std::map<int, double>>>>::"
            "run_for(std::chrono::duration<double, std::ratio<1, 1>>, demo::Options const&)+124")
    counts = Counter({("main+1", long * 2): 3, ("main+1", "other+2"): 1})
    browser.open(flamegraph.write_flame_html(counts, tmp_path / "l.html", "@", merge=False))
    browser.hover(f'#flame g.f[aria-label="{long * 2}"]')
    box = browser.js("(() => { const r = document.getElementById('tip').getBoundingClientRect();"
                     " return [r.left, r.right, r.top, r.bottom, r.height]; })()")
    left, right, top, bottom, height = (float(x) for x in box)
    assert text(browser, "tip").startswith(long * 2 + "\n3 samples")  # the whole name
    assert left >= 0 and right <= WIDTH and top >= 0 and bottom <= HEIGHT  # inside the window
    assert height > 4 * 14  # wrapped over several lines, not cut
    assert browser.errors() == []


def sandwich_of(counts: Counter[tuple[str, ...]], fn: str) -> tuple[Counter[tuple[str, ...]],
                                                                     Counter[tuple[str, ...]]]:
    """Callers (nearest first) and callees of `fn` per stack, at its outermost call."""
    up: Counter[tuple[str, ...]] = Counter()
    down: Counter[tuple[str, ...]] = Counter()
    for stack, n in counts.items():
        if fn in stack:
            at = stack.index(fn)
            up[tuple(reversed(stack[:at]))] += n
            down[stack[at + 1:]] += n
    return up, down


def test_sandwich_shows_callers_above_and_callees_below(browser: Browser, tmp_path: Path) -> None:
    browser.open(flamegraph.write_flame_html(PROFILE, tmp_path / "p.flame.html", "@profile"))
    assert browser.js("document.getElementById('sandwich').disabled") is True
    browser.click('#flame g.f[aria-label="__libc_read"]')  # the first of its two frames
    browser.click("#sandwich")
    assert browser.js("document.getElementById('flame').getBoundingClientRect().height") == 0
    plain = flamediff.strip_offsets({tuple(f.removesuffix("_[k]") for f in s): n
                                     for s, n in PROFILE.items()})
    up, down = sandwich_of(plain, "__libc_read")
    fn_total = sum(up.values())
    assert fn_total == 55
    for svg, tree in (("callers", up), ("callees", down)):
        expected: Counter[str] = Counter()
        for path, n in paths(tree).items():
            expected[path[-1] if path else "__libc_read"] += n
        drawn = widths(browser, svg)
        assert drawn.keys() == expected.keys(), svg
        for name, n in expected.items():
            assert abs(drawn[name] - n / fn_total) < 0.002, (svg, name)
    ys = {svg: {str(f["name"]): float(f["y"]) for f in frames_in(browser, svg)}
          for svg in ("callers", "callees")}
    # the function sits in the middle: bottom row of the callers, top row of the callees
    assert ys["callers"]["__libc_read"] == max(ys["callers"].values())
    assert ys["callers"]["dd"] < ys["callers"]["copy_loop"] < ys["callers"]["__libc_read"]
    assert ys["callees"]["__libc_read"] == min(ys["callees"].values())
    assert ys["callees"]["__libc_read"] > ys["callers"]["__libc_read"]
    assert text(browser, "callers-title") == (
        f"Callers of __libc_read (above it): 55 samples, {100 * 55 / 84:.2f}% of all")
    # a frame of the sandwich opens that function's sandwich
    browser.click('#callers g.f[aria-label="copy_loop"]')
    assert text(browser, "callers-title").startswith("Callers of copy_loop (above it): 9 samples")
    assert set(widths(browser, "callees")) == {"copy_loop", "__libc_read", "memcpy",
                                               "entry_SYSCALL_64_after_hwframe", "do_syscall_64",
                                               "fdget_pos"}
    browser.send("Input.dispatchKeyEvent", type="keyDown", key="Escape", code="Escape",
                 windowsVirtualKeyCode=27)
    assert browser.js("document.getElementById('sandwich-view').hidden") is True
    assert len(frames(browser)) > 0
    assert browser.errors() == []


def frames_in(b: Browser, svg: str) -> list[dict[str, object]]:
    value = b.js(
        f"""[...document.querySelectorAll('#{svg} g.f')].map(g => ({{
             name: g.getAttribute('aria-label'),
             y: g.querySelector('rect').getBoundingClientRect().y}}))"""
    )
    assert isinstance(value, list)
    return value


def test_diff_colours_follow_each_frame_and_normalise(browser: Browser, tmp_path: Path) -> None:
    # Equal totals; `tiny` grows +1600% (1 -> 17) while `big` loses 516: a scale set by the
    # largest change would leave `tiny` near-white.
    a = write_run(tmp_path / "a", {"m+1;tiny+1": 1, "m+1;big+2": 1000, "m+1;mid+3": 1000})
    b = write_run(tmp_path / "b", {"m+1;tiny+1": 17, "m+1;big+2": 484, "m+1;mid+3": 1500})
    diff = flamediff.write_diff(a, b, tmp_path / "d")
    browser.open(next(p for p in diff.files if p.suffix == ".html"))
    rgb = {str(f["name"]): tuple(int(c) for c in re.findall(r"\d+", str(f["fill"])))
           for f in frames(browser)}
    assert rgb["tiny"] == (255, 60, 60)  # x17: full red
    assert rgb["big"][2] == 255 and rgb["big"][0] < 160  # /2.07: a clear blue
    assert rgb["mid"][0] == 255 and 150 < rgb["mid"][1] < 250  # x1.5: light red
    assert rgb["all"] == rgb["m"] == (250, 250, 250)
    assert text(browser, "shown") == "B: 2001 samples, A: 2001 samples."

    # Totals differ (B ran twice as long): shares are compared, and the page says so.
    a2 = write_run(tmp_path / "a2", {"m+1;x+1": 10, "m+1;y+2": 90})
    b2 = write_run(tmp_path / "b2", {"m+1;x+1": 20, "m+1;y+2": 180})
    diff2 = flamediff.write_diff(a2, b2, tmp_path / "d2")
    browser.open(next(p for p in diff2.files if p.suffix == ".html"))
    assert {str(f["fill"]) for f in frames(browser)} == {"rgb(250,250,250)"}
    assert "A normalised to B's total (x2.00)" in text(browser, "shown")
    browser.hover('#flame g.f[aria-label="x"]')
    assert "before 10, change +10 (+100.0%)\nshare change +0.0%" in text(browser, "tip")
    assert browser.errors() == []
