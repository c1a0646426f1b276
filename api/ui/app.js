// pilotlight's web UI: plain JavaScript, no build step. Everything it shows
// comes from the REST API with the bearer token; text from the server is
// always set with textContent, never parsed as HTML.
"use strict";

const $ = (sel) => document.querySelector(sel);
const el = (tag, cls, text) => {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
};

const state = {
  token: sessionStorage.getItem("pilotlight.token") || localStorage.getItem("pilotlight.token"),
  info: null,
  functions: new Map(), // name -> FunctionView
  errors: new Map(),    // name -> recent error messages, newest first
  events: null,         // AbortController of the event stream
  logs: null,           // AbortController of the log stream
  armed: null,          // { name, until }: a delete waiting for its confirming click
  dead: null,           // the function whose dead letters are shown
  charts: null,         // { name, timer }: the function whose charts are shown
};

class ApiError extends Error {
  constructor(status, body) {
    const e = (body && body.error) || { message: `HTTP ${status}` };
    super(e.message);
    this.status = status; this.code = e.code; this.field = e.field;
  }
}

async function api(method, path, body, signal) {
  const headers = { Authorization: `Bearer ${state.token}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal });
  if (res.status === 401) { signOut("The token was refused; sign in again."); throw new ApiError(401, null); }
  if (!res.ok) {
    let parsed = null;
    try { parsed = await res.json(); } catch (_) { /* not JSON */ }
    throw new ApiError(res.status, parsed);
  }
  return res;
}

// Reads a streamed body line by line.
async function eachLine(res, onLine) {
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += decoder.decode(value, { stream: true });
    let i;
    while ((i = buf.indexOf("\n")) >= 0) {
      const line = buf.slice(0, i).replace(/\r$/, "");
      buf = buf.slice(i + 1);
      onLine(line);
    }
  }
  if (buf) onLine(buf);
}

// ---- sign in / out ----

async function signIn(token, remember) {
  state.token = token;
  const res = await api("GET", "/v1/info");
  state.info = await res.json();
  sessionStorage.setItem("pilotlight.token", token);
  if (remember) localStorage.setItem("pilotlight.token", token);
  showApp();
}

function signOut(message) {
  state.token = null;
  sessionStorage.removeItem("pilotlight.token");
  localStorage.removeItem("pilotlight.token");
  if (state.events) state.events.abort();
  if (state.logs) state.logs.abort();
  state.functions.clear();
  if (state.nodesTimer) { clearInterval(state.nodesTimer); state.nodesTimer = null; }
  $("#nodes-view").hidden = true;
  $("#app-view").hidden = true;
  $("#node").hidden = true;
  $("#signout").hidden = true;
  $("#signin-view").hidden = false;
  const err = $("#signin-error");
  err.hidden = !message;
  err.textContent = message || "";
}

function showApp() {
  $("#signin-view").hidden = true;
  $("#app-view").hidden = false;
  $("#signout").hidden = false;
  const i = state.info;
  const node = $("#node");
  node.replaceChildren();
  for (const [k, v] of [["domain", i.domain], ["region", i.region], ["runtime", i.runtime], ["edge", i.edge], ["queue", i.queue], ["version", i.version]]) {
    node.append(`${k} `, el("b", null, v), "   ");
  }
  node.hidden = false;
  const form = $("#create-form");
  form.elements.region.placeholder = i.region;
  const exec = i.runtime === "process";
  $("#image-field").hidden = exec;
  $("#exec-field").hidden = !exec;
  refreshAll().then(followEvents);
  if (!state.nodesTimer) state.nodesTimer = setInterval(refreshNodes, 5000);
}

// ---- the function list ----

async function refreshAll() {
  const res = await api("GET", "/v1/functions");
  const { functions } = await res.json();
  state.functions = new Map(functions.map((f) => [f.name, f]));
  render();
  refreshNodes();
}

// ---- nodes (several nodes sharing an etcd store) ----

async function refreshNodes() {
  if (!state.token) return;
  let list;
  try {
    list = await (await api("GET", "/v1/nodes")).json();
  } catch (e) {
    return;
  }
  const view = $("#nodes-view");
  view.hidden = !list.clustered;
  if (!list.clustered) return;
  const rows = list.nodes.map((n) => {
    const tr = el("tr");
    const id = el("td", "mono", n.id === list.this_node ? `${n.id} (this node)` : n.id);
    const labels = Object.entries(n.labels).map(([k, v]) => `${k}=${v}`).join(", ");
    const health = el("td");
    health.append(el("span", n.health === "ready" ? "phase ready" : "phase failed", n.health));
    tr.append(
      id,
      el("td", null, n.region),
      el("td", "mono", n.gateway),
      health,
      el("td", null, n.functions.length),
      el("td", null, n.instances),
      el("td", "mono", labels),
    );
    tr.title = n.functions.join(", ");
    return tr;
  });
  $("#nodes tbody").replaceChildren(...rows);
}

async function refreshOne(name) {
  try {
    const res = await api("GET", `/v1/functions/${encodeURIComponent(name)}`);
    state.functions.set(name, await res.json());
  } catch (e) {
    if (e.status === 404) state.functions.delete(name); else throw e;
  }
  render();
}

function noteError(name, message) {
  if (!message) return;
  const list = state.errors.get(name) || [];
  if (list[0] !== message) list.unshift(message);
  state.errors.set(name, list.slice(0, 3));
}

function render() {
  const body = $("#functions tbody");
  const rows = [];
  const names = [...state.functions.keys()].sort();
  for (const name of names) {
    const f = state.functions.get(name);
    const tr = el("tr");
    tr.dataset.name = name;
    tr.dataset.phase = f.phase;

    const nameCell = el("td");
    nameCell.append(el("div", "name", name), el("div", "gen", `generation ${f.generation}`));
    const phaseCell = el("td");
    phaseCell.append(el("span", `phase ${f.phase}`, f.phase));
    if (f.message && !f.error) phaseCell.append(el("div", "message", f.message));
    if (f.error) {
      noteError(name, f.error);
      // Failures back off and never give up: say which attempt this is and when the next one comes.
      const next = f.next_retry_ms ? ` · next try in ${Math.max(0, Math.round((f.next_retry_ms - Date.now()) / 1000))}s` : "";
      const kind = f.permanent ? "needs a fix, retried every few minutes" : "retrying";
      phaseCell.append(el("div", "retry", `attempt ${f.attempts} (${kind})${next}`));
    }
    if (f.stale) {
      const age = Math.round((Date.now() - f.observed_at_ms) / 1000);
      phaseCell.append(el("div", "stale", `stale: not observed for ${age}s`));
    }
    if (f.wanted !== undefined) phaseCell.append(el("div", "muted", `${f.ready_instances}/${f.wanted} routed`));
    const errs = state.errors.get(name) || [];
    if (errs.length && f.phase !== "ready") {
      const ul = el("ul", "errors");
      for (const m of errs) ul.append(el("li", null, m));
      phaseCell.append(ul);
    }

    const instCell = el("td");
    if (!f.instances.length) instCell.append(el("span", "muted", "none"));
    for (const i of f.instances) {
      const chip = el("span", `inst ${i.state}`, `${i.id.slice(0, 12)} ${i.state}`);
      chip.title = `${i.endpoint} · generation ${i.generation}`;
      instCell.append(chip);
    }

    const urlCell = el("td");
    if (f.url && /^https?:\/\//.test(f.url)) {
      const a = el("a", "url", f.url);
      a.href = f.url; a.target = "_blank"; a.rel = "noopener noreferrer";
      urlCell.append(a);
    }

    const actions = el("td", "actions");
    const logs = el("button", "small logs", "Logs");
    logs.type = "button";
    logs.addEventListener("click", () => followLogs(name));
    const charts = el("button", "small charts", "Charts");
    charts.type = "button";
    charts.addEventListener("click", () => showCharts(name));
    const dead = el("button", "small dead-letters", "Dead letters");
    dead.type = "button";
    dead.addEventListener("click", () => showDeadLetters(name));
    const armed = state.armed && state.armed.name === name && state.armed.until > Date.now();
    const del = el("button", armed ? "small danger delete armed" : "small danger delete", armed ? "Confirm delete" : "Delete");
    del.type = "button";
    del.disabled = f.phase === "deleting";
    del.addEventListener("click", () => armDelete(name));
    actions.append(charts, " ", logs, " ", dead, " ", del);

    tr.append(nameCell, phaseCell, instCell, urlCell, actions);
    rows.push(tr);
  }
  body.replaceChildren(...rows);
  $("#empty").hidden = rows.length > 0;
  $("#functions").hidden = rows.length === 0;
}

// Deleting takes two clicks: the first arms the button for four seconds
// (kept in state, so a live re-render does not disarm it).
function armDelete(name) {
  const armed = state.armed && state.armed.name === name && state.armed.until > Date.now();
  if (!armed) {
    state.armed = { name, until: Date.now() + 4000 };
    render();
    setTimeout(render, 4100);
    return;
  }
  state.armed = null;
  api("DELETE", `/v1/functions/${encodeURIComponent(name)}`)
    .then(() => refreshOne(name))
    .catch((e) => { render(); alertError(e); });
}

function alertError(e) {
  const p = $("#create-error");
  p.textContent = e.message;
  p.hidden = false;
}

// ---- live updates: server-sent events read through fetch (EventSource cannot send the token) ----

async function followEvents() {
  if (state.events) state.events.abort();
  const ctl = new AbortController();
  state.events = ctl;
  const live = $("#live");
  let data = "";
  try {
    const res = await api("GET", "/v1/events", undefined, ctl.signal);
    live.textContent = "live"; live.className = "live on";
    await eachLine(res, (line) => {
      if (line.startsWith("data:")) { data += line.slice(5).trimStart(); return; }
      if (line !== "" || !data) return;
      const ev = JSON.parse(data);
      data = "";
      if (ev.attempts > 0) noteError(ev.name, ev.message);
      if (ev.phase === "deleted") { state.functions.delete(ev.name); render(); return; }
      refreshOne(ev.name).catch(() => {});
    });
  } catch (e) {
    if (ctl.signal.aborted) return;
  }
  if (ctl.signal.aborted || !state.token) return;
  live.textContent = "reconnecting…"; live.className = "live off";
  setTimeout(() => { if (state.token) refreshAll().then(followEvents).catch(() => setTimeout(followEvents, 3000)); }, 2000);
}

// Instances change without a status change (scaling); refresh the list now and then.
setInterval(() => { if (state.token && !document.hidden) refreshAll().catch(() => {}); }, 5000);

// ---- logs ----

async function followLogs(name) {
  if (state.logs) state.logs.abort();
  const ctl = new AbortController();
  state.logs = ctl;
  $("#logs-view").hidden = false;
  $("#logs-name").textContent = name;
  const out = $("#logs");
  out.replaceChildren();
  const status = $("#logs-state");
  status.textContent = "following";
  try {
    const res = await api("GET", `/v1/functions/${encodeURIComponent(name)}/logs?follow=true&tail=200`, undefined, ctl.signal);
    await eachLine(res, (line) => {
      if (!line) return;
      const l = JSON.parse(line);
      const row = el("div", l.source);
      row.append(el("span", "inst-id", `${l.instance.slice(0, 12)} `), l.line);
      const atBottom = out.scrollTop + out.clientHeight >= out.scrollHeight - 4;
      out.append(row);
      if (atBottom) out.scrollTop = out.scrollHeight;
    });
    status.textContent = "ended (no running instance left)";
  } catch (e) {
    if (!ctl.signal.aborted) status.textContent = `stopped: ${e.message}`;
  }
}

// ---- charts: the last hour, drawn as plain SVG ----

const SVG = "http://www.w3.org/2000/svg";
const svg = (tag, attrs) => {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  return e;
};

// A round upper bound for an axis: 1, 2 or 5 times a power of ten.
function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

const fmt = (v, unit) => {
  if (v === null || v === undefined) return "–";
  if (Number.isInteger(v)) return `${v}${unit}`;
  const n = Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 10 ? v.toFixed(1) : v.toFixed(2);
  return `${n}${unit}`;
};

// One chart: `series` is [{ label, cls, values, bars? }]; null values leave gaps.
function chart(id, title, unit, points, series) {
  const W = 360, H = 150, L = 44, R = 8, T = 10, B = 22;
  const all = series.flatMap((s) => s.bars ? points.map((_, i) => series.filter((x) => x.bars).reduce((a, x) => a + (x.values[i] || 0), 0)) : s.values).filter((v) => v !== null);
  const max = niceMax(Math.max(0, ...all));
  const x = (i) => L + (i * (W - L - R)) / Math.max(1, points.length - 1);
  const y = (v) => T + (H - T - B) * (1 - v / max);
  const box = el("figure", "chart");
  box.id = `chart-${id}`;
  const head = el("figcaption");
  head.append(el("span", "chart-title", title));
  const now = el("span", "chart-now");
  head.append(now);
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": title, "data-max": max });
  for (const f of [0, 0.5, 1]) {
    root.append(svg("line", { x1: L, x2: W - R, y1: y(max * f), y2: y(max * f), class: "grid" }));
    const t = svg("text", { x: L - 4, y: y(max * f) + 4, class: "axis", "text-anchor": "end" });
    t.textContent = fmt(max * f, "");
    root.append(t);
  }
  for (const [i, label] of [[0, "−60 min"], [points.length - 1, "now"]]) {
    const t = svg("text", { x: x(i), y: H - 6, class: "axis", "text-anchor": i ? "end" : "start" });
    t.textContent = label;
    root.append(t);
  }
  const base = new Array(points.length).fill(0);
  const bw = Math.max(1, (W - L - R) / points.length - 0.5);
  const latest = [];
  for (const s of series) {
    const g = svg("g", { class: `series ${s.cls}`, "data-series": s.cls });
    if (s.bars) {
      s.values.forEach((v, i) => {
        if (!v) return;
        g.append(svg("rect", { x: x(i) - bw / 2, y: y(base[i] + v), width: bw, height: y(base[i]) - y(base[i] + v), "data-value": v }));
        base[i] += v;
      });
      latest.push(`${s.label} ${s.values.reduce((a, v) => a + (v || 0), 0)}`);
    } else {
      let d = "";
      let pen = false;
      s.values.forEach((v, i) => {
        if (v === null || v === undefined) { pen = false; return; }
        d += `${pen ? "L" : "M"}${x(i).toFixed(1)},${y(v).toFixed(1)}`;
        pen = true;
      });
      if (d) g.append(svg("path", { d }));
      // A dot on the newest point: a series of one point is otherwise invisible.
      const at = s.values.findLastIndex((v) => v !== null && v !== undefined);
      if (at >= 0) g.append(svg("circle", { cx: x(at), cy: y(s.values[at]), r: 2.5 }));
      const last = at >= 0 ? s.values[at] : undefined;
      g.setAttribute("data-last", last === undefined ? "" : last);
      g.setAttribute("data-peak", Math.max(0, ...s.values.filter((v) => v !== null)));
      latest.push(`${s.label} ${fmt(last === undefined ? null : last, unit)}`);
    }
    root.append(g);
  }
  now.textContent = latest.join(" · ");
  box.append(head, root);
  return box;
}

async function drawCharts(name) {
  const error = $("#charts-error");
  let h;
  try {
    const res = await api("GET", `/v1/functions/${encodeURIComponent(name)}/history`);
    h = await res.json();
    error.hidden = true;
  } catch (e) {
    error.textContent = e.message; error.hidden = false;
    return;
  }
  if (!state.charts || state.charts.name !== name) return;
  const p = h.points;
  const col = (k, scale) => p.map((x) => (x[k] === null || x[k] === undefined ? null : x[k] * (scale || 1)));
  const tiers = [...new Set(p.flatMap((x) => Object.keys(x.cold_starts)))].sort();
  const boxes = [
    chart("requests", "Requests", "/s", p, [{ label: "req/s", cls: "requests", values: col("requests_per_s") }]),
    chart("latency", "Latency", " ms", p, [
      { label: "p50", cls: "p50", values: col("p50_ms") },
      { label: "p99", cls: "p99", values: col("p99_ms") },
    ]),
    chart("errors", "Error rate", "%", p, [{ label: "errors", cls: "errors", values: col("error_rate", 100) }]),
    chart("instances", "Instances", "", p, [
      { label: "running", cls: "running", values: col("running") },
      { label: "paused", cls: "paused", values: col("paused") },
    ]),
    chart("cold", "Cold starts", "", p, tiers.length
      ? tiers.map((t, i) => ({ label: t, cls: `tier tier-${i}`, bars: true, values: p.map((x) => x.cold_starts[t] || 0) }))
      : [{ label: "none", cls: "tier", bars: true, values: p.map(() => 0) }]),
  ];
  const first = !$("#charts").children.length;
  $("#charts").replaceChildren(...boxes);
  if (first) $("#charts-view").scrollIntoView({ block: "start" });
  const total = p.reduce((a, x) => a + x.requests, 0);
  $("#charts-state").textContent = `${total} requests in the last hour · updated ${new Date().toLocaleTimeString()}`;
}

function showCharts(name) {
  if (state.charts) clearInterval(state.charts.timer);
  state.charts = { name, timer: setInterval(() => drawCharts(name), 10000) };
  $("#charts-view").hidden = false;
  $("#charts-name").textContent = name;
  $("#charts").replaceChildren();
  return drawCharts(name);
}

function closeCharts() {
  if (state.charts) clearInterval(state.charts.timer);
  state.charts = null;
  $("#charts-view").hidden = true;
}

// ---- dead letters ----

async function showDeadLetters(name) {
  state.dead = name;
  $("#dead-view").hidden = false;
  $("#dead-name").textContent = name;
  const error = $("#dead-error");
  error.hidden = true;
  let list = [];
  try {
    const res = await api("GET", `/v1/functions/${encodeURIComponent(name)}/dead-letters?limit=500`);
    list = (await res.json()).invocations;
  } catch (e) {
    error.textContent = e.message; error.hidden = false;
  }
  if (state.dead !== name) return;
  const rows = list.map((i) => {
    const tr = el("tr");
    tr.dataset.id = i.id;
    const retry = el("button", "small retry", "Retry");
    retry.type = "button";
    retry.addEventListener("click", () => {
      retry.disabled = true;
      api("POST", `/v1/dead-letters/${encodeURIComponent(i.id)}/retry`)
        .then(() => showDeadLetters(name))
        .catch((e) => { error.textContent = e.message; error.hidden = false; retry.disabled = false; });
    });
    const age = Math.max(0, Math.round((Date.now() - i.created_ms) / 1000));
    tr.append(el("td", "mono", i.id), el("td", null, i.attempts.length),
      el("td", null, i.response ? i.response.status : "none"), el("td", null, i.reason || ""),
      el("td", "muted", `${age}s`), el("td", "actions"));
    tr.lastChild.append(retry);
    return tr;
  });
  $("#dead tbody").replaceChildren(...rows);
  $("#dead-empty").hidden = rows.length > 0;
  $("#dead").hidden = rows.length === 0;
}

// ---- create ----

function specFromForm(form) {
  const v = (n) => form.elements[n].value.trim();
  const num = (n) => (v(n) === "" ? undefined : Number(v(n)));
  const spec = { name: v("name"), port: num("port") };
  if (state.info && state.info.runtime === "process") {
    spec.exec = { program: v("program"), args: v("args") ? v("args").split(/\s+/) : [] };
  } else {
    spec.image = v("image");
  }
  if (v("region")) spec.region = v("region");
  if (num("timeout_s") !== undefined) spec.timeout_s = num("timeout_s");
  const env = {};
  for (const line of v("env").split("\n")) {
    if (!line.trim()) continue;
    const i = line.indexOf("=");
    if (i < 1) throw new ApiError(422, { error: { message: `environment line "${line}" is not KEY=value`, field: "env" } });
    env[line.slice(0, i).trim()] = line.slice(i + 1);
  }
  if (Object.keys(env).length) spec.env = env;
  for (const group of ["limits", "scaling"]) {
    const part = {};
    for (const input of form.querySelectorAll(`input[name^="${group}."]`)) {
      if (input.value.trim() !== "") part[input.name.slice(group.length + 1)] = Number(input.value);
    }
    if (Object.keys(part).length) spec[group] = part;
  }
  return spec;
}

function markField(form, field) {
  for (const i of form.querySelectorAll(".invalid")) i.classList.remove("invalid");
  if (!field) return;
  const names = { image: state.info && state.info.runtime === "process" ? "program" : "image", "exec.program": "program" };
  const input = form.elements[names[field] || field];
  if (input && input.classList) { input.classList.add("invalid"); input.focus(); }
}

async function create(ev) {
  ev.preventDefault();
  const form = ev.target;
  const err = $("#create-error"), ok = $("#create-ok"), button = $("#create");
  err.hidden = true; ok.hidden = true;
  button.disabled = true;
  try {
    const spec = specFromForm(form);
    const res = await api("POST", "/v1/functions", spec);
    const r = await res.json();
    markField(form, null);
    ok.textContent = `Accepted ${r.name} (generation ${r.generation}); it appears in the list as it deploys.`;
    ok.hidden = false;
    await refreshOne(r.name);
  } catch (e) {
    if (e.status === 401) return;
    err.textContent = e.field ? `${e.field}: ${e.message}` : e.message;
    err.hidden = false;
    markField(form, e.field);
  } finally {
    button.disabled = false;
  }
}

// ---- wiring ----

document.addEventListener("DOMContentLoaded", () => {
  $("#signin-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const token = $("#token").value.trim();
    signIn(token, $("#remember").checked).catch((e) => {
      if (e.status !== 401) signOut(`Cannot reach the API: ${e.message}`);
    });
  });
  $("#signout").addEventListener("click", () => signOut(""));
  $("#create-form").addEventListener("submit", create);
  $("#logs-close").addEventListener("click", () => {
    if (state.logs) state.logs.abort();
    $("#logs-view").hidden = true;
  });
  $("#dead-close").addEventListener("click", () => { state.dead = null; $("#dead-view").hidden = true; });
  $("#charts-close").addEventListener("click", closeCharts);
  $("#dead-retry-all").addEventListener("click", () => {
    const name = state.dead;
    if (!name) return;
    api("POST", `/v1/functions/${encodeURIComponent(name)}/dead-letters/retry`)
      .then(() => showDeadLetters(name))
      .catch((e) => { const p = $("#dead-error"); p.textContent = e.message; p.hidden = false; });
  });
  if (state.token) signIn(state.token, false).catch(() => signOut(""));
});
