// The dashboard: polls /api/snapshot and /api/history every two seconds and
// draws everything itself (SVG), so it works offline with nothing vendored.
"use strict";

const POLL_MS = 2000;
const SVG = "http://www.w3.org/2000/svg";
const $ = (id) => document.getElementById(id);

// Number formats; the browser test reproduces them exactly.
function fmtMs(x) {
  if (x === null || x === undefined) return "—";
  return x < 10 ? x.toFixed(2) : x.toFixed(1);
}
function fmtRate(x) {
  if (x === null || x === undefined) return "—";
  return Math.round(x).toLocaleString("en-US");
}
function clock(ms) {
  return new Date(ms).toTimeString().slice(0, 8);
}

function setText(id, text, value) {
  const el = $(id);
  el.textContent = text;
  if (value !== undefined) el.dataset.value = value === null ? "" : String(value);
}

function renderHeadline(snap) {
  const m = snap.metrics;
  const target = snap.target_latency_ms;
  setText("target-value", fmtMs(target), target);
  const q = m && m.latency_ms;
  setText("p99-value", fmtMs(q ? q.p99 : null), q ? q.p99 : null);
  setText("p50-value", fmtMs(q ? q.p50 : null), q ? q.p50 : null);
  setText("max-value", fmtMs(q ? q.max : null), q ? q.max : null);
  setText("producer-rate", fmtRate(m && m.producer_rate), m ? m.producer_rate : null);
  setText("producer-target", fmtRate(m && m.producer_target_rate), m ? m.producer_target_rate : null);
  setText("consumer-rate", fmtRate(m && m.consumer_rate), m ? m.consumer_rate : null);
  setText("publish-delay", fmtMs(m && m.publish_delay_p99_ms), m ? m.publish_delay_p99_ms : null);

  const card = $("p99-card");
  card.classList.remove("ok", "bad", "stale");
  let verdict = "waiting for data";
  if (m && q) {
    const age = (m.timestamp_ms - (m.latency_timestamp_ms || m.timestamp_ms)) / 1000;
    if (age > 15) {
      card.classList.add("stale");
      verdict = `stale: last window ${Math.round(age)} s ago`;
    } else if (q.p99 <= target) {
      card.classList.add("ok");
      verdict = `under target by ${fmtMs(target - q.p99)} ms`;
    } else {
      card.classList.add("bad");
      verdict = `over target by ${fmtMs(q.p99 - target)} ms`;
    }
  } else if (m && !m.sources.consumer.up) {
    verdict = "consumer not answering";
  }
  $("p99-verdict").textContent = verdict;
  const updated = $("updated");
  updated.dataset.snapshotTs = m ? String(m.timestamp_ms) : "";
  updated.textContent = m ? `updated ${clock(m.timestamp_ms)} · polled every ${snap.poll_interval_s} s` : "waiting for the first poll";
}

function renderServices(snap) {
  const m = snap.metrics;
  const phase = (name) => snap.sandbox.phases.find((p) => p.phase === name);
  const items = [
    ["producer", m && m.sources.producer.up, m && m.sources.producer.error],
    ["consumer", m && m.sources.consumer.up, m && m.sources.consumer.error],
    ["Kafka reachable", phase("kafka_ready") && phase("kafka_ready").done, null],
    ["agent loop", phase("agent") && phase("agent").done, null],
  ];
  const box = $("services");
  box.replaceChildren(
    ...items.map(([name, up, error]) => {
      const el = document.createElement("span");
      el.className = "pill " + (up ? "up" : "down");
      el.id = "service-" + name.replace(/ /g, "-").toLowerCase();
      el.textContent = `${name} ${up ? "up" : "down"}`;
      if (error) el.title = error;
      return el;
    })
  );
  $("phases").replaceChildren(
    ...snap.sandbox.phases.map((p) => {
      const li = document.createElement("li");
      li.textContent = p.label;
      if (p.done) li.className = "done";
      return li;
    })
  );
}

const firstSeenSettings = {};
function renderBroker(snap) {
  const b = snap.sandbox.broker;
  const body = $("broker").tBodies[0];
  if (!b) return;
  const rows = [];
  const row = (k, v, changed) => {
    const tr = document.createElement("tr");
    if (changed) tr.className = "changed";
    const tk = document.createElement("td");
    tk.className = "k";
    tk.textContent = k;
    const tv = document.createElement("td");
    tv.className = "v";
    tv.textContent = v;
    tr.append(tk, tv);
    return tr;
  };
  for (const [k, v] of Object.entries(b.env)) {
    if (!(k in firstSeenSettings)) firstSeenSettings[k] = v;
    rows.push(row(k, v, firstSeenSettings[k] !== v));
  }
  for (const [k, v] of Object.entries(b.resources)) rows.push(row(k, v, false));
  rows.push(row("ready brokers", `${b.ready_replicas} / ${b.replicas}`, false));
  body.replaceChildren(...rows);
}

function renderAgent(snap) {
  const lines = snap.sandbox.agent;
  if (!lines.length) return;
  $("agent").replaceChildren(
    ...lines
      .slice()
      .reverse()
      .map((l) => {
        const li = document.createElement("li");
        const t = document.createElement("span");
        t.className = "t";
        t.textContent = clock(l.time_ms);
        const k = document.createElement("span");
        k.className = "k k-" + l.kind;
        k.textContent = l.kind;
        li.append(t, k, document.createTextNode(l.text));
        return li;
      })
  );
}

function niceStep(x) {
  const p = Math.pow(10, Math.floor(Math.log10(x)));
  const f = x / p;
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * p;
}

// A line chart: series of {t, v} (v null breaks the line), target lines,
// and agent actions as vertical markers.
function drawChart(svg, series, opts) {
  const W = 900, H = 260, L = 56, R = 12, T = 10, B = 24;
  const all = series.flatMap((s) => s.values.filter((p) => p.v !== null && p.v !== undefined));
  const times = series.flatMap((s) => s.values.map((p) => p.t));
  svg.replaceChildren();
  svg.dataset.points = String(all.length);
  const el = (name, attrs, text) => {
    const e = document.createElementNS(SVG, name);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    svg.appendChild(e);
    return e;
  };
  if (!all.length) {
    el("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "empty" }, opts.empty);
    return;
  }
  const actionTimes = (opts.actions || []).map((a) => a.time_ms);
  let t1 = Math.max(...times, ...actionTimes);
  let t0 = Math.min(...times, ...actionTimes);
  if (t1 - t0 < 60000) t0 = t1 - 60000;
  const top = Math.max(...all.map((p) => p.v), ...(opts.floorMax ? [opts.floorMax] : []));
  // Round the axis up to 4 steps of 1, 2 or 5 × 10^n, so tick labels are clean.
  const step = niceStep((top > 0 ? top * 1.1 : 1) / 4);
  const vmax = step * 4;
  const x = (t) => L + ((t - t0) / (t1 - t0)) * (W - L - R);
  const y = (v) => T + (1 - v / vmax) * (H - T - B);
  for (let i = 0; i <= 4; i++) {
    const v = (vmax * i) / 4;
    el("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), class: "grid" });
    el("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end" }, opts.fmt(v));
  }
  for (let i = 0; i <= 4; i++) {
    const t = t0 + ((t1 - t0) * i) / 4;
    el("text", { x: x(t), y: H - 6, "text-anchor": i === 0 ? "start" : i === 4 ? "end" : "middle" }, clock(t));
  }
  for (const a of opts.actions || []) {
    if (a.time_ms < t0) continue;
    if (a.kind === "settings-changed") {
      el("line", { x1: x(a.time_ms), x2: x(a.time_ms), y1: T, y2: H - B, class: "action" });
      el("title", {}, a.text);
    } else if (a.kind === "auto-start") {
      el("circle", { cx: x(a.time_ms), cy: H - B - 3, r: 3, class: "run" });
    }
  }
  for (const s of series) {
    let d = "";
    let pen = false;
    for (const p of s.values) {
      if (p.v === null || p.v === undefined) {
        pen = false;
        continue;
      }
      d += `${pen ? "L" : "M"}${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`;
      pen = true;
    }
    if (d) el("path", { d, class: s.cls });
  }
}

function renderCharts(hist, snap) {
  const pts = hist.points;
  const target = snap.target_latency_ms;
  const series = (key) => pts.map((p) => ({ t: p.time_ms, v: p[key] }));
  drawChart(
    $("latency-chart"),
    [
      { cls: "s-target", values: pts.map((p) => ({ t: p.time_ms, v: p.target_ms })) },
      { cls: "s-p50", values: series("p50_ms") },
      { cls: "s-p99", values: series("p99_ms") },
    ],
    { fmt: (v) => (v === 0 ? "0" : v < 1 ? v.toFixed(2) : v < 10 ? v.toFixed(1) : v.toFixed(0)) + " ms", actions: hist.actions, floorMax: target, empty: "waiting for latency data" }
  );
  drawChart(
    $("rate-chart"),
    [
      { cls: "s-ptarget", values: series("producer_target_rate") },
      { cls: "s-prod", values: series("producer_rate") },
      { cls: "s-cons", values: series("consumer_rate") },
    ],
    { fmt: (v) => (v >= 1000 ? +(v / 1000).toFixed(1) + "k" : Math.round(v)) + "/s", actions: hist.actions, empty: "waiting for rates" }
  );
}

async function refresh() {
  try {
    const [snap, hist] = await Promise.all([
      fetch("/api/snapshot").then((r) => r.json()),
      fetch("/api/history").then((r) => r.json()),
    ]);
    renderHeadline(snap);
    renderServices(snap);
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
