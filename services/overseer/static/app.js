// The dashboard: polls /api/snapshot and /api/history every two seconds and
// draws everything itself (SVG), so it works offline with nothing vendored.
"use strict";

const POLL_MS = 2000;
const SVG = "http://www.w3.org/2000/svg";
const $ = (id) => document.getElementById(id);
const known = (x) => x !== null && x !== undefined;

// Number formats; the browser test reproduces them exactly.
function fmtMs(x) {
  if (!known(x)) return "—";
  return x < 10 ? x.toFixed(2) : x.toFixed(1);
}
function fmtRate(x) {
  if (!known(x)) return "—";
  return Math.round(x).toLocaleString("en-US");
}
function clock(ms, withSeconds = true) {
  return new Date(ms).toTimeString().slice(0, withSeconds ? 8 : 5);
}

function fmtAge(s) {
  if (s < 120) return `${Math.round(s)} s`;
  if (s < 120 * 60) return `${Math.round(s / 60)} min`;
  return `${Math.round(s / 3600)} h`;
}

function setText(id, text, value) {
  const el = $(id);
  el.textContent = text;
  if (value !== undefined) el.dataset.value = known(value) ? String(value) : "";
}

function node(tag, cls, text) {
  const el = document.createElement(tag);
  if (cls) el.className = cls;
  if (known(text)) el.textContent = text;
  return el;
}

// ---- headline cards ----------------------------------------------------

function renderHeadline(snap) {
  const m = snap.metrics;
  const q = m && m.latency_ms;
  const target = snap.target_latency_ms;
  setText("target-value", fmtMs(target), target);
  setText("p99-value", fmtMs(q && q.p99), q && q.p99);
  setText("p50-value", fmtMs(q && q.p50), q && q.p50);
  setText("p95-value", fmtMs(q && q.p95), q && q.p95);
  setText("p999-value", fmtMs(q && q.p999), q && q.p999);
  setText("max-value", fmtMs(q && q.max), q && q.max);
  setText("producer-rate", fmtRate(m && m.producer_rate), m && m.producer_rate);
  setText("producer-target", fmtRate(m && m.producer_target_rate), m && m.producer_target_rate);
  setText("publish-delay", fmtMs(m && m.publish_delay_p99_ms), m && m.publish_delay_p99_ms);
  setText("consumer-rate", fmtRate(m && m.consumer_rate), m && m.consumer_rate);
  setText("consumer-samples", q ? q.count.toLocaleString("en-US") : "—");
  setText("window-s", m && m.window_s ? String(+m.window_s.toFixed(1)) : "—");
  const c = snap.consumer;
  setText(
    "consumer-errors",
    c ? `${c.errors_total} errors · ${c.invalid_total || 0} without a send time` : m && m.sources.consumer.error ? `not answering: ${m.sources.consumer.error}` : "—"
  );

  const card = $("p99-card");
  card.classList.remove("ok", "bad", "stale");
  let verdict = "waiting for the first consumer window";
  if (m && q) {
    const age = (m.timestamp_ms - (m.latency_timestamp_ms || m.timestamp_ms)) / 1000;
    if (age > snap.stale_after_s) {
      card.classList.add("stale");
      verdict = `stale: no new window for ${fmtAge(age)}`;
    } else if (q.p99 <= target) {
      card.classList.add("ok");
      verdict = `within target, ${fmtMs(target - q.p99)} ms to spare`;
    } else {
      card.classList.add("bad");
      verdict = `over target by ${fmtMs(q.p99 - target)} ms`;
    }
  } else if (m && !m.sources.consumer.up) {
    card.classList.add("stale");
    verdict = "consumer not answering: latency unknown";
  }
  $("p99-verdict").textContent = verdict;
  const updated = $("updated");
  updated.dataset.snapshotTs = m ? String(m.timestamp_ms) : "";
  updated.textContent = m
    ? `updated ${clock(m.timestamp_ms)} · overseer polls every ${snap.poll_interval_s} s · charts cover up to ${Math.round(snap.history_s / 60)} min`
    : "waiting for the first poll";
}

// ---- services, phases, broker, agent ------------------------------------

function agentRunning(actions) {
  const runs = actions.filter((a) => a.kind === "auto-start" || a.kind === "auto-end");
  return runs.length > 0 && runs[runs.length - 1].kind === "auto-start";
}

function renderServices(snap, hist) {
  const m = snap.metrics;
  const phase = (name) => snap.sandbox.phases.find((p) => p.phase === name) || {};
  const loadgen = (name) => {
    if (!m) return ["idle", `${name} ?`, "no poll yet"];
    const source = m.sources[name];
    if (!source.up) return ["down", `${name} down`, source.error || ""];
    const stats = snap[name];
    if (stats && !stats.connected) return ["warn", `${name} up · no broker`, "answers, but has no broker connection"];
    return ["up", `${name} up`, ""];
  };
  const kafka = () => {
    const b = snap.sandbox.broker;
    if (b && b.replicas > 0) {
      const ready = b.ready_replicas >= b.replicas;
      return [ready ? "up" : "warn", `Kafka ${b.ready_replicas}/${b.replicas} ready`, ""];
    }
    return phase("kafka_ready").done ? ["up", "Kafka reachable", ""] : ["idle", "Kafka not ready", ""];
  };
  const agent = () => {
    if (!phase("agent").done) return ["idle", "agent not started", ""];
    return agentRunning(hist.actions) ? ["up", "agent running", "a vibectl auto run is in progress"] : ["up", "agent waiting", "between vibectl auto runs"];
  };
  const items = [
    ["producer", ...loadgen("producer")],
    ["consumer", ...loadgen("consumer")],
    ["kafka", ...kafka()],
    ["agent", ...agent()],
  ];
  $("services").replaceChildren(
    ...items.map(([id, state, text, title]) => {
      const el = node("span", "pill " + state, text);
      el.id = "service-" + id;
      if (title) el.title = title;
      return el;
    })
  );
  $("phases").replaceChildren(
    ...snap.sandbox.phases.map((p) => {
      const li = node("li", p.done ? "done" : "", p.label);
      li.dataset.phase = p.phase;
      return li;
    })
  );
}

function renderBroker(snap) {
  const b = snap.sandbox.broker;
  if (!b) return;
  const initial = snap.sandbox.broker_initial_env || {};
  const row = (k, v, was) => {
    const tr = node("tr", known(was) ? "changed" : "");
    const tv = node("td", "v");
    if (known(was)) tv.append(node("span", "was", was));
    tv.append(document.createTextNode(v));
    tr.append(node("td", "k", k), tv);
    return tr;
  };
  const rows = Object.entries(b.env).map(([k, v]) => row(k, v, k in initial && initial[k] !== v ? initial[k] : null));
  for (const [k, v] of Object.entries(b.resources)) rows.push(row(k, v, null));
  rows.push(row("ready brokers", `${b.ready_replicas} / ${b.replicas}`, null));
  rows.push(row("read at", clock(b.observed_at_ms), null));
  $("broker").tBodies[0].replaceChildren(...rows);
}

function renderAgent(snap) {
  const lines = snap.sandbox.agent;
  if (!lines.length) return;
  $("agent").replaceChildren(
    ...lines
      .slice()
      .reverse()
      .map((l) => {
        const li = node("li");
        li.append(node("span", "t", clock(l.time_ms)), node("span", "k k-" + l.kind, l.kind), document.createTextNode(l.text));
        return li;
      })
  );
}

// ---- charts ---------------------------------------------------------------

function niceStep(x) {
  const p = Math.pow(10, Math.floor(Math.log10(x)));
  const f = x / p;
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 2.5 ? 2.5 : f <= 5 ? 5 : 10) * p;
}

// "KAFKA_NUM_IO_THREADS: 1 -> 4; KAFKA_HEAP_OPTS: a -> b" as a short label.
function shortChange(text) {
  const label = text
    .split("; ")
    .map((c) => c.replace(/^KAFKA_/, "").replace(/: /, " ").replace(/ -> /g, "→"))
    .join(", ");
  return label.length > 34 ? label.slice(0, 33) + "…" : label;
}

// Pairs of auto-start/auto-end as [start, end]; a run still going ends now.
function agentRuns(actions, now) {
  const runs = [];
  let start = null;
  for (const a of actions) {
    if (a.kind === "auto-start") start = a;
    else if (a.kind === "auto-end" && start) {
      runs.push([start.time_ms, a.time_ms, a.text]);
      start = null;
    }
  }
  if (start) runs.push([start.time_ms, now, "running"]);
  return runs;
}

// A line chart over [t0, t1]: series of {t, v} (v null breaks the line),
// horizontal reference lines, agent runs as bands and setting changes as
// labelled markers. With `clip`, rare spikes (a broker restart) are drawn at
// the top edge with their value instead of flattening everything else.
function drawChart(svg, c) {
  const W = 900, H = 270, L = 58, R = 14, T = 14, B = 24;
  const values = c.series.flatMap((s) => s.values.filter((p) => known(p.v)).map((p) => p.v));
  svg.replaceChildren();
  svg.dataset.points = String(values.length);
  const el = (name, attrs, text, parent = svg) => {
    const e = document.createElementNS(SVG, name);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    if (known(text)) e.textContent = text;
    parent.appendChild(e);
    return e;
  };
  if (!values.length) {
    el("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "empty" }, c.empty);
    return;
  }
  const { t0, t1 } = c;
  const sorted = values.slice().sort((a, b) => a - b);
  let top = Math.max(sorted[sorted.length - 1], ...c.hlines.map((h) => h.v * 1.15));
  if (c.clip) {
    const typical = sorted[Math.floor(0.9 * (sorted.length - 1))];
    const cap = Math.max(typical * 1.5, ...c.hlines.map((h) => h.v * 1.5));
    if (top > cap * 1.5) top = cap;
  }
  const step = niceStep(Math.max(top, c.minTop || 0) * 1.05 / 4);
  const vmax = step * 4;
  const x = (t) => L + ((t - t0) / Math.max(1, t1 - t0)) * (W - L - R);
  const y = (v) => T + (1 - Math.min(v, vmax) / vmax) * (H - T - B);

  for (const [start, end, how] of c.runs) {
    if (end < t0) continue;
    const x0 = x(Math.max(start, t0));
    const band = el("rect", { x: x0, y: T, width: Math.max(2, x(end) - x0), height: H - T - B, class: "run-band" });
    el("title", {}, `vibectl auto ${clock(start)}–${clock(end)}: ${how}`, band);
  }
  for (let i = 0; i <= 4; i++) {
    const v = step * i;
    el("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), class: i === 0 ? "axis" : "grid" });
    el("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end" }, c.fmt(v));
  }
  const seconds = t1 - t0 < 10 * 60 * 1000;
  for (let i = 0; i <= 4; i++) {
    const t = t0 + ((t1 - t0) * i) / 4;
    const anchor = i === 0 ? "start" : i === 4 ? "end" : "middle";
    el("text", { x: x(t), y: H - 6, "text-anchor": anchor }, clock(t, seconds));
  }
  let labelEnd = -Infinity;
  for (const a of c.changes) {
    if (a.time_ms < t0) continue;
    const ax = x(a.time_ms);
    const line = el("line", { x1: ax, x2: ax, y1: T, y2: H - B, class: "action" });
    el("title", {}, `${clock(a.time_ms)} ${a.text}`, line);
    const label = shortChange(a.text);
    const width = label.length * 6;
    const right = ax + 4 + width <= W - R;
    const start = right ? ax + 4 : ax - 4 - width;
    if (start > labelEnd) {
      el("text", { x: right ? ax + 4 : ax - 4, y: T + 9, "text-anchor": right ? "start" : "end", class: "action-label" }, label);
      labelEnd = start + width + 8;
    }
  }
  for (const h of c.hlines) {
    el("line", { x1: L, x2: W - R, y1: y(h.v), y2: y(h.v), class: h.cls });
    el("text", { x: L + 6, y: y(h.v) - 5, class: h.cls + "-label" }, h.label);
  }
  for (const s of c.series) {
    let d = "";
    let pen = false;
    for (const p of s.values) {
      if (!known(p.v) || p.t < t0) {
        pen = false;
        continue;
      }
      d += `${pen ? "L" : "M"}${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`;
      pen = true;
    }
    if (d) el("path", { d, class: s.cls });
    const last = s.values.filter((p) => known(p.v)).pop();
    if (s.dot && last && last.t >= t0) el("circle", { cx: x(last.t), cy: y(last.v), r: 3.5, class: `last dot-${s.dot}` });
    // Label the peak of each run of clipped points.
    if (c.clip && s.labelClipped) {
      let peak = null;
      const flush = () => {
        if (!peak) return;
        el("path", { d: `M${x(peak.t) - 4},${T + 6}L${x(peak.t) + 4},${T + 6}L${x(peak.t)},${T}Z`, class: "clip-mark" });
        el("text", { x: x(peak.t) + 6, y: T + 7, class: "clip-label" }, c.fmt(peak.v));
        peak = null;
      };
      for (const p of s.values) {
        if (known(p.v) && p.v > vmax && p.t >= t0) {
          if (!peak || p.v > peak.v) peak = p;
        } else flush();
      }
      flush();
    }
  }
}

function fmtAxisMs(v) {
  if (v >= 1000) return +(v / 1000).toFixed(2) + " s";
  return (v === 0 ? "0" : v < 1 ? v.toFixed(2) : v < 10 ? +v.toFixed(1) : v.toFixed(0)) + " ms";
}
function fmtAxisRate(v) {
  if (v >= 1e6) return +(v / 1e6).toFixed(2) + "M/s";
  if (v >= 1000) return +(v / 1000).toFixed(1) + "k/s";
  return Math.round(v) + "/s";
}

function renderCharts(hist, snap) {
  const pts = hist.points;
  const actions = hist.actions;
  // Both charts share one time axis: from the first point (or agent action)
  // to now, at least a dozen polls wide, at most the history span.
  const times = pts.map((p) => p.time_ms).concat(actions.map((a) => a.time_ms));
  const t1 = times.length ? Math.max(...times) : Date.now();
  const minSpan = Math.min(snap.history_s, 12 * snap.poll_interval_s) * 1000;
  const t0 = Math.max(t1 - snap.history_s * 1000, Math.min(t1 - minSpan, ...times));
  const runs = agentRuns(actions, t1);
  const changes = actions.filter((a) => a.kind === "settings-changed");
  const series = (key) => pts.map((p) => ({ t: p.time_ms, v: p[key] }));
  const target = snap.target_latency_ms;
  drawChart($("latency-chart"), {
    t0, t1, runs, changes, clip: true,
    series: [
      { cls: "s-p50", values: series("p50_ms"), dot: "p50" },
      { cls: "s-p99", values: series("p99_ms"), dot: "p99", labelClipped: true },
    ],
    hlines: [{ v: target, cls: "target", label: `target ${fmtMs(target)} ms` }],
    fmt: fmtAxisMs,
    empty: "waiting for latency data",
  });
  drawChart($("rate-chart"), {
    t0, t1, runs, changes, clip: false, minTop: 10,
    series: [
      { cls: "s-ptarget", values: series("producer_target_rate") },
      { cls: "s-cons", values: series("consumer_rate"), dot: "cons" },
      { cls: "s-prod", values: series("producer_rate"), dot: "prod" },
    ],
    hlines: [],
    fmt: fmtAxisRate,
    empty: "waiting for rates",
  });
}

// ---- loop -------------------------------------------------------------------

async function refresh() {
  try {
    const [snap, hist] = await Promise.all([
      fetch("/api/snapshot").then((r) => r.json()),
      fetch("/api/history").then((r) => r.json()),
    ]);
    renderHeadline(snap);
    renderServices(snap, hist);
    renderBroker(snap);
    renderAgent(snap);
    renderCharts(hist, snap);
    document.body.dataset.rendered = "true";
  } catch (e) {
    $("updated").textContent = "cannot reach the overseer: " + e;
  } finally {
    setTimeout(refresh, POLL_MS);
  }
}
refresh();
