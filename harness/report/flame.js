// Draws the flame graph held in #flame-data into the inline <svg id="flame">, and on request the
// sandwich view of one function (its callers above it, its callees below it).
// Data: names[] (interned frame names) and per frame, in preorder with the root ("all") first:
// n = name index, p = parent index, v = inclusive count, b = baseline count (differential only;
// paths only the baseline has are frames with v = 0). Kernel frames end in "_[k]" (flamegraph.pl).
// The page turns the tree back into stacks (each frame's own count) and builds every view from
// them: as printed, with offsets merged (one frame per function), and the sandwich's two trees.
// Layout happens here, so the file stays small and frames too narrow at one zoom level are drawn
// at the next: nothing is thrown away when the file is made.
"use strict";
(() => {
  const D = JSON.parse(document.getElementById("flame-data").textContent);
  const FH = 16, CHAR_W = 7, MIN_W = 0.1, MATCH = "rgb(230,0,230)", KMARK = "_[k]";
  const SVGNS = "http://www.w3.org/2000/svg";
  const $ = (id) => document.getElementById(id);
  const search = $("search"), nocase = $("nocase"), tip = $("tip"), details = $("details");
  const diff = Array.isArray(D.b);
  const unit = D.unit;

  // One frame name: `sym+off`, `sym+off (module)`, `ffffffff81d7da46 sym+off` (kstack(perf)), a raw
  // address or a placeholder; `_[k]` marks a kernel frame. fn is the function: offset (and the
  // address perf mode prints before it) dropped, so `foo+12` and `foo+40` merge.
  const OFFSET = /^(?:[0-9a-f]{8,16} )?(.+?)\+(?:0x[0-9a-f]+|\d+)( \(.*\))?$/i;
  const frames = new Map();
  function frame(name) {
    let f = frames.get(name);
    if (f === undefined) {
      const kernel = name.endsWith(KMARK) && name.length > KMARK.length;
      const label = kernel ? name.slice(0, -KMARK.length) : name;
      const m = OFFSET.exec(label);
      const fn = m ? m[1] + (m[2] || "") : label;
      f = { label, fn, kernel, fnKey: kernel ? fn + KMARK : fn };
      frames.set(name, f);
    }
    return f;
  }

  // The stacks: every frame of the data with a count of its own (inclusive minus its children).
  const stacks = (() => {
    const N = D.v.length, own = D.v.slice(), ownB = diff ? D.b.slice() : null;
    for (let i = 1; i < N; i++) {
      own[D.p[i]] -= D.v[i];
      if (diff) ownB[D.p[i]] -= D.b[i];
    }
    const paths = new Array(N), out = [];
    paths[0] = [];
    for (let i = 0; i < N; i++) {
      if (i > 0) paths[i] = paths[D.p[i]].concat(D.names[D.n[i]]);
      const w = own[i] > 1e-9 ? own[i] : 0, wb = diff && ownB[i] > 1e-9 ? ownB[i] : 0;
      if (w || wb) out.push({ path: paths[i], w, wb });
    }
    return out;
  })();
  const total = D.v[0] || 0, baseTotal = diff ? D.b[0] || 0 : 0;
  // A differential graph compares shares: when the totals differ, A is scaled to B's total.
  const scale = diff && total > 0 && baseTotal > 0 && total !== baseTotal ? total / baseTotal : 1;
  const marked = stacks.some((s) => s.path.some((n) => frame(n).kernel));

  // A tree over stacks, frames keyed by key(name): per node its key, parent, inclusive count and
  // baseline, children and depth.
  function build(recs, key, root = "all") {
    const T = { key: [root], par: [-1], val: [0], base: [0], kids: [[]], depth: [0], maxDepth: 0 };
    const index = new Map();
    for (const r of recs) {
      let at = 0;
      T.val[0] += r.w;
      T.base[0] += r.wb;
      for (const name of r.path) {
        const k = key(name), id = at + "\u0000" + k;
        let c = index.get(id);
        if (c === undefined) {
          c = T.key.length;
          index.set(id, c);
          T.key.push(k);
          T.par.push(at);
          T.val.push(0);
          T.base.push(0);
          T.kids.push([]);
          T.depth.push(T.depth[at] + 1);
          T.kids[at].push(c);
          if (T.depth[c] > T.maxDepth) T.maxDepth = T.depth[c];
        }
        T.val[c] += r.w;
        T.base[c] += r.wb;
        at = c;
      }
    }
    return T;
  }
  const state = { order: D.order, icicle: D.icicle, merge: D.merge !== false, re: null,
                  selected: null, sandwich: false };
  const keyOf = (name) => (state.merge ? frame(name).fnKey : name);
  const labelOf = (T, i) => frame(T.key[i]).label;

  // The sandwich of one function (a fnKey): for every stack holding it, the frames from it down
  // to the root (its callers, drawn upwards) and from it up to the leaf (its callees, drawn
  // downwards). A recursive function counts once per stack, at its outermost call.
  function sandwich(fnKey) {
    const up = [], down = [];
    for (const s of stacks) {
      const at = s.path.findIndex((n) => frame(n).fnKey === fnKey);
      if (at < 0) continue;
      up.push({ path: s.path.slice(0, at).reverse(), w: s.w, wb: s.wb });
      down.push({ path: s.path.slice(at + 1), w: s.w, wb: s.wb });
    }
    return [build(up, keyOf, fnKey), build(down, keyOf, fnKey)];
  }

  // Colours. Without kernel marks the warm palette (red to yellow); with them, kernel frames
  // orange and user frames red (flamegraph.pl's convention). The hue comes from the function
  // name, so one function has one colour in every graph and at every offset.
  function hash(s) {
    let h = 2166136261;
    for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619);
    return h >>> 0;
  }
  function palette(name) {
    const f = frame(name), h = hash(f.fn);
    const a = (h & 0xff) / 255, b = ((h >>> 8) & 0xff) / 255, c = ((h >>> 16) & 0xff) / 255;
    const rgb = !marked ? [205 + 50 * a, 230 * b, 55 * c]
      : f.kernel ? [225 + 30 * a, 115 + 65 * b, 30 * c]
      : [200 + 55 * a, 40 + 60 * b, 40 + 60 * b];
    return `rgb(${rgb.map(Math.round).join(",")})`;
  }
  // Differential: red grew, blue shrank, by the frame's own relative change of share (A scaled
  // to B's total), full colour from x4 or /4 on; white for no change. A +1600% frame is full red
  // whatever the root did.
  function diffColor(T, i) {
    const v = T.val[i], b = T.base[i] * scale;
    if (Math.abs(v - b) <= 1e-9 * Math.max(1, v, b)) return "rgb(250,250,250)";
    const s = v <= 0 || b <= 0 ? 1 : Math.min(1, Math.abs(Math.log2(v / b)) / 2);
    const k = Math.round(250 - 190 * s);
    return v > b ? `rgb(255,${k},${k})` : `rgb(${k},${k},255)`;
  }

  const fmt = (x) => (Number.isInteger(x) ? String(x) : x.toFixed(1));
  const pct = (x, of) => (of ? ((100 * x) / of).toFixed(2) : "0.00") + "%";
  function fit(name, w) {
    const n = Math.floor((w - 6) / CHAR_W);
    if (n < 3) return "";
    return name.length <= n ? name : name.slice(0, n - 2) + "..";
  }

  // One drawn graph: a tree in an <svg>, laid out by the chosen order, zoomable (the main one).
  function graph(svg, role) {
    const g = { svg, role, T: null, start: null, zoom: 0, icicle: false, narrow: 0 };
    g.set = (T, icicle) => {
      g.T = T;
      g.icicle = icicle;
      g.zoom = 0;
      g.layout();
    };
    g.layout = () => {
      const T = g.T, lab = (i) => labelOf(T, i);
      const byName = (a, b) => (lab(a) < lab(b) ? -1 : lab(a) > lab(b) ? 1 : 0);
      const cmp = state.order === "heavy" ? (a, b) => T.val[b] - T.val[a] || byName(a, b) : byName;
      g.start = new Float64Array(T.key.length);
      const todo = [0];
      while (todo.length) {
        const i = todo.pop();
        let x = g.start[i];
        for (const k of T.kids[i].slice().sort(cmp)) {
          g.start[k] = x;
          x += T.val[k];
          todo.push(k);
        }
      }
    };
    g.render = () => {
      const T = g.T, N = T.key.length, W = Math.max(300, document.documentElement.clientWidth - 20);
      const H = (T.maxDepth + 1) * FH, z = g.zoom, z0 = g.start[z], zw = T.val[z] || 1;
      const zd = T.depth[z], sc = W / zw, onPath = new Uint8Array(N);
      for (let a = z; a >= 0; a = T.par[a]) onPath[a] = 1;
      svg.setAttribute("width", W);
      svg.setAttribute("height", H);
      svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
      const frag = document.createDocumentFragment();
      let narrow = 0;
      for (let i = 0; i < N; i++) {
        let x, w;
        if (onPath[i]) {
          x = 0;
          w = W;
        } else if (T.depth[i] > zd && g.start[i] >= z0 && g.start[i] + T.val[i] <= z0 + zw) {
          x = (g.start[i] - z0) * sc;
          w = T.val[i] * sc;
        } else continue;
        if (w < MIN_W) {
          if (T.val[i] > 0) narrow++;
          continue;
        }
        const y = g.icicle ? T.depth[i] * FH : H - (T.depth[i] + 1) * FH;
        const label = labelOf(T, i), hit = i > 0 && state.re !== null && state.re.test(label);
        const el = document.createElementNS(SVGNS, "g");
        el.setAttribute("class", "f" + (onPath[i] && i !== z ? " ancestor" : "") + (hit ? " match" : "")
          + (frame(T.key[i]).kernel ? " kernel" : ""));
        el.setAttribute("data-i", i);
        el.setAttribute("aria-label", label);
        const r = document.createElementNS(SVGNS, "rect");
        r.setAttribute("x", x.toFixed(2));
        r.setAttribute("y", y);
        r.setAttribute("width", w.toFixed(2));
        r.setAttribute("height", FH - 1);
        r.setAttribute("fill", hit ? MATCH : diff ? diffColor(T, i) : palette(T.key[i]));
        el.appendChild(r);
        const text = fit(label, w);
        if (text) {
          const t = document.createElementNS(SVGNS, "text");
          t.setAttribute("x", (x + 3).toFixed(2));
          t.setAttribute("y", y + FH - 4.5);
          t.textContent = text;
          el.appendChild(t);
        }
        frag.appendChild(el);
      }
      svg.replaceChildren(frag);
      g.narrow = narrow;
    };
    return g;
  }
  const main = graph($("flame"), "main"), callers = graph($("callers"), "callers");
  const callees = graph($("callees"), "callees");
  const graphs = [main, callers, callees];

  function describe(g, i) {
    const T = g.T, v = T.val[i];
    let s = labelOf(T, i) + (frame(T.key[i]).kernel ? "  [kernel]" : "");
    s += `\n${fmt(v)} ${unit} (${pct(v, total)} of all`;
    if (g.role !== "main" && i > 0) s += `, ${pct(v, T.val[0])} of ${labelOf(T, 0)}'s`;
    else if (g.zoom !== 0 && T.depth[i] > T.depth[g.zoom]) s += `, ${pct(v, T.val[g.zoom])} of zoomed`;
    s += ")";
    if (diff) {
      const b = T.base[i], d = v - b, sign = d >= 0 ? "+" : "";
      s += `\nbefore ${fmt(b)}, change ${sign}${fmt(d)}`;
      s += b ? ` (${sign}${((100 * d) / b).toFixed(1)}%)` : " (new)";
      if (scale !== 1 && b) {
        const r = 100 * (v / (b * scale) - 1);
        s += `\nshare change ${r >= 0 ? "+" : ""}${r.toFixed(1)}% (A normalised to B's total)`;
      }
    }
    return s;
  }
  function idle() {
    let s;
    if (!total) s = "No samples in this map.";
    else if (state.sandwich) s = "Click a frame to see its function's sandwich; Back (or Esc) returns.";
    else s = "Click a frame to zoom, Reset (or Esc) to zoom out; Sandwich shows the clicked function's callers and callees.";
    const narrow = graphs.reduce((n, g) => n + (g.T && (g === main) !== state.sandwich ? g.narrow : 0), 0);
    if (narrow) s += ` ${narrow} frames narrower than ${MIN_W} px are not drawn: zoom in to see them.`;
    details.textContent = s;
  }
  function showMatched() {
    const out = $("matched");
    if (!state.re) {
      out.textContent = search.value ? "invalid regex" : "";
      return;
    }
    // Matched: the union of matching frames' spans, so a match above a match counts once.
    const T = main.T, spans = [];
    for (let i = 1; i < T.key.length; i++) {
      if (T.val[i] > 0 && state.re.test(labelOf(T, i))) spans.push([main.start[i], main.start[i] + T.val[i]]);
    }
    spans.sort((a, b) => a[0] - b[0] || b[1] - a[1]);
    let sum = 0, end = -Infinity;
    for (const [s, e] of spans) {
      if (e <= end) continue;
      sum += e - Math.max(s, end);
      end = e;
    }
    out.textContent = `Matched: ${pct(sum, total)} (${fmt(sum)} of ${fmt(total)} ${unit}, ${spans.length} frames)`;
  }
  function showTotals() {
    const out = $("shown");
    if (diff) {
      out.textContent = `B: ${fmt(total)} ${unit}, A: ${fmt(baseTotal)} ${unit}` + (scale !== 1
        ? `. The totals differ: colours compare shares, A normalised to B's total (x${scale.toPrecision(3)}).` : ".");
      return;
    }
    if (typeof D.printed !== "number") {
      out.textContent = `${fmt(total)} ${unit} shown (bpftrace's printed total is not recorded here).`;
      return;
    }
    const same = Math.abs(total - D.printed) <= 1e-9 * Math.max(1, D.printed);
    out.className = same ? "ok" : "warn";
    out.textContent = same
      ? `${fmt(total)} of ${fmt(D.printed)} ${unit} shown: all that bpftrace printed.`
      : `${fmt(total)} of ${fmt(D.printed)} ${unit} shown: ${fmt(D.printed - total)} ${unit} that bpftrace printed are missing here.`;
  }
  function showLegend() {
    const parts = [];
    if (diff) parts.push("red: grew, blue: shrank (by the frame's own relative change), white: unchanged");
    else if (marked) parts.push("orange: kernel frames, red: user frames");
    parts.push(state.merge ? "offsets merged: one frame per function" : "frames as printed, offsets kept");
    $("legend").textContent = parts.join(" · ");
  }
  function controls() {
    $("reset").disabled = state.sandwich || main.zoom === 0;
    $("merge").textContent = state.merge ? "Offsets: merged" : "Offsets: kept";
    $("order").textContent = state.order === "heavy" ? "Order: heaviest first" : "Order: by name";
    $("flip").textContent = state.icicle ? "Root at top (icicle)" : "Root at bottom (flame)";
    $("flip").disabled = state.sandwich;
    const sw = $("sandwich");
    const fn = state.selected === null ? "" : frame(state.selected).label;
    sw.disabled = !state.sandwich && state.selected === null;
    sw.textContent = state.sandwich ? "Back to flame graph" : fn ? `Sandwich: ${fit(fn, 230) || fn.slice(0, 1)}` : "Sandwich";
  }
  function render() {
    $("flame").style.display = state.sandwich ? "none" : "";  // an <svg> has no `hidden`
    $("sandwich-view").hidden = !state.sandwich;
    if (state.sandwich) {
      callers.render();
      callees.render();
      const fn = frame(state.selected).label, n = callers.T.val[0];
      $("callers-title").textContent = `Callers of ${fn} (above it): ${fmt(n)} ${unit}, ${pct(n, total)} of all`;
      $("callees-title").textContent = `Callees of ${fn} (below it)`;
    } else main.render();
    controls();
    showLegend();
  }
  function rebuild() {
    main.set(build(stacks, keyOf), state.icicle);
    if (state.sandwich) openSandwich(state.selected);
  }
  function openSandwich(fnKey) {
    state.selected = fnKey;
    state.sandwich = true;
    const [up, down] = sandwich(fnKey);
    callers.set(up, false);
    callees.set(down, true);
  }
  function zoomTo(i) {
    main.zoom = i;
    render();
    tip.hidden = true;
    idle();
  }

  const frameAt = (ev) => {
    const el = ev.target instanceof Element ? ev.target.closest("g.f") : null;
    return el ? Number(el.getAttribute("data-i")) : -1;
  };
  for (const g of graphs) {
    g.svg.addEventListener("mousemove", (ev) => {
      const i = frameAt(ev);
      if (i < 0 || !g.T) {
        tip.hidden = true;
        return;
      }
      const text = describe(g, i);
      tip.textContent = text;
      tip.hidden = false;
      const x = Math.min(ev.clientX + 12, window.innerWidth - tip.offsetWidth - 4);
      const below = ev.clientY + 16 + tip.offsetHeight <= window.innerHeight;
      tip.style.left = `${Math.max(0, x)}px`;
      tip.style.top = `${Math.max(0, below ? ev.clientY + 16 : ev.clientY - tip.offsetHeight - 8)}px`;
      details.textContent = text.replace(/\n/g, "  |  ");
    });
    g.svg.addEventListener("mouseleave", () => {
      tip.hidden = true;
      idle();
    });
    g.svg.addEventListener("click", (ev) => {
      const i = frameAt(ev);
      if (i < 0) return;
      if (g === main) {
        if (i > 0) state.selected = frame(main.T.key[i]).fnKey;
        zoomTo(i);
      } else if (i > 0) {
        openSandwich(frame(g.T.key[i]).fnKey);
        render();
        tip.hidden = true;
        idle();
      }
    });
  }
  $("reset").addEventListener("click", () => zoomTo(0));
  $("merge").addEventListener("click", () => {
    state.merge = !state.merge;
    rebuild();
    render();
    showMatched();
    idle();
  });
  $("order").addEventListener("click", () => {
    state.order = state.order === "heavy" ? "alpha" : "heavy";
    for (const g of graphs) if (g.T) g.layout();
    render();
    showMatched();
  });
  $("flip").addEventListener("click", () => {
    state.icicle = !state.icicle;
    main.icicle = state.icicle;
    render();
  });
  $("sandwich").addEventListener("click", () => {
    if (state.sandwich) state.sandwich = false;
    else if (state.selected !== null) openSandwich(state.selected);
    render();
    idle();
  });
  function setSearch() {
    search.classList.remove("bad");
    state.re = null;
    if (search.value) {
      try {
        state.re = new RegExp(search.value, nocase.checked ? "i" : "");
      } catch {
        search.classList.add("bad");
      }
    }
    render();
    showMatched();
  }
  search.addEventListener("input", setSearch);
  nocase.addEventListener("change", setSearch);
  document.addEventListener("keydown", (ev) => {
    if (ev.key === "Escape" && document.activeElement !== search) {
      if (state.sandwich) {
        state.sandwich = false;
        render();
        idle();
      } else zoomTo(0);
    } else if ((ev.key === "f" && (ev.ctrlKey || ev.metaKey)) || (ev.key === "/" && document.activeElement !== search)) {
      ev.preventDefault();
      search.focus();
    }
  });
  window.addEventListener("resize", render);

  rebuild();
  render();
  showTotals();
  idle();
  // Deep stacks make a tall page: start where the root is (the bottom, unless an icicle).
  if (!state.icicle) window.scrollTo(0, document.documentElement.scrollHeight);
})();
