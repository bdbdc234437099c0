// batchmt built-in dashboard: polls /dashboard/data and draws SVG time series. No dependencies.
"use strict";
(function () {
  const params = new URLSearchParams(location.search);
  const INTERVAL = Math.max(0.25, parseFloat(params.get("interval") || "2"));   // seconds between polls
  const WINDOW = Math.max(1, parseInt(params.get("window") || "5", 10));       // samples per rate window
  const KEEP = 600;                                                             // samples kept
  const COLORS = ["#58a6ff", "#f0883e", "#d2a8ff", "#3fb950", "#ff7b72"];
  const samples = [];
  const state = { samples, errors: 0, charts: {} };
  window.batchmtDashboard = state;
  state.format = { fmt: (x, d) => fmt(x, d), money: (x, c) => money(x, c), axisMax: (v, cap) => axisMax(v, cap) };

  const $ = (id) => document.getElementById(id);
  $("interval").textContent = INTERVAL;
  $("window").textContent = (INTERVAL * WINDOW).toFixed(0);

  // ---------------------------------------------------------------- numbers
  // `digits` significant digits, trailing zeros dropped: 12316 -> "12.3k", 0.00019 -> "0.00019" (never "1.9e-4")
  function sig(x, digits) {
    if (x === 0) return "0";
    const a = Math.abs(x);
    if (a < 1e-6) return (x < 0 ? "-" : "") + "<0.000001";
    const decimals = Math.max(0, Math.min(8, digits - 1 - Math.floor(Math.log10(a))));
    return parseFloat(x.toFixed(decimals)).toString();
  }
  function fmt(x, digits = 3) {
    if (x === null || x === undefined || !isFinite(x)) return "–";
    const a = Math.abs(x);
    if (a >= 1e9) return sig(x / 1e9, digits) + "G";
    if (a >= 1e6) return sig(x / 1e6, digits) + "M";
    if (a >= 1e4) return sig(x / 1e3, digits) + "k";
    return sig(x, digits);
  }
  // amounts of money: two decimals from 1 up, two significant digits below (0.00019, not 1.90e-4)
  const amount = (x) => (x === null || !isFinite(x)) ? "–"
    : Math.abs(x) >= 1e4 ? fmt(x, 4) : Math.abs(x) >= 1 ? x.toFixed(2) : sig(x, 2);
  const money = (x, cur) => (x === null || !isFinite(x)) ? "–" : amount(x) + " " + cur;
  const secs = (x) => (x === null || !isFinite(x)) ? "–" : (x < 1 ? fmt(x * 1000) + " ms" : fmt(x) + " s");

  // Prometheus-style histogram_quantile over the delta of two cumulative bucket vectors.
  function quantile(q, h1, h0) {
    const cum = h1.cumulative.map((c, i) => c - (h0 ? h0.cumulative[i] : 0));
    const total = cum[cum.length - 1];
    if (!(total > 0)) return null;
    const rank = q * total;
    const bounds = h1.bounds;
    for (let i = 0; i < bounds.length; i++) {
      if (cum[i] >= rank) {
        const lo = i === 0 ? 0 : bounds[i - 1], below = i === 0 ? 0 : cum[i - 1];
        const inBucket = cum[i] - below;
        return inBucket > 0 ? lo + (bounds[i] - lo) * (rank - below) / inBucket : bounds[i];
      }
    }
    return bounds[bounds.length - 1];  // in +Inf: the highest finite bound, as Prometheus does
  }

  // ---------------------------------------------------------------- derived series
  function ratio(num, den) { return den > 0 ? num / den : null; }
  function derive(i) {
    const s = samples[i], p = samples[Math.max(0, i - WINDOW)], u = s.usage, pu = p.usage;
    const dt = s.time - p.time;
    const dSent = u.sentences - pu.sentences;
    const H = s.histograms, PH = p.histograms;
    const first = i === 0;
    return {
      t: s.time,
      throughput: first || dt <= 0 ? null : dSent / dt,
      p50: first ? null : quantile(0.5, H.request_seconds, PH.request_seconds),
      p95: first ? null : quantile(0.95, H.request_seconds, PH.request_seconds),
      p99: first ? null : quantile(0.99, H.request_seconds, PH.request_seconds),
      wait50: first ? null : quantile(0.5, H.queue_wait_seconds, PH.queue_wait_seconds),
      wait95: first ? null : quantile(0.95, H.queue_wait_seconds, PH.queue_wait_seconds),
      cost1k: first ? null : ratio(1000 * (u.cost - pu.cost), dSent),
      base1k: first ? null : ratio(1000 * (u.baseline_cost - pu.baseline_cost), u.baseline_prompts - pu.baseline_prompts),
      costPerHour: first || dt <= 0 ? null : 3600 * (u.cost - pu.cost) / dt,
      cost: u.cost, baseline: u.baseline_cost, saving: u.saving,
      hit: first ? ratio(u.cached_prompt_tokens, u.prompt_tokens)
                 : ratio(u.cached_prompt_tokens - pu.cached_prompt_tokens, u.prompt_tokens - pu.prompt_tokens),
      queue: s.queue_depth, inflight: s.prompts_in_flight,
      pack: ratio(H.sentences_per_prompt.sum - (first ? 0 : PH.sentences_per_prompt.sum),
                  H.sentences_per_prompt.count - (first ? 0 : PH.sentences_per_prompt.count)),
    };
  }

  // ---------------------------------------------------------------- SVG line chart
  const NS = "http://www.w3.org/2000/svg";
  function el(tag, attrs, parent) {
    const e = document.createElementNS(NS, tag);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    if (parent) parent.appendChild(e);
    return e;
  }
  // the axis' top: the data's maximum rounded up to 1, 2, 2.5 or 5 x 10^k, never above `cap` (a rate: 1 = 100%)
  function axisMax(v, cap) {
    if (!(v > 0)) return cap !== undefined ? Math.min(1, cap) : 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    const nice = [1, 2, 2.5, 5, 10].map((k) => k * p).find((n) => n >= v * 1.0001) || 10 * p;
    return cap !== undefined ? Math.min(nice, cap) : nice;
  }

  // opts.cap: the largest value the quantity can take (hit rate: 1); the legend is HTML above the plot, wrapping
  // instead of being cut off
  function lineChart(id, rows, series, yfmt, opts = {}) {
    const box = $(id);
    const legend = document.createElement("div");
    legend.className = "legend-row";
    box.replaceChildren(legend);
    const W = Math.max(200, box.clientWidth), Hh = Math.max(80, box.clientHeight - legend.offsetHeight - 2);
    const m = { l: 50, r: 8, t: 6, b: 18 };
    const svg = el("svg", { viewBox: `0 0 ${W} ${Hh}`, class: "chart-svg", preserveAspectRatio: "none" });
    const t0 = rows.length ? rows[0].t : 0, t1 = rows.length ? rows[rows.length - 1].t : 1;
    let ymax = 0, ymin = 0, points = 0;
    for (const r of rows) for (const s of series) {
      const v = r[s.key];
      if (v !== null && isFinite(v)) { ymax = Math.max(ymax, v); ymin = Math.min(ymin, v); points++; }
    }
    ymax = ymax > 0 ? axisMax(ymax, opts.cap) : (ymin < 0 ? 0 : axisMax(0, opts.cap));
    ymin = ymin < 0 ? -axisMax(-ymin) : 0;
    const x = (t) => m.l + (t1 > t0 ? (t - t0) / (t1 - t0) : 1) * (W - m.l - m.r);
    const y = (v) => Hh - m.b - ((v - ymin) / (ymax - ymin)) * (Hh - m.t - m.b);
    for (let k = 0; k <= 4; k++) {
      const v = ymin + (ymax - ymin) * k / 4;
      el("line", { x1: m.l, x2: W - m.r, y1: y(v), y2: y(v), class: "gridline" }, svg);
      el("text", { x: m.l - 4, y: y(v) + 3, "text-anchor": "end" }, svg).textContent = yfmt(v);
    }
    if (rows.length) {
      const span = t1 - t0;
      el("text", { x: m.l, y: Hh - 4 }, svg).textContent = span > 0 ? `-${fmt(span, 2)} s` : "";
      el("text", { x: W - m.r, y: Hh - 4, "text-anchor": "end" }, svg).textContent = "now";
    }
    series.forEach((s, si) => {
      let d = "", pen = false, n = 0;
      for (const r of rows) {
        const v = r[s.key];
        if (v === null || !isFinite(v)) { pen = false; continue; }
        d += (pen ? "L" : "M") + x(r.t).toFixed(1) + "," + y(v).toFixed(1);
        pen = true; n++;
      }
      const color = s.color || COLORS[si % COLORS.length];
      if (n === 1) d += "h-2";  // one point: a short stub so it shows
      el("path", { d, class: "series", stroke: color, "data-series": s.key, "data-points": n }, svg);
      const last = [...rows].reverse().find((r) => r[s.key] !== null && isFinite(r[s.key]));
      const item = document.createElement("span");
      item.className = "legend";
      item.dataset.series = s.key;
      item.style.color = color;
      item.textContent = s.label + (last ? " " + yfmt(last[s.key]) : "");
      legend.appendChild(item);
    });
    svg.setAttribute("data-points", points);
    box.appendChild(svg);
    state.charts[id] = { points, series: series.map((s) => s.key) };
  }

  // ---------------------------------------------------------------- render
  function render() {
    const rows = samples.map((_, i) => derive(i));
    const s = samples[samples.length - 1], u = s.usage, cur = u.currency, last = rows[rows.length - 1];
    document.querySelectorAll(".cur").forEach((e) => (e.textContent = cur));
    $("model").textContent = s.model || "";
    const st = $("status");
    st.textContent = s.ready ? "engine ready" : "engine starting";
    st.className = "pill " + (s.ready ? "ok" : "bad");
    $("since").textContent = u.since;
    const p = u.prices;
    $("prices").textContent = `pricing: ${p.model}` + (p.model === "none" ? " (set --price-* to see costs)" :
      ` · prompt ${p.prompt_per_mtok}, cached ${p.cached_prompt_per_mtok}, completion ${p.completion_per_mtok} ${cur}/1M tok · ${p.engine_hour} ${cur}/engine-hour`);
    $("t-sentences").textContent = fmt(u.sentences);
    $("t-rate").textContent = last.throughput === null ? "–" : fmt(last.throughput) + " /s";
    $("t-p95").textContent = secs(last.p95);
    $("t-cost").textContent = money(u.cost, cur);
    $("t-baseline").textContent = money(u.baseline_cost, cur);
    $("t-saving").textContent = u.baseline_cost > 0
      ? `${money(u.saving, cur)} (${fmt(100 * u.saving / u.baseline_cost, 3)}%)` : money(u.saving, cur);
    $("t-hit").textContent = u.prompt_tokens > 0 ? fmt(100 * u.cached_prompt_tokens / u.prompt_tokens, 3) + "%" : "–";
    $("t-queue").textContent = fmt(s.queue_depth);
    const pct = (v) => fmt(100 * v, 3) + "%";
    const m = (v) => fmt(v, 3);
    const cost = (v) => amount(v);
    lineChart("c-throughput", rows, [{ key: "throughput", label: "sentences/s" }], m);
    lineChart("c-latency", rows, [{ key: "p50", label: "p50" }, { key: "p95", label: "p95" }, { key: "p99", label: "p99" }], m);
    lineChart("c-cost1k", rows, [{ key: "cost1k", label: "actual" }, { key: "base1k", label: "one-per-prompt" }], cost);
    lineChart("c-cost", rows, [{ key: "cost", label: "actual" }, { key: "baseline", label: "baseline" },
                               { key: "saving", label: "saving", color: "#3fb950" }], cost);
    lineChart("c-hit", rows, [{ key: "hit", label: "hit rate" }], pct, { cap: 1 });
    lineChart("c-queue", rows, [{ key: "queue", label: "queued" }, { key: "inflight", label: "in flight" }], m);
    lineChart("c-wait", rows, [{ key: "wait50", label: "p50" }, { key: "wait95", label: "p95" }], m);
    lineChart("c-pack", rows, [{ key: "pack", label: "mean" }], m);
    state.last = last;
    document.body.dataset.state = samples.length >= 2 ? "live" : "loading";
  }

  async function poll() {
    try {
      const r = await fetch("/dashboard/data", { cache: "no-store" });
      if (!r.ok) throw new Error("HTTP " + r.status);
      samples.push(await r.json());
      if (samples.length > KEEP) samples.shift();
      render();
    } catch (e) {
      state.errors++;
      const st = $("status");
      st.textContent = "gateway unreachable: " + e.message;
      st.className = "pill bad";
      document.body.dataset.state = "error";
    } finally {
      setTimeout(poll, INTERVAL * 1000);
    }
  }
  window.addEventListener("resize", () => samples.length && render());
  poll();
})();
