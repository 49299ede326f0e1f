// The status page: polls the local API and redraws; no framework, no build step.
"use strict";

const POLL_MS = 2000;
let token = localStorage.getItem("edged-token") || "";
let timer = null;

async function api(path) {
  const headers = token ? { Authorization: "Bearer " + token } : {};
  const response = await fetch(path, { headers, cache: "no-store" });
  if (response.status === 401) {
    document.getElementById("login").hidden = false;
    throw new Error("a token is required");
  }
  return response.json();
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

function formatValue(point) {
  if (point.value === null) return "";
  const unit = point.unit ? " " + point.unit : "";
  return (typeof point.value === "number" ? +point.value.toFixed(3) : point.value) + unit;
}

// "no answer within 0.5 s (3 times since 10:42:07)"; empty for none.
function problemText(problem) {
  if (!problem) return "";
  const times = problem.count === 1 ? "once" : `${problem.count} times`;
  return `${problem.reason} (${times} since ${new Date(problem.since).toLocaleTimeString()})`;
}

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
  const uplinks = Object.entries(status.uplinks || {});
  const links = [
    ...Object.entries(status.outbox || {}).map(([key, value]) => ["outbox " + key, value]),
    ...uplinks.flatMap(([name, figures]) => Object.entries(figures).map(([key, value]) =>
      [(uplinks.length === 1 ? "uplink " : `uplink ${name} `) + key, key === "problem" ? problemText(value) : value])),
  ];
  document.getElementById("uplink-section").hidden = links.length === 0;
  fill("uplink", links, (row, [key, value]) => { cell(row, key); cell(row, value, "value"); });
  const rules = status.rules;
  document.getElementById("rules-section").hidden = !rules;
  if (rules) {
    document.getElementById("rules-summary").textContent = `${rules.firings} firings, ${rules.errors} errors`;
    fill("firings", rules.recent, (row, f) => {
      cell(row, f.time || f.ts); cell(row, f.rule_id); cell(row, f.trigger); cell(row, f.outcome);
    });
  }
}

function drawDevices(devices) {
  const failing = devices.filter((device) => device.problem);
  document.getElementById("problems-section").hidden = failing.length === 0;
  fill("problems", failing, (row, device) => {
    row.dataset.device = device.id;
    cell(row, device.name ? `${device.name} (${device.id})` : device.id);
    cell(row, device.online ? "online" : "offline", device.online ? "online" : "offline");
    cell(row, device.last_seen ? new Date(device.last_seen).toLocaleTimeString() : "never");
    cell(row, problemText(device.problem), "problem");
  });
  const rows = [];
  for (const device of devices) {
    for (const [key, point] of Object.entries(device.points)) rows.push({ device, key, point });
  }
  fill("devices", rows, (row, { device, key, point }) => {
    row.dataset.device = device.id;
    row.dataset.point = key;
    cell(row, device.name ? `${device.name} (${device.id})` : device.id);
    cell(row, device.online ? "online" : "offline", device.online ? "online" : "offline");
    cell(row, key);
    cell(row, formatValue(point), "value");
    cell(row, point.quality, point.quality);
    cell(row, point.ts ? new Date(point.ts).toLocaleTimeString() : "");
  });
}

async function refresh() {
  try {
    const [status, devices] = await Promise.all([api("/api/status"), api("/api/devices")]);
    drawStatus(status);
    drawDevices(devices);
  } catch (error) {
    document.getElementById("summary").textContent = "not connected: " + error.message;
  } finally {
    timer = setTimeout(refresh, POLL_MS);
  }
}

document.getElementById("login").addEventListener("submit", (event) => {
  event.preventDefault();
  token = document.getElementById("token").value.trim();
  localStorage.setItem("edged-token", token);
  document.getElementById("login").hidden = true;
  clearTimeout(timer);
  refresh();
});

refresh();
