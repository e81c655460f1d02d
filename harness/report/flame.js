// Draws the flame graph held in #flame-data into the inline <svg id="flame">.
// Data: names[] (interned frame names) and per frame, in preorder with the root ("all") first:
// n = name index, p = parent index, v = inclusive count, b = baseline count (differential only).
// Layout happens here (children by name, or heaviest first), so the file stays small and frames
// too narrow at one zoom level are drawn at the next: nothing is thrown away when the file is made.
"use strict";
(() => {
  const D = JSON.parse(document.getElementById("flame-data").textContent);
  const names = D.names, nm = D.n, par = D.p, val = D.v, base = D.b || null;
  const N = val.length, total = val[0] || 0;
  const FH = 16, CHAR_W = 7, MIN_W = 0.1, MATCH = "rgb(230,0,230)";
  const SVGNS = "http://www.w3.org/2000/svg";
  const $ = (id) => document.getElementById(id);
  const svg = $("flame"), search = $("search"), tip = $("tip"), details = $("details");

  const kids = Array.from({ length: N }, () => []);
  const depth = new Int32Array(N);
  let maxDepth = 0;
  for (let i = 1; i < N; i++) {
    kids[par[i]].push(i);
    depth[i] = depth[par[i]] + 1;
    if (depth[i] > maxDepth) maxDepth = depth[i];
  }
  const start = new Float64Array(N);
  const state = { order: D.order, icicle: D.icicle, zoom: 0, re: null, narrow: 0 };

  const nameOf = (i) => names[nm[i]];
  const byName = (a, b) => (nameOf(a) < nameOf(b) ? -1 : nameOf(a) > nameOf(b) ? 1 : 0);
  const byWeight = (a, b) => val[b] - val[a] || byName(a, b);

  function layout() {
    const cmp = state.order === "heavy" ? byWeight : byName;
    const todo = [0];
    start[0] = 0;
    while (todo.length) {
      const i = todo.pop();
      let x = start[i];
      for (const k of kids[i].slice().sort(cmp)) {
        start[k] = x;
        x += val[k];
        todo.push(k);
      }
    }
  }

  // The warm palette: red to yellow, hue picked by the function name (offset dropped), so one
  // function has one colour in every graph.
  function hash(s) {
    let h = 2166136261;
    for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619);
    return h >>> 0;
  }
  function warm(name) {
    const h = hash(name.replace(/\+(0x)?[0-9a-f]+( \(.*\))?$/i, ""));
    const r = 205 + Math.round((50 * (h & 0xff)) / 255);
    const g = Math.round((230 * ((h >>> 8) & 0xff)) / 255);
    const b = Math.round((55 * ((h >>> 16) & 0xff)) / 255);
    return `rgb(${r},${g},${b})`;
  }
  // Differential: red for growth, blue for shrinkage, saturation by the change against the
  // largest change in the graph; white for none.
  let maxDelta = 0;
  if (base) for (let i = 0; i < N; i++) maxDelta = Math.max(maxDelta, Math.abs(val[i] - base[i]));
  function diffColor(i) {
    const d = val[i] - base[i];
    if (!maxDelta || Math.abs(d) < 1e-9) return "rgb(250,250,250)";
    const k = Math.round(80 + 150 * (1 - Math.abs(d) / maxDelta));
    return d > 0 ? `rgb(255,${k},${k})` : `rgb(${k},${k},255)`;
  }

  const fmt = (x) => (Number.isInteger(x) ? String(x) : x.toFixed(1));
  const pct = (x, of) => (of ? ((100 * x) / of).toFixed(2) : "0.00") + "%";
  function fit(name, w) {
    const n = Math.floor((w - 6) / CHAR_W);
    if (n < 3) return "";
    return name.length <= n ? name : name.slice(0, n - 2) + "..";
  }
  const matches = (i) => i > 0 && state.re !== null && state.re.test(nameOf(i));

  function render() {
    const W = Math.max(300, document.documentElement.clientWidth - 20);
    const H = (maxDepth + 1) * FH;
    const z = state.zoom, z0 = start[z], zw = val[z] || 1, zd = depth[z];
    const scale = W / zw;
    const onPath = new Uint8Array(N);
    for (let a = z; a >= 0; a = par[a]) onPath[a] = 1;
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
      } else if (depth[i] > zd && start[i] >= z0 && start[i] + val[i] <= z0 + zw) {
        x = (start[i] - z0) * scale;
        w = val[i] * scale;
      } else continue;
      if (w < MIN_W) {
        narrow++;
        continue;
      }
      const y = state.icicle ? depth[i] * FH : H - (depth[i] + 1) * FH;
      const hit = matches(i);
      const g = document.createElementNS(SVGNS, "g");
      g.setAttribute("class", "f" + (onPath[i] && i !== z ? " ancestor" : "") + (hit ? " match" : ""));
      g.setAttribute("data-i", i);
      g.setAttribute("aria-label", nameOf(i));
      const r = document.createElementNS(SVGNS, "rect");
      r.setAttribute("x", x.toFixed(2));
      r.setAttribute("y", y);
      r.setAttribute("width", w.toFixed(2));
      r.setAttribute("height", FH - 1);
      r.setAttribute("fill", hit ? MATCH : base ? diffColor(i) : warm(nameOf(i)));
      g.appendChild(r);
      const label = fit(nameOf(i), w);
      if (label) {
        const t = document.createElementNS(SVGNS, "text");
        t.setAttribute("x", (x + 3).toFixed(2));
        t.setAttribute("y", y + FH - 4.5);
        t.textContent = label;
        g.appendChild(t);
      }
      frag.appendChild(g);
    }
    svg.replaceChildren(frag);
    state.narrow = narrow;
    $("reset").disabled = z === 0;
    $("order").textContent = state.order === "heavy" ? "Order: heaviest first" : "Order: by name";
    $("flip").textContent = state.icicle ? "Root at top (icicle)" : "Root at bottom (flame)";
  }

  function describe(i) {
    let s = `${nameOf(i)}\n${fmt(val[i])} ${D.unit} (${pct(val[i], total)} of all`;
    if (state.zoom !== 0 && depth[i] > depth[state.zoom]) s += `, ${pct(val[i], val[state.zoom])} of zoomed`;
    s += ")";
    if (base) {
      const d = val[i] - base[i], sign = d >= 0 ? "+" : "";
      s += `\nbefore ${fmt(base[i])}, change ${sign}${fmt(d)}`;
      s += base[i] ? ` (${sign}${((100 * d) / base[i]).toFixed(1)}%)` : " (new)";
    }
    return s;
  }
  function idle() {
    let s = total ? "Click a frame to zoom, Reset (or Esc) to zoom out." : "No samples in this map.";
    if (state.narrow) s += ` ${state.narrow} frames narrower than ${MIN_W} px are not drawn: zoom in to see them.`;
    details.textContent = s;
  }
  function showMatched() {
    const out = $("matched");
    if (!state.re) {
      out.textContent = search.value ? "invalid regex" : "";
      return;
    }
    // Matched samples: the union of matching frames' spans, so a match above a match counts once.
    const spans = [];
    for (let i = 1; i < N; i++) if (matches(i)) spans.push([start[i], start[i] + val[i]]);
    spans.sort((a, b) => a[0] - b[0] || b[1] - a[1]);
    let sum = 0, end = -Infinity;
    for (const [s, e] of spans) {
      if (e <= end) continue;
      sum += e - Math.max(s, end);
      end = e;
    }
    out.textContent = `Matched: ${pct(sum, total)} (${fmt(sum)} of ${fmt(total)} ${D.unit}, ${spans.length} frames)`;
  }
  function zoomTo(i) {
    state.zoom = i;
    render();
    tip.hidden = true;
    idle();
  }

  const frameAt = (ev) => {
    const g = ev.target instanceof Element ? ev.target.closest("g.f") : null;
    return g ? Number(g.getAttribute("data-i")) : -1;
  };
  svg.addEventListener("mousemove", (ev) => {
    const i = frameAt(ev);
    if (i < 0) {
      tip.hidden = true;
      return;
    }
    const text = describe(i);
    tip.textContent = text;
    tip.hidden = false;
    const x = Math.min(ev.clientX + 12, window.innerWidth - tip.offsetWidth - 4);
    const below = ev.clientY + 16 + tip.offsetHeight <= window.innerHeight;
    tip.style.left = `${Math.max(0, x)}px`;
    tip.style.top = `${below ? ev.clientY + 16 : ev.clientY - tip.offsetHeight - 8}px`;
    details.textContent = text.replace(/\n/g, "  |  ");
  });
  svg.addEventListener("mouseleave", () => {
    tip.hidden = true;
    idle();
  });
  svg.addEventListener("click", (ev) => {
    const i = frameAt(ev);
    if (i >= 0) zoomTo(i);
  });
  $("reset").addEventListener("click", () => zoomTo(0));
  $("order").addEventListener("click", () => {
    state.order = state.order === "heavy" ? "alpha" : "heavy";
    layout();
    render();
    showMatched();
  });
  $("flip").addEventListener("click", () => {
    state.icicle = !state.icicle;
    render();
  });
  search.addEventListener("input", () => {
    search.classList.remove("bad");
    state.re = null;
    if (search.value) {
      try {
        state.re = new RegExp(search.value);
      } catch {
        search.classList.add("bad");
      }
    }
    render();
    showMatched();
  });
  document.addEventListener("keydown", (ev) => {
    if (ev.key === "Escape" && document.activeElement !== search) zoomTo(0);
    else if ((ev.key === "f" && (ev.ctrlKey || ev.metaKey)) || (ev.key === "/" && document.activeElement !== search)) {
      ev.preventDefault();
      search.focus();
    }
  });
  window.addEventListener("resize", render);

  layout();
  render();
  idle();
})();
