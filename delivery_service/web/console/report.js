// The integrity report of one attempt, for an appeal: everything comes from
// GET /api/v1/attempts/{id}/integrity (the ledger, its verification, the rules' verdict).

import { Api, ApiError } from "/static/lib/api.js";

const $ = (selector) => document.querySelector(selector);
const api = new Api();
const attemptId = new URLSearchParams(location.search).get("attempt");

const time = (iso) => (iso ? new Date(iso).toLocaleString() : "—");

function cell(text) {
  const td = document.createElement("td");
  td.textContent = text;
  return td;
}

function details(event) {
  const parts = Object.entries(event.payload ?? {})
    .filter(([key]) => !["connection_id", "worker"].includes(key))
    .map(([key, value]) => `${key}: ${typeof value === "object" ? JSON.stringify(value) : value}`);
  if (event.reason) parts.unshift(`reason: ${event.reason}`);
  if (event.actor && event.source === "staff") parts.unshift(`by ${event.actor}`);
  return parts.join(" · ");
}

function render(report) {
  const a = report.attempt;
  $("#summary-title").textContent = `${a.candidate.username} — ${a.test_title}`;
  const facts = [
    ["State", a.state], ["Started", time(a.started_at)], ["Deadline", time(a.deadline)],
    ["Ended", time(a.ended_at)], ["Score", a.score === null ? "—" : `${a.score} / ${a.max_score}`],
    ["Tab switches counted", report.tab_switches],
    ["Policy", Object.entries(report.policy).map(([k, v]) => `${k}=${v}`).join(", ")],
  ];
  $("#facts").replaceChildren(...facts.flatMap(([term, value]) => {
    const dt = document.createElement("dt");
    dt.textContent = term;
    const dd = document.createElement("dd");
    dd.textContent = value;
    return [dt, dd];
  }));
  const v = report.verification;
  $("#verdict").textContent = v.ok
    ? `Ledger verified: ${v.events} events, every seal intact.`
    : `Ledger BROKEN at event ${v.first_broken.seq}: ${v.first_broken.detail}.`;
  $("#verdict").className = v.ok ? "ok" : "error";
  $("#summary").hidden = false;

  $("#violations").replaceChildren(...report.violations.map((x) => {
    const li = document.createElement("li");
    li.textContent = `${x.rule}: ${x.reason} → ${x.action} (events ${x.event_ids.join(", ")})`;
    return li;
  }));
  $("#violations-section").hidden = report.violations.length === 0;

  $("#incidents tbody").replaceChildren(...report.incidents.map((i) => {
    const tr = document.createElement("tr");
    const kinds = Object.entries(i.kinds).map(([k, n]) => `${k.replaceAll("_", " ")} ×${n}`).join(", ");
    const away = i.longest_absence_ms === null ? "—" : `${Math.round(i.longest_absence_ms / 1000)} s`;
    tr.append(cell(time(i.started_at)), cell(time(i.last_at)), cell(kinds), cell(away),
      cell(i.counted_as_tab_switch ? "yes" : "no"));
    return tr;
  }));
  $("#incidents-section").hidden = report.incidents.length === 0;

  $("#connections").replaceChildren(...report.connections.map((c) => {
    const li = document.createElement("li");
    li.textContent = `${time(c.server_time)} ${c.type.replaceAll("_", " ")} (${c.payload.user_agent ?? ""})`;
    return li;
  }));
  $("#connections-section").hidden = report.connections.length === 0;

  $("#events tbody").replaceChildren(...report.timeline.map((e) => {
    const tr = document.createElement("tr");
    tr.id = `event-${e.event_id}`;
    tr.append(cell(e.seq), cell(time(e.server_time)), cell(time(e.client_time)), cell(e.source),
      cell(e.type.replaceAll("_", " ")), cell(details(e)));
    return tr;
  }));
  $("#timeline-section").hidden = false;
}

async function load() {
  if (!attemptId) {
    $("#status").textContent = "No attempt given (…/report.html?attempt=ID).";
    return;
  }
  $("#raw").href = `/api/v1/attempts/${attemptId}/integrity`;
  try {
    render(await api.get(`/api/v1/attempts/${attemptId}/integrity`));
    $("#status").textContent = "";
  } catch (error) {
    $("#status").textContent = error instanceof ApiError
      ? `${error.code}: ${error.message}${error.status === 401 ? " — sign in on the console first" : ""}`
      : String(error);
  }
}

load();
