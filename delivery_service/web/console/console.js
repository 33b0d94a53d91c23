// The proctor console page: thin DOM code over Api, LiveSocket and Grid (which hold the logic).

import { Api, ApiError, followSetPasswordLink, onSignIn, signedIn } from "/static/lib/api.js";
import { offerOidc } from "/static/lib/oidc.js";
import { LiveSocket } from "/static/lib/live.js";
import { Grid, formatClock, remainingMs } from "/console/grid.js";

const api = new Api();
const grid = new Grid();
const $ = (selector) => document.querySelector(selector);
const rows = new Map();
let session = null;
let live = null;
let selected = null;
let offsetMs = 0;
let frame = 0;

function show(id) {
  for (const section of ["login", "pick", "session"]) $(`#${section}`).hidden = section !== id;
}

function fail(error) {
  $("#action-error").textContent = error instanceof ApiError ? said(error) : String(error);
}

// The server's refusal as the proctor reads it; an early waiting room says when it may open.
function said(error) {
  if (error.code === "session_not_open_yet" && error.details?.opens_at) {
    const at = new Date(error.details.opens_at).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
    return `${error.code}: the waiting room can be opened from ${at}, not before.`;
  }
  return `${error.code}: ${error.message}`;
}

async function act(run) {
  $("#action-error").textContent = "";
  try {
    return await run();
  } catch (error) {
    fail(error);
    return null;
  }
}

// ---- login and session list ------------------------------------------------------------------

async function boot() {
  if (location.hash.startsWith("#set-password=")) {
    show("login");
    $("#login-form").hidden = true;
    await followSetPasswordLink(api, $("#login"));
    $("#login-form").hidden = false;
  }
  const me = await signedIn(api);
  if (!me) return show("login");
  $("#who").textContent = `${me.username} (${me.role})`;
  const wanted = new URLSearchParams(location.search).get("session");
  if (wanted) return openSession(wanted);
  await listSessions();
}

offerOidc(api, $("#login-form"), $("#login-error"));
onSignIn(api, $("#login-form"), $("#login-error"), boot);

async function listSessions() {
  show("pick");
  const [sessions, classes, tests] = await Promise.all([
    api.get("/api/v1/sessions"), api.get("/api/v1/classes"), api.get("/api/v1/tests"),
  ]);
  const list = $("#sessions");
  list.replaceChildren();
  for (const s of sessions) {
    const item = document.createElement("li");
    const button = document.createElement("button");
    button.textContent = `${s.title} — ${s.class_name} — ${s.state}`;
    button.addEventListener("click", () => openSession(s.id));
    item.append(button);
    list.append(item);
  }
  const form = $("#schedule");
  form.class_id.replaceChildren(...classes.filter((c) => c.state === "active").map((c) => new Option(c.name, c.id)));
  form.test_id.replaceChildren(...tests.map((t) => new Option(t.title, t.id)));
}

$("#schedule").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  const fields = new FormData(form);
  $("#schedule-error").textContent = "";
  try {
    const created = await api.post("/api/v1/sessions", {
      class_id: fields.get("class_id"),
      test_id: fields.get("test_id"),
      title: fields.get("title"),
      scheduled_at: new Date(fields.get("scheduled_at")).toISOString(),
    });
    form.reset();
    await openSession(created.id);
  } catch (error) {
    $("#schedule-error").textContent = error instanceof ApiError ? `${error.code}: ${error.message}` : String(error);
  }
});

// ---- one session -------------------------------------------------------------------------------

async function openSession(id) {
  show("session");
  history.replaceState(null, "", `?session=${id}`);
  live?.stop();
  rows.clear();
  $("#grid tbody").replaceChildren();
  live = new LiveSocket({
    api,
    path: `/api/v1/sessions/${id}/ws`,
    onMessage: receive,
    onStatus: (status) => ($("#link").textContent = `live: ${status}`),
  });
  await live.connect();
}

function receive(message) {
  if (message.type === "state_sync_response") {
    setSession(message.data.session);
    grid.load(message.data.participants ?? []);
    render();
    if (session.state === "completed") loadStats();
    return;
  }
  if (message.type === "timer" && message.data.client_time) {
    const now = Date.now();
    offsetMs = Date.parse(message.data.timer.server_now) - (message.data.client_time + now) / 2;
    return;
  }
  if (message.type === "session_status_changed" || message.type === "session_started") {
    refreshSession();
  }
  if (message.type === "session_completed") loadStats();
  if (grid.apply(message)) scheduleRender();
  if (selected && message.data?.student_id === selected) loadTimeline();
}

async function refreshSession() {
  setSession(await api.get(`/api/v1/sessions/${session.id}`));
}

function setSession(s) {
  session = s;
  $("#session-title").textContent = `${s.title} · ${s.class_name} · ${s.test_title}`;
  $("#session-state").textContent = s.state;
  $("#open-waiting").disabled = s.state !== "scheduled";
  $("#start").disabled = s.state !== "waiting";
  $("#complete").disabled = s.state !== "in_progress";
  $("#cancel").disabled = !["scheduled", "waiting"].includes(s.state);
  live?.send("ping", { client_time: Date.now() });
}

const sessionPost = (path, body) => act(() => api.post(`/api/v1/sessions/${session.id}${path}`, body));
$("#open-waiting").addEventListener("click", () => sessionPost("/start-waiting"));
$("#start").addEventListener("click", () => sessionPost("/start"));
$("#cancel").addEventListener("click", () => confirm("Cancel this session?") && sessionPost("/cancel"));
$("#complete").addEventListener("click", () => {
  if (confirm("End the exam for every student now?")) sessionPost("/complete", { reason: "completed by the proctor" });
});
$("#back").addEventListener("click", () => {
  live?.stop();
  history.replaceState(null, "", location.pathname);
  listSessions();
});
$("#notice-all").addEventListener("submit", async (event) => {
  event.preventDefault();
  const message = new FormData(event.target).get("message");
  if (await sessionPost("/notices", { message })) event.target.reset();
});

// ---- the grid ----------------------------------------------------------------------------------

function scheduleRender() {
  if (!frame) frame = requestAnimationFrame(render);
}

function render() {
  frame = 0;
  const body = $("#grid tbody");
  for (const row of grid.take()) {
    let tr = rows.get(row.student.id);
    if (!tr) {
      tr = document.createElement("tr");
      tr.tabIndex = 0;
      tr.dataset.student = row.student.id;
      tr.innerHTML = "<td></td>".repeat(10);
      tr.addEventListener("click", () => select(row.student.id));
      tr.addEventListener("keydown", (e) => e.key === "Enter" && select(row.student.id));
      rows.set(row.student.id, tr);
      body.append(tr);
    }
    const cells = tr.children;
    cells[0].textContent = row.student.username;
    cells[1].textContent = row.connected ? "online" : "offline";
    cells[1].className = row.connected ? "on" : "off";
    cells[2].textContent = row.state ?? "not started";
    cells[3].textContent = row.position === null || row.position === undefined ? "—" : `${row.position + 1}`;
    cells[4].textContent = `${row.answered}/${row.total_items}`;
    cells[7].textContent = row.highlights;
    cells[8].textContent = row.last_activity ? new Date(row.last_activity).toLocaleTimeString() : "—";
    cells[9].textContent = row.time_multiplier !== 1 || row.extra_seconds
      ? `×${row.time_multiplier} +${row.extra_seconds}s` : "";
    tr.classList.toggle("alert", row.violations > 0 || Boolean(row.marked_for_review));
    cells[6].textContent = row.marked_for_review ? `${row.violations} ⚑` : row.violations;
    tr.setAttribute("aria-selected", String(row.student.id === selected));
    showTime(row, Date.now() + offsetMs);
  }
  if (grid.feed.length && grid.feed[0] !== shownFeedHead) {
    shownFeedHead = grid.feed[0];
    $("#feed").replaceChildren(...grid.feed.slice(0, 50).map((entry) => {
      const li = document.createElement("li");
      li.textContent = `${entry.at ? new Date(entry.at).toLocaleTimeString() : ""} ${entry.message} `;
      if (entry.serious) li.className = "serious";
      if (entry.attemptId) {
        const link = document.createElement("a");
        link.href = `/console/report.html?attempt=${entry.attemptId}`;
        link.textContent = "report";
        li.append(link);
      }
      return li;
    }));
  }
}

let shownFeedHead = null;

function showTime(row, now) {
  const tr = rows.get(row.student.id);
  const running = row.state === "in_progress";
  const text = formatClock(running ? remainingMs(row, now) : row.remaining_ms ?? null);
  if (tr && tr.children[5].textContent !== text) tr.children[5].textContent = text;
}

// Once a second: the countdowns (only cells whose text changes are touched).
function tick() {
  const now = Date.now() + offsetMs;
  for (const row of grid.rows.values()) showTime(row, now);
  if (session?.ends_at && session.state === "in_progress") {
    $("#session-clock").textContent = formatClock(Math.max(0, Date.parse(session.ends_at) - now));
  } else {
    $("#session-clock").textContent = "";
  }
}
setInterval(tick, 1000);

// ---- one student -------------------------------------------------------------------------------

function select(id) {
  selected = id;
  const row = grid.rows.get(id);
  $("#detail").hidden = false;
  $("#detail-title").textContent = row.student.username;
  const report = $("#report-link");
  report.hidden = !row.attempt_id;
  if (row.attempt_id) report.href = `/console/report.html?attempt=${row.attempt_id}`;
  for (const tr of rows.values()) tr.setAttribute("aria-selected", String(tr.dataset.student === id));
  loadTimeline();
}

async function loadTimeline() {
  const entries = await api.get(`/api/v1/sessions/${session.id}/participants/${selected}/timeline`);
  $("#timeline").replaceChildren(...entries.map((e) => {
    const li = document.createElement("li");
    const detail = e.type === "text_highlighted" ? ` “${e.data.text}”` : e.data.reason ? ` (${e.data.reason})` : "";
    li.textContent = `${new Date(e.at).toLocaleTimeString()} ${e.type}${detail}`;
    return li;
  }));
}

const studentPost = (path, body) => sessionPost(`/participants/${selected}${path}`, body);
$("#extend").addEventListener("submit", (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  studentPost("/extend", { seconds: Number(form.get("seconds")), reason: form.get("reason") || null });
});
$("#accommodate").addEventListener("submit", (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  act(() => api.put(`/api/v1/sessions/${session.id}/participants/${selected}/accommodation`, {
    extra_seconds: Number(form.get("extra_seconds")),
    time_multiplier: Number(form.get("time_multiplier")),
    reason: form.get("reason") || null,
  }));
});
$("#pause").addEventListener("click", () => studentPost("/pause", { reason: "paused by the proctor" }));
$("#resume").addEventListener("click", () => studentPost("/resume", { reason: "resumed by the proctor" }));
$("#terminate").addEventListener("submit", (event) => {
  event.preventDefault();
  const reason = new FormData(event.target).get("reason");
  if (confirm("Terminate this student's attempt?")) studentPost("/terminate", { reason });
});
$("#notice-one").addEventListener("submit", (event) => {
  event.preventDefault();
  const message = new FormData(event.target).get("message");
  sessionPost("/notices", { message, student_id: selected });
});

// ---- after the end -------------------------------------------------------------------------------

async function loadStats() {
  const stats = await api.get(`/api/v1/sessions/${session.id}/stats`);
  $("#stats").hidden = false;
  const facts = {
    "Enrolled": stats.enrolled,
    "Joined": stats.joined,
    "Completion": `${Math.round(stats.completion_rate * 100)}%`,
    "Average score": stats.average_score ?? "—",
    "Highest / lowest": `${stats.highest_score ?? "—"} / ${stats.lowest_score ?? "—"}`,
    "Out of": stats.max_score ?? "—",
    "Average time used": stats.average_time_used_seconds === null ? "—" : formatClock(stats.average_time_used_seconds * 1000),
  };
  $("#stats-summary").replaceChildren(...Object.entries(facts).flatMap(([term, value]) => {
    const dt = document.createElement("dt");
    const dd = document.createElement("dd");
    dt.textContent = term;
    dd.textContent = String(value);
    return [dt, dd];
  }));
  grid.load(stats.students);
  render();
}

boot();
