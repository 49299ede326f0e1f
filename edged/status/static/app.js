// The status page: polls the local API and updates the page in place; no framework, no build step.
"use strict";

const POLL_MS = 2000; // devices and status
const HISTORY_MS = 30000; // sparklines: the history holds one value per 30 s
const TREND_MS = 10000; // the uplink chart: sampled every 10 s
const MAP_MS = 60000; // the Zigbee network map
const HISTORY_DEVICES = 60; // devices whose sparklines are fetched at a time (those the filter shows)
const SVG = "http://www.w3.org/2000/svg";
const TOKEN_KEY = "edged-token";

let token = sessionStorage.getItem(TOKEN_KEY) || "";
let timer = null;
const cards = new Map(); // device id -> its card's elements
const histories = new Map(); // device id -> {key: {start, step, values}}
const fetched = { history: 0, trend: 0, map: 0 };

// -- talking to the API ---------------------------------------------------

function showLogin() {
  document.getElementById("login").hidden = false;
}

// {status, ok, body}; a 401 asks for the token.
async function request(path, options = {}) {
  const headers = { ...(options.headers || {}) };
  if (token) headers.Authorization = "Bearer " + token;
  const response = await fetch(path, { cache: "no-store", ...options, headers });
  if (response.status === 401) {
    showLogin();
    throw new Error("a token is required");
  }
  const body = await response.json().catch(() => ({}));
  return { status: response.status, ok: response.ok, body };
}

async function get(path) {
  const answer = await request(path);
  if (!answer.ok) throw new Error(answer.body.error || `${path}: HTTP ${answer.status}`);
  return answer.body;
}

// Writes are JSON (the API refuses anything else), same-origin, with the token when there is one.
function post(path, body) {
  return request(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
}

function devicePath(id) {
  return id.split("/").map(encodeURIComponent).join("/");
}

// -- small DOM helpers ----------------------------------------------------

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function svg(tag, attributes = {}) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, String(value));
  return node;
}

function cell(row, text, className) {
  const td = row.insertCell();
  td.textContent = text === null || text === undefined ? "" : String(text);
  if (className) td.className = className;
  return td;
}

function fill(tableId, rows, draw) {
  const body = document.querySelector(`#${tableId} tbody`);
  const fresh = document.createElement("tbody");
  for (const item of rows) draw(fresh.insertRow(), item);
  body.replaceWith(fresh);
}

function clock(iso) {
  return iso ? new Date(iso).toLocaleTimeString() : "";
}

function formatValue(point) {
  if (point.value === null) return "";
  const unit = point.unit ? " " + point.unit : "";
  return (typeof point.value === "number" ? +point.value.toFixed(3) : point.value) + unit;
}

// "no answer within 0.5 s (3 times since 10:42:07)"; empty for none.
function problemText(problem) {
  if (!problem) return "";
  const times = problem.count === 1 ? "once" : `${problem.count} times`;
  return `${problem.reason} (${times} since ${clock(problem.since)})`;
}

// -- status: adapters, uplinks, commands, rules -----------------------------

function drawStatus(status) {
  document.getElementById("gateway").textContent = status.gateway + " · v" + status.version;
  const summary = document.getElementById("summary");
  const health = status.health.status;
  summary.textContent = `${health}${status.health.reasons ? ": " + status.health.reasons.join("; ") : ""}` +
    ` · up ${Math.round(status.uptime)} s · ${status.readings_in} readings`;
  summary.className = health === "ok" ? "ok" : "unhealthy";
  fill("adapters", Object.entries(status.adapters), (row, [name, a]) => {
    cell(row, name); cell(row, a.type); cell(row, a.state, a.state);
    cell(row, `${a.online} / ${a.devices}`); cell(row, a.readings); cell(row, a.errors); cell(row, a.reconnects);
    cell(row, problemText(a.problem), "problem");
  });
  drawUplinks(status);
  drawActivity(status);
}

function drawUplinks(status) {
  const uplinks = Object.entries(status.uplinks || {});
  document.getElementById("uplink-section").hidden = uplinks.length === 0 && !status.outbox;
  const box = document.getElementById("uplinks");
  const cardsNow = uplinks.map(([name, u]) => {
    const card = el("div", "card uplink");
    card.dataset.uplink = name;
    card.append(el("h3", null, `${name} `), el("p", u.connected ? "state online" : "state offline",
      u.connected ? "connected" : "not connected"));
    card.firstChild.append(el("span", "meta", u.type));
    card.append(el("p", null, `${u.waiting ?? 0} waiting · ${u.acked ?? 0} sent · ${u.reconnects ?? 0} reconnects`));
    if (u.problem) card.append(el("p", "problem", problemText(u.problem)));
    return card;
  });
  if (status.outbox) {
    const o = status.outbox;
    const card = el("div", "card outbox");
    card.dataset.uplink = "outbox";
    card.append(el("h3", null, "Outbox"), el("p", "figure", `${o.depth} messages waiting`),
      el("p", null, o.oldest_age === null ? "nothing waiting" : `oldest ${Math.round(o.oldest_age)} s old`),
      el("p", null, `${o.dead_letters} dead letters · ${o.dropped} dropped`));
    cardsNow.push(card);
  }
  box.replaceChildren(...cardsNow);
}

function drawActivity(status) {
  fill("commands", status.commands || [], (row, c) => {
    cell(row, clock(c.time)); cell(row, `${c.device}.${c.key}`); cell(row, c.value, "value"); cell(row, c.origin);
    cell(row, c.reason ? `${c.status}: ${c.reason}` : c.status, c.status === "ok" ? "ok" : "bad");
  });
  const rules = status.rules;
  document.getElementById("rules-section").hidden = !rules;
  if (rules) {
    document.getElementById("rules-summary").textContent = `(${rules.firings} firings, ${rules.errors} errors)`;
    fill("firings", rules.recent, (row, f) => {
      cell(row, f.time ? clock(f.time) : f.ts); cell(row, f.rule_id); cell(row, f.trigger); cell(row, f.outcome);
    });
  }
}

// The outbox's depth and oldest age over the last hour, each scaled to its own peak;
// red along the bottom where an uplink was not connected.
function drawTrend(trend) {
  const chart = document.getElementById("outbox-chart");
  const width = 300, height = 80, times = trend.times;
  const shapes = [];
  const x = (i) => times.length < 2 ? width : (i / (times.length - 1)) * width;
  for (const [name, values] of Object.entries(trend.series)) {
    if (!name.endsWith(".connected")) continue;
    values.forEach((v, i) => {
      if (v === 0) shapes.push(svg("rect", { x: x(i) - 1, y: height - 4, width: Math.max(2, width / times.length), height: 4, class: "down" }));
    });
  }
  for (const [name, className] of [["outbox.depth", "depth"], ["outbox.oldest_age", "age"]]) {
    const values = trend.series[name] || [];
    const peak = Math.max(1, ...values.filter((v) => v !== null));
    const points = values.map((v, i) => v === null ? null : `${x(i).toFixed(1)},${(height - 6 - (v / peak) * (height - 12)).toFixed(1)}`)
      .filter((p) => p !== null);
    const line = svg("polyline", { points: points.join(" "), class: className });
    line.append(svg("title"));
    line.firstChild.textContent = `${className === "depth" ? "messages waiting" : "oldest age, s"}: peak ${peak}`;
    shapes.push(line);
  }
  if (times.length < 2) {
    const note = svg("text", { x: width / 2, y: height / 2, "text-anchor": "middle", class: "note" });
    note.textContent = `collecting: a sample every ${trend.step} s`;
    shapes.push(note);
  }
  chart.replaceChildren(...shapes);
  chart.dataset.samples = String(times.length);
  const minutes = times.length ? Math.round((times[times.length - 1] - times[0]) / 60) : 0;
  document.getElementById("outbox-chart-range").textContent = times.length ? `· last ${minutes} min` : "";
}

// -- devices: one card each, its points under it ------------------------------

function deviceCard(device) {
  let card = cards.get(device.id);
  if (!card) {
    const root = el("article", "device");
    root.dataset.device = device.id;
    const title = el("h3");
    const status = el("span", "status");
    const meta = el("span", "meta");
    const head = el("header");
    head.append(title, status, meta);
    const problem = el("p", "problem");
    const points = el("div", "points");
    root.append(head, problem, points);
    card = { root, title, status, meta, problem, points, rows: new Map() };
    cards.set(device.id, card);
    document.getElementById("devices").append(root);
    fetched.history = 0; // a new device: fetch its sparklines now
  }
  card.title.textContent = device.name ? `${device.name} (${device.id})` : device.id;
  card.status.textContent = device.online ? "online" : "offline";
  card.status.className = "status " + (device.online ? "online" : "offline");
  card.meta.textContent = [device.manufacturer, device.model].filter(Boolean).join(" ");
  card.problem.textContent = problemText(device.problem);
  card.problem.hidden = !device.problem;
  card.root.dataset.search = [device.id, device.name, device.manufacturer, device.model].filter(Boolean).join(" ").toLowerCase();
  return card;
}

function pointRow(card, device, key, point) {
  let row = card.rows.get(key);
  if (!row) {
    const root = el("div", "point");
    root.dataset.device = device.id;
    root.dataset.point = key;
    const spark = svg("svg", { class: "spark", viewBox: "0 0 100 24", preserveAspectRatio: "none", role: "img" });
    const line = svg("polyline");
    const title = svg("title");
    spark.append(title, line);
    row = { root, value: el("span", "value"), spark, line, title, quality: el("span", "quality"), updated: el("span", "updated") };
    root.append(el("span", "key", key), row.value, spark, row.quality, row.updated);
    if (point.writable) {
      row.control = control(device.id, key, point);
      root.append(row.control.root);
    }
    card.rows.set(key, row);
    card.points.append(root);
  }
  row.value.textContent = formatValue(point);
  row.quality.textContent = point.quality || "";
  row.quality.className = "quality " + (point.quality || "");
  row.updated.textContent = clock(point.ts);
  if (row.control) row.control.show(point);
  drawSpark(row, (histories.get(device.id) || {})[key], point);
  return row;
}

// A switch for a bool, a number field for a number (a text field otherwise); the answer shows beside it.
function control(deviceId, key, point) {
  const form = el("form", "control");
  const result = el("span", "result");
  result.setAttribute("role", "status");
  const input = el("input");
  let busy = false;
  if (point.type === "bool") {
    input.type = "checkbox";
    input.className = "switch";
    input.setAttribute("role", "switch");
    input.setAttribute("aria-label", `${key} on or off`);
    input.addEventListener("change", () => send(input.checked));
    form.append(input, result);
  } else {
    input.type = point.type === "str" ? "text" : "number";
    if (point.type === "float") input.step = "any";
    input.setAttribute("aria-label", `new value of ${key}`);
    form.append(input, el("button", null, "Set"), result);
  }
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (input.type === "checkbox") return;
    if (input.value.trim() === "") return say("enter a value", false);
    send(input.type === "number" ? Number(input.value) : input.value);
  });

  function say(text, ok) {
    result.textContent = text;
    result.className = "result " + (ok ? "ok" : "bad");
  }

  async function send(value) {
    busy = true;
    say("sending…", true);
    try {
      const answer = await post(`/api/devices/${devicePath(deviceId)}/points/${encodeURIComponent(key)}`, { value });
      const body = answer.body;
      say(body.status ? (body.reason ? `${body.status}: ${body.reason}` : body.status) : body.error || `HTTP ${answer.status}`,
        answer.ok);
    } catch (error) {
      say(error.message, false);
    } finally {
      busy = false;
      clearTimeout(timer);
      refresh();
    }
  }

  return {
    root: form,
    show(current) {
      if (input.type === "checkbox" && !busy) input.checked = current.value === true;
      if (input.type !== "checkbox" && current.value !== null) input.placeholder = String(current.value);
    },
  };
}

// The last hour (one value per 30 s) and the value now, scaled to their range.
function drawSpark(row, series, point) {
  const values = series ? [...series.values] : [];
  if (typeof point.value === "number" && point.quality !== "bad") values.push(point.value);
  const numbers = values.filter((v) => v !== null);
  row.spark.dataset.samples = String(numbers.length);
  row.spark.style.visibility = numbers.length < 2 ? "hidden" : "visible";
  if (numbers.length < 2) return row.line.setAttribute("points", "");
  let low = Math.min(...numbers), high = Math.max(...numbers);
  if (high - low < 1e-9) { low -= 1; high += 1; }
  const last = values.length - 1;
  const points = [];
  values.forEach((v, i) => {
    if (v !== null) points.push(`${((i / last) * 100).toFixed(2)},${(22 - ((v - low) / (high - low)) * 20).toFixed(2)}`);
  });
  row.line.setAttribute("points", points.join(" "));
  const unit = point.unit ? " " + point.unit : "";
  row.title.textContent = `last hour: ${+low.toFixed(3)} to ${+high.toFixed(3)}${unit}`;
}

function drawDevices(devices) {
  const failing = devices.filter((device) => device.problem);
  document.getElementById("problems-section").hidden = failing.length === 0;
  fill("problems", failing, (row, device) => {
    row.dataset.device = device.id;
    cell(row, device.name ? `${device.name} (${device.id})` : device.id);
    cell(row, device.online ? "online" : "offline", device.online ? "online" : "offline");
    cell(row, device.last_seen ? clock(device.last_seen) : "never");
    cell(row, problemText(device.problem), "problem");
  });
  const present = new Set();
  for (const device of devices) {
    present.add(device.id);
    const card = deviceCard(device);
    for (const [key, point] of Object.entries(device.points)) pointRow(card, device, key, point);
  }
  for (const [id, card] of cards) {
    if (!present.has(id)) { card.root.remove(); cards.delete(id); histories.delete(id); }
  }
  applyFilter();
}

// Shows the devices whose id, name or model, or one of whose points, has the filter's text.
function applyFilter() {
  const text = document.getElementById("filter").value.trim().toLowerCase();
  let shown = 0;
  for (const card of cards.values()) {
    const deviceMatches = !text || card.root.dataset.search.includes(text);
    let pointMatches = false;
    for (const [key, row] of card.rows) {
      const match = deviceMatches || key.toLowerCase().includes(text);
      row.root.hidden = !match;
      pointMatches = pointMatches || match;
    }
    card.root.hidden = !(deviceMatches || pointMatches);
    if (!card.root.hidden) shown += 1;
  }
  document.getElementById("no-match").hidden = shown > 0 || cards.size === 0;
}

async function refreshHistories() {
  const visible = [...cards.entries()].filter(([, card]) => !card.root.hidden).slice(0, HISTORY_DEVICES);
  await Promise.all(visible.map(async ([id]) => {
    const answer = await get(`/api/history?device=${encodeURIComponent(id)}`).catch(() => null); // gone meanwhile
    if (answer) histories.set(id, answer.points);
  }));
}

// -- the Zigbee network map ---------------------------------------------------

function drawMaps(maps) {
  document.getElementById("map-section").hidden = maps.length === 0;
  document.getElementById("maps").replaceChildren(...maps.map(([name, map]) => networkMap(name, map)));
}

// The coordinator in the middle, routers around it, end devices on the outer ring;
// a line per link as a router hears it, dashed red when weak.
function networkMap(name, map) {
  const figure = el("figure", "network");
  figure.dataset.adapter = name;
  const size = 400, middle = size / 2;
  const picture = svg("svg", { viewBox: `0 0 ${size} ${size}`, class: "map", role: "img",
    "aria-label": `Zigbee network of ${name}` });
  const rings = { coordinator: [], router: [], end_device: [], unknown: [] };
  for (const node of map.nodes) (rings[node.role] || rings.unknown).push(node);
  const where = new Map();
  const place = (nodes, radius, turn) => nodes.forEach((node, i) => {
    const angle = (2 * Math.PI * i) / Math.max(1, nodes.length) + turn;
    where.set(node.ieee, [middle + radius * Math.cos(angle), middle + radius * Math.sin(angle)]);
  });
  place(rings.coordinator, rings.coordinator.length > 1 ? 20 : 0, 0);
  place(rings.router, 100, -Math.PI / 2);
  place([...rings.end_device, ...rings.unknown], 170, -Math.PI / 2 + 0.3);
  for (const pair of linkPairs(map.links)) {
    const a = where.get(pair.ends[0]), b = where.get(pair.ends[1]);
    if (!a || !b) continue;
    const line = svg("line", { x1: a[0], y1: a[1], x2: b[0], y2: b[1], class: pair.weak ? "link weak" : "link" });
    line.append(svg("title"));
    line.firstChild.textContent = pair.heard.join("; ");
    picture.append(line);
  }
  for (const node of map.nodes) {
    const [x, y] = where.get(node.ieee);
    const group = svg("g", { class: `node ${node.role} ${node.online ? "online" : "offline"}` });
    group.dataset.ieee = node.ieee;
    group.append(svg("circle", { cx: x, cy: y, r: node.role === "coordinator" ? 10 : node.role === "router" ? 8 : 6 }));
    const label = svg("text", { x, y: y + 20, "text-anchor": "middle" });
    label.textContent = node.role === "coordinator" ? "coordinator" : node.name || node.ieee.slice(-5);
    group.append(label);
    picture.append(group);
  }
  const caption = el("figcaption", null,
    `${name}: ${map.nodes.length} nodes, ${map.links.length} links, ${map.weak_links} weak (LQI under ${map.weak_lqi})` +
    (map.scanned_at ? ` · scanned ${new Date(map.scanned_at * 1000).toLocaleTimeString()}` : " · not scanned yet"));
  const scan = el("button", null, "Scan now");
  scan.addEventListener("click", async () => {
    scan.disabled = true;
    scan.textContent = "scanning…";
    const answer = await post(`/api/adapters/${encodeURIComponent(name)}/map/scan`, {}).catch((e) => ({ ok: false, body: { error: e.message } }));
    scan.disabled = false;
    scan.textContent = answer.ok ? "Scan now" : `scan failed: ${answer.body.error}`;
    if (answer.ok) figure.replaceWith(networkMap(name, answer.body));
  });
  caption.append(" ", scan);
  figure.append(picture, caption);
  return figure;
}

// One line per pair of nodes (each router lists the other), weak when either hears the other weakly.
function linkPairs(links) {
  const pairs = new Map();
  for (const link of links) {
    const ends = [link.source, link.target].sort();
    const pair = pairs.get(ends.join(" ")) || { ends, weak: false, heard: [] };
    pair.weak = pair.weak || link.weak;
    pair.heard.push(`${link.source} hears ${link.target} at LQI ${link.lqi}${link.weak ? " (weak)" : ""}`);
    pairs.set(ends.join(" "), pair);
  }
  return [...pairs.values()];
}

async function refreshMaps(status) {
  const zigbee = Object.entries(status.adapters).filter(([, a]) => a.type === "zigbee" && a.state === "running");
  const maps = await Promise.all(zigbee.map(async ([name]) =>
    [name, await get(`/api/adapters/${encodeURIComponent(name)}/map`).catch(() => null)]));
  drawMaps(maps.filter(([, map]) => map && Array.isArray(map.nodes)));
}

// -- polling --------------------------------------------------------------

async function refresh() {
  try {
    const now = Date.now();
    const [status, devices] = await Promise.all([get("/api/status"), get("/api/devices")]);
    drawStatus(status);
    drawDevices(devices);
    if (now - fetched.history >= HISTORY_MS) {
      fetched.history = now;
      await refreshHistories();
      drawDevices(devices);
    }
    if (status.uplinks && now - fetched.trend >= TREND_MS) {
      fetched.trend = now;
      drawTrend(await get("/api/history/uplinks"));
    }
    if (now - fetched.map >= MAP_MS) {
      fetched.map = now;
      await refreshMaps(status);
    }
  } catch (error) {
    document.getElementById("summary").textContent = "not connected: " + error.message;
    document.getElementById("summary").className = "unhealthy";
  } finally {
    clearTimeout(timer);
    timer = setTimeout(refresh, POLL_MS);
  }
}

document.getElementById("login").addEventListener("submit", (event) => {
  event.preventDefault();
  token = document.getElementById("token").value.trim();
  sessionStorage.setItem(TOKEN_KEY, token);
  document.getElementById("login").hidden = true;
  clearTimeout(timer);
  refresh();
});

document.getElementById("filter").addEventListener("input", () => {
  applyFilter();
  fetched.history = 0; // newly shown devices get their sparklines on the next poll
});

refresh();
