// pgsubscriber dashboard: live status over server-sent events, hand-drawn SVG charts.
// Plain JavaScript, no dependency, no build step: served from the package, works offline.
"use strict";

const HISTORY_SECONDS = 600;
const COLORS = ["#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#4b5563"];
const SVG_NS = "http://www.w3.org/2000/svg";
let history = [];
let chosenTopic = null;
let eventsInFlight = false;

function el(tag, attrs, text) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function age(seconds) {
  if (seconds === null || seconds === undefined) return "-";
  seconds = Math.max(0, seconds);
  if (seconds < 60) return seconds.toFixed(0) + "s";
  if (seconds < 3600) return (seconds / 60).toFixed(0) + "m";
  if (seconds < 86400) return (seconds / 3600).toFixed(1) + "h";
  return (seconds / 86400).toFixed(1) + "d";
}

function clock(iso) {
  if (!iso) return "-";
  const d = new Date(iso);
  return d.toISOString().substring(11, 19);
}

function fillTable(id, rows, build, emptyText) {
  const body = document.querySelector("#" + id + " tbody");
  const columns = document.querySelectorAll("#" + id + " thead th").length;
  body.replaceChildren();
  if (!rows.length) {
    const tr = el("tr");
    tr.appendChild(el("td", { colspan: columns, class: "empty" }, emptyText));
    body.appendChild(tr);
    return;
  }
  for (const row of rows) body.appendChild(build(row));
}

function row(cells, attrs) {
  const tr = el("tr", attrs);
  for (const cell of cells) {
    if (cell instanceof Node) tr.appendChild(cell);
    else tr.appendChild(el("td", {}, cell));
  }
  return tr;
}

function render(sample) {
  const badge = document.getElementById("connection");
  if (sample.error) {
    badge.textContent = "database unreachable";
    badge.classList.add("off");
    document.getElementById("summary").textContent = sample.error;
    return;
  }
  badge.textContent = "live";
  badge.classList.remove("off");
  const s = sample.status;
  document.getElementById("summary").textContent =
    "at " + clock(s.at) + " UTC · newest id " + s.last_drawn_id + " · deliverable up to " + s.safe_id +
    " · NOTIFY queue " + (100 * s.notify_queue_usage).toFixed(1) + "%";
  const verdict = document.getElementById("verdict");
  verdict.textContent = s.problems.length ? s.problems.length + " problem(s)" : "OK";
  verdict.className = "verdict " + (s.problems.length ? "bad" : "ok");
  const problems = document.getElementById("problems");
  problems.replaceChildren(...s.problems.map((p) => el("li", {}, p)));

  fillTable("subscribers", s.subscribers, (sub) => row([
    sub.name, sub.group_name ? sub.group_name + (sub.role ? " (" + sub.role + ")" : "") : "-",
    sub.host, sub.pid, sub.topics.join(","),
    el("td", { class: "state state-" + sub.state }, sub.state),
    sub.position === null ? "-" : sub.position,
    el("td", { class: "lag-events" }, sub.lag_events === null ? "-" : sub.lag_events),
    sub.lag_seconds === null ? "-" : sub.lag_seconds.toFixed(1),
    age(sub.seen_ago) + " ago", sub.events_delivered, sub.last_error || "",
  ], { "data-subscriber": sub.name, "data-state": sub.state }), "no subscriber has recorded itself");

  fillTable("topics", s.topics, (t) => row([
    t.topic, t.events, t.oldest_id ?? "-", age(t.oldest_age), t.newest_id ?? "-", age(t.newest_age),
    t.events_per_second.toFixed(1), t.purged_up_to_id,
  ], { "data-topic": t.topic }), "no events");

  fillTable("writers", s.writers, (w) => row([
    w.pid, w.role || "-", w.application_name || "-", clock(w.since), age(w.open_seconds),
    w.holding_back ? "yes" : "no",
  ], { "data-writer": w.pid, class: w.holding_back ? "held-back" : "" }), "none");

  fillTable("purgers", s.purgers, (p) => row([
    p.host, p.pid, p.last_pass_at ? age(p.last_pass_age) + " ago" : "-",
    p.last_pass_seconds === null ? "-" : p.last_pass_seconds.toFixed(2) + "s",
    p.last_deleted, p.total_deleted, clock(p.next_pass_at), p.last_error || "",
  ]), "no purger has run");

  const select = document.getElementById("topic-choice");
  const topics = s.topics.map((t) => t.topic);
  if (select.options.length !== topics.length || topics.some((t, i) => select.options[i].value !== t)) {
    select.replaceChildren(...topics.map((t) => el("option", { value: t }, t)));
    if (chosenTopic && topics.includes(chosenTopic)) select.value = chosenTopic;
  }
  chosenTopic = select.value || null;
  loadEvents();
}

function loadEvents() {
  if (!chosenTopic || eventsInFlight || document.hidden) return;
  eventsInFlight = true;
  fetch("api/events?limit=20&topic=" + encodeURIComponent(chosenTopic))
    .then((r) => r.json())
    .then((events) => fillTable("events", events, (e) => row([
      e.id, clock(e.created_at), e.key || "", el("td", { class: "payload" }, e.payload),
    ], { "data-event": e.id }), "no events"))
    .catch(() => {})
    .finally(() => { eventsInFlight = false; });
}

// -- charts -----------------------------------------------------------------------------------

function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function niceMax(value) {
  if (value <= 0) return 1;
  const step = Math.pow(10, Math.floor(Math.log10(value)));
  for (const m of [1, 2, 5, 10]) if (m * step >= value) return m * step;
  return 10 * step;
}

// series: {name: [[t, value], ...]}; times in seconds.
function drawChart(id, series) {
  const chart = document.getElementById(id);
  const W = 600, H = 220, left = 48, right = 130, top = 10, bottom = 24;
  chart.replaceChildren();
  const now = Date.now() / 1000;
  // The window grows with the history, from 1 minute to HISTORY_SECONDS.
  let first = now;
  for (const points of Object.values(series)) if (points.length) first = Math.min(first, points[0][0]);
  const span = Math.min(HISTORY_SECONDS, Math.max(60, Math.ceil((now - first) / 60) * 60));
  const t0 = now - span;
  let max = 0;
  for (const points of Object.values(series)) for (const [, v] of points) max = Math.max(max, v);
  max = niceMax(max);
  const x = (t) => left + ((t - t0) / span) * (W - left - right);
  const y = (v) => H - bottom - (v / max) * (H - top - bottom);
  for (let i = 0; i <= 4; i++) {
    const v = (max * i) / 4;
    chart.appendChild(svg("line", { class: "grid", x1: left, x2: W - right, y1: y(v), y2: y(v) }));
    chart.appendChild(svg("text", { x: left - 6, y: y(v) + 4, "text-anchor": "end" }, v >= 100 ? v.toFixed(0) : String(+v.toFixed(2))));
  }
  const tick = span <= 60 ? 10 : span <= 300 ? 60 : 120;
  for (let back = 0; back <= span; back += tick) {
    const label = back === 0 ? "now" : "-" + (tick < 60 ? back + "s" : back / 60 + "m");
    chart.appendChild(svg("text", { x: x(now - back), y: H - 6, "text-anchor": "middle" }, label));
  }
  chart.appendChild(svg("line", { class: "axis", x1: left, x2: left, y1: top, y2: H - bottom }));
  chart.appendChild(svg("line", { class: "axis", x1: left, x2: W - right, y1: H - bottom, y2: H - bottom }));
  Object.keys(series).sort().forEach((name, i) => {
    const color = COLORS[i % COLORS.length];
    const points = series[name].filter(([t]) => t >= t0);
    if (points.length) {
      chart.appendChild(svg("polyline", {
        stroke: color, "data-series": name,
        points: points.map(([t, v]) => x(t).toFixed(1) + "," + y(v).toFixed(1)).join(" "),
      }));
    }
    const last = points.length ? points[points.length - 1][1] : 0;
    chart.appendChild(svg("rect", { x: W - right + 8, y: top + i * 16, width: 10, height: 10, fill: color }));
    chart.appendChild(svg("text", { x: W - right + 22, y: top + 9 + i * 16 }, name + " " + (last >= 100 ? last.toFixed(0) : +last.toFixed(1))));
  });
}

function drawCharts() {
  const rates = {}, lags = {};
  for (const point of history) {
    for (const [topic, v] of Object.entries(point.rates)) (rates[topic] ||= []).push([point.t, v]);
    for (const [sub, v] of Object.entries(point.lags)) (lags[sub] ||= []).push([point.t, v]);
  }
  drawChart("rate-chart", rates);
  drawChart("lag-chart", lags);
}

// -- live updates -----------------------------------------------------------------------------

function connect() {
  const source = new EventSource("api/stream");
  source.addEventListener("history", (e) => { history = JSON.parse(e.data); drawCharts(); });
  source.onmessage = (e) => {
    const sample = JSON.parse(e.data);
    if (sample.point && (!history.length || history[history.length - 1].t !== sample.point.t)) {
      history.push(sample.point);
      const cut = Date.now() / 1000 - HISTORY_SECONDS;
      while (history.length && history[0].t < cut) history.shift();
    }
    render(sample);
    drawCharts();
  };
  source.onerror = () => {
    const badge = document.getElementById("connection");
    badge.textContent = "reconnecting";
    badge.classList.add("off");
  };
}

document.getElementById("topic-choice").addEventListener("change", (e) => {
  chosenTopic = e.target.value;
  loadEvents();
});
connect();
