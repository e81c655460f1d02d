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
from browser import WIDTH, Browser

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
    page = flamegraph.write_flame_html(COUNTS, tmp_path / "stacks.flame.html", title)
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
    assert rgb["same"] == (250, 250, 250)
    svg_w = browser.js("document.getElementById('flame').getBoundingClientRect().width")
    assert abs(float(drawn["grows"]["w"]) - 25 / 38 * svg_w) < 1.0  # widths from B
    browser.hover('#flame g.f[aria-label="shrinks"]')
    tip = browser.js("document.getElementById('tip').textContent")
    assert "before 20, change -16 (-80.0%)" in tip
    browser.screenshot(tmp_path / "diff.png")
    assert browser.errors() == []
