// The candidate page: thin DOM code over Api and AttemptClient (which hold the logic).

import { Api, followSetPasswordLink, onSignIn, signedIn } from "/static/lib/api.js";
import { offerOidc } from "/static/lib/oidc.js";
import { AttemptClient } from "/static/lib/attempt_client.js";
import { LiveSocket } from "/static/lib/live.js";
import { EventBatcher } from "/static/lib/event_batcher.js";
import { Outbox } from "/static/lib/outbox.js";
import { Sensors, suspiciousShortcut } from "/static/lib/sensors.js";
import { renderInteraction } from "/app/widgets.js";

const api = new Api("", globalThis.localStorage);
const $ = (selector) => document.querySelector(selector);
let client = null;
let session = null;
let sensors = null;
let sessionEvents = null;
let lockdown = {};
let state = null;
let current = null;
let flushTyping = () => {};
const feedback = new Map();
const lockedItems = new Set();
const warned = new Set();

// Show one screen and move focus into it (its [autofocus] field, else its heading), so keyboard
// and screen-reader users land where the new screen starts.
function show(id) {
  for (const s of ["login", "home", "waiting", "exam", "review-screen", "done"]) $(`#${s}`).hidden = s !== id;
  const section = $(`#${id}`);
  const target = section.querySelector("[autofocus]") ?? section.querySelector("h2");
  if (target && !target.hasAttribute("autofocus")) target.tabIndex = -1;
  target?.focus();
}

async function boot() {
  if (location.hash.startsWith("#set-password=")) {
    show("login");
    $("#login-form").hidden = true;
    await followSetPasswordLink(api, $("#login"));
    $("#login-form").hidden = false;
  }
  const me = await signedIn(api);
  if (!me) return show("login");
  $("#who").textContent = me.username;
  const query = new URLSearchParams(location.search);
  if (query.get("session")) return joinSession(query.get("session"));
  if (query.get("attempt")) return openAttempt(query.get("attempt"));
  await home();
}

offerOidc(api, $("#login-form"), $("#login-error"));
onSignIn(api, $("#login-form"), $("#login-error"), boot);

async function home() {
  show("home");
  history.replaceState(null, "", "/");
  await listExams();
}

// The server lists what this student may take: tests assigned to their classes, open now or
// upcoming (never closed ones, never a proctored session's paper). Upcoming ones show when they
// open and cannot be started yet; the list is read again meanwhile, so one opens by itself.
let relist = 0;
async function listExams() {
  clearTimeout(relist);
  const [tests, attempts, sessions] = await Promise.all([
    api.get("/api/v1/tests"), api.get("/api/v1/attempts"), api.get("/api/v1/sessions/my-sessions"),
  ]);
  $("#sessions").replaceChildren(...sessions.filter((s) => ["scheduled", "waiting", "in_progress"].includes(s.state)).map((s) => {
    const li = document.createElement("li");
    const button = document.createElement("button");
    button.textContent = `Join: ${s.title} (${s.state === "in_progress" ? "started" : when(s.scheduled_at)})`;
    button.addEventListener("click", () => joinSession(s.id));
    li.append(button);
    return li;
  }));
  const open = new Map(attempts.filter((a) => ["not_started", "in_progress", "paused"].includes(a.state))
    .map((a) => [a.test_id, a]));
  $("#tests").replaceChildren(...tests.map((t) => testEntry(t, open.get(t.id))));
  if (tests.some((t) => t.window === "upcoming") && !$("#home").hidden) {
    relist = setTimeout(() => !$("#home").hidden && listExams(), 30_000);
  }
}

const when = (iso) => new Date(iso).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });

// One test: its window, its access password if it has one, and the server's refusal if any.
function testEntry(t, resume) {
  const li = document.createElement("li");
  li.className = "test";
  const form = document.createElement("form");
  form.setAttribute("aria-label", t.title);
  const button = document.createElement("button");
  button.type = "submit";
  button.textContent = `${resume ? "Resume" : "Start"}: ${t.title} (${t.item_count} questions, ${Math.round(t.time_limit_seconds / 60)} min)`;
  const hours = document.createElement("p");
  hours.className = "window";
  if (t.window === "upcoming") {
    hours.textContent = `Opens at ${when(t.opens_at)}; it cannot be started before.`;
    button.disabled = !resume;
  } else if (t.closes_at) {
    hours.textContent = `Closes at ${when(t.closes_at)}: an attempt ends then at the latest.`;
  }
  const said = document.createElement("p");
  said.className = "refusal";
  said.setAttribute("role", "alert");
  let password = null;
  if (t.password_required && !resume) {
    const label = document.createElement("label");
    label.textContent = "Access password ";
    password = Object.assign(document.createElement("input"), {
      type: "password", name: "password", autocomplete: "off", required: true, maxLength: 200,
    });
    label.append(password);
    form.append(label);
  }
  form.append(button);
  li.append(form, hours, said);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    said.textContent = "";
    button.disabled = true;
    try {
      const body = { test_id: t.id };
      if (password) body.password = password.value;
      const attempt = resume ?? await api.post("/api/v1/attempts", body);
      openAttempt(attempt.id);
    } catch (error) {
      said.textContent = refusal(error);
      button.disabled = false;
      if (password && ["password_required", "password_incorrect"].includes(error.code)) {
        password.select();
        password.focus();
      }
    }
  });
  return li;
}

// What the server said, in words for a candidate (its own message when there is no better one).
function refusal(error) {
  const d = error.details ?? {};
  const minutes = d.retry_after_seconds ? Math.ceil(d.retry_after_seconds / 60) : null;
  return {
    test_not_open: d.opens_at ? `This test opens at ${when(d.opens_at)}.` : error.message,
    test_closed: "This test has closed.",
    password_required: "Enter the test's access password.",
    password_incorrect: "That is not the access password for this test.",
    too_many_attempts: `Too many wrong passwords. Try again${minutes ? ` in ${minutes} minute${minutes > 1 ? "s" : ""}` : " later"}.`,
    network_not_allowed: "This test can only be taken from the exam room's network.",
    reserved_for_session: "This test is for a proctored session: join the session instead.",
    test_not_found: "This test is not available to you.",
  }[error.code] ?? error.message;
}

// A proctored session: the waiting room until the proctor starts, then the exam opens by itself.
// The session socket stays open during the exam: it keeps the student present for the proctor
// and brings notices.
function joinSession(sessionId) {
  history.replaceState(null, "", `/?session=${sessionId}`);
  show("waiting");
  $("#waiting-text").textContent = "Connecting…";
  session?.stop();
  // Integrity sensors report over the session socket, batched, through a durable outbox.
  sessionEvents = new EventBatcher({
    outbox: new Outbox(`session-${sessionId}`, globalThis.localStorage),
    send: (type, data) => session?.send(type, data),
  });
  sensors = new Sensors({ emit: (type, data) => sessionEvents.add(type, data) });
  session = new LiveSocket({
    api,
    path: `/api/v1/sessions/${sessionId}/ws`,
    onStatus: (status) => status !== "open" && showStatus(status === "reconnecting" ? "offline" : status),
    onMessage: (message) => {
      const d = message.data ?? {};
      if (message.type === "connected") {
        sessionEvents.reconnected();
      } else if (message.type === "events_recorded") {
        sessionEvents.ack(d);
      } else if (message.type === "event_recorded") {
        sessionEvents.ack([d]);
      } else if (message.type === "integrity_warning") {
        warn(d);
      } else if (message.type === "state_sync_response") {
        showStatus("online");
        if (d.attempt && !client) return openAttempt(d.attempt.id, sessionId);
        if (!d.attempt) $("#waiting-text").textContent = waitingText(d.session);
      } else if (message.type === "session_started" && d.attempt_id && !client) {
        openAttempt(d.attempt_id, sessionId);
      } else if (message.type === "session_status_changed" && !client) {
        $("#waiting-text").textContent = waitingText(d);
      } else if (message.type === "notice") {
        $("#warning").textContent = `Notice from ${d.from}: ${d.message}`;
      } else if (message.type === "error") {
        $("#waiting-text").textContent = d.message;
      }
    },
  });
  session.connect();
}

function waitingText(s) {
  return {
    scheduled: "The waiting room is not open yet. Stay on this page.",
    waiting: "You are in the waiting room. The exam opens by itself when the proctor starts it.",
    in_progress: "The exam has started.",
    completed: "This session has ended.",
    cancelled: "This session was cancelled.",
  }[s.state] ?? s.state;
}

function openAttempt(attemptId, sessionId = null) {
  history.replaceState(null, "", sessionId ? `/?session=${sessionId}` : `/?attempt=${attemptId}`);
  client?.stop();
  client = new AttemptClient({
    api, attemptId, storage: globalThis.localStorage,
    on: {
      status: showStatus,
      state: (s) => { state = s; applyLockdown(s.lockdown); if (s.state === "not_started") client.send("start_assessment"); else enter(); },
      saved,
      timer: (t) => { if (state && t.timer) { state.timer = t.timer; state.state = t.state ?? state.state; } },
      error: (e) => {
        $("#saved").textContent = e.message;
        // Refused at the door (the test's network): say so where it is seen.
        if (e.code === "network_not_allowed") $("#warning").textContent = refusal(e);
      },
      message: handle,
    },
  });
  // A self-paced attempt reports its sensors over its own socket; in a session the session
  // socket already does.
  if (!sessionId) sensors = new Sensors({ emit: (type, data) => client.event(type, data) });
  client.connect();
}

// The test's lockdown policy, as far as a web page can apply it (the server counts and acts).
function applyLockdown(policy) {
  lockdown = policy ?? {};
  showFullscreenPrompt();
}

function showFullscreenPrompt() {
  const needed = Boolean(lockdown.require_fullscreen) && !document.fullscreenElement
    && state?.state === "in_progress";
  $("#fullscreen-prompt").hidden = !needed;
}

function warn(w) {
  const what = { warn: "", flag: " Your exam has been marked for review.",
    pause: " Your exam is paused until the proctor resumes it.", terminate: "" }[w.action] ?? "";
  $("#warning").textContent = `Integrity warning: you ${w.reason}.${what}`;
}

function showStatus(status) {
  const text = {
    online: "Connected", connecting: "Connecting…", offline: "Offline — your answers are kept and will be sent",
    superseded: "This exam was opened in another tab or window; continue there", closed: "Disconnected",
    "signed-out": "Signed out",
  }[status] ?? status;
  $("#link").textContent = text;
  $("#link").classList.toggle("offline", status === "offline");
}

function handle(message) {
  if (message.type === "assessment_started") { state = message.data; enter(); }
  if (message.type === "question") { current = message.data; renderItem(); }
  if (message.type === "flag_saved") {
    if (message.data.flagged) state.flags = [...new Set([...state.flags, message.data.item_id])];
    else state.flags = state.flags.filter((f) => f !== message.data.item_id);
    renderMap();
    renderItem();
  }
  if (message.type === "assessment_completed") finish(message.data.reason, message.data.feedback);
  if (message.type === "integrity_warning") warn(message.data);
}

function enter() {
  if (["submitted", "expired", "terminated"].includes(state.state)) return finish(state.end_reason);
  show("exam");
  showFullscreenPrompt();
  client.send("get_question");
  renderMap();
}

function renderMap() {
  const map = $("#item-map");
  const linear = state.navigation_mode === "linear";
  map.hidden = linear;
  map.replaceChildren(...state.items.map((item) => {
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = String(item.position + 1);
    b.classList.toggle("answered", item.item_id in state.responses);
    b.classList.toggle("flagged", state.flags.includes(item.item_id));
    b.setAttribute("aria-label", `Question ${item.position + 1}${item.item_id in state.responses ? ", answered" : ""}${state.flags.includes(item.item_id) ? ", flagged" : ""}`);
    if (current && current.position === item.position) b.setAttribute("aria-current", "true");
    b.addEventListener("click", () => { flushTyping(); client.send("navigate", { to: item.position }); });
    return b;
  }));
}

function renderItem() {
  if (!current) return;
  flushTyping();
  const { item, position, total_items: total } = current;
  const response = item.item_id in state.responses ? state.responses[item.item_id] : current.response;
  $("#item-title").textContent = `Question ${position + 1} of ${total}`;
  const locked = current.locked || lockedItems.has(item.item_id);
  flushTyping = renderInteraction({
    fieldset: $("#choices"), legend: $("#choices-legend"), promptEl: $("#prompt"),
    item, response, locked, answer: (value) => choose(item, value),
  });
  showFeedback(feedback.get(item.item_id));
  $("#previous").disabled = position === 0 || state.navigation_mode === "linear";
  $("#next").disabled = position >= total - 1;
  const flagged = state.flags.includes(item.item_id);
  $("#flag").setAttribute("aria-pressed", String(flagged));
  $("#flag").textContent = flagged ? "Unflag" : "Flag for review";
  renderMap();
}

function choose(item, value) {
  if (value === null) delete state.responses[item.item_id];
  else state.responses[item.item_id] = value;
  client.answer(item.item_id, value);
  renderMap();
}

// Per-item feedback tests: the server scores each answer as it is saved and locks the item.
function saved(ack, pending) {
  $("#saved").textContent = pending ? `${pending} answer(s) waiting to be sent` : "All answers saved";
  if (!ack?.feedback) return;
  feedback.set(ack.item_id, ack.feedback);
  lockedItems.add(ack.item_id);
  if (current?.item.item_id === ack.item_id) renderItem();
}

function showFeedback(told) {
  const box = $("#feedback");
  box.hidden = !told;
  if (!told) return;
  const verdict = told.pending ? "waiting for a teacher's grade" : told.correct === true ? "correct" : told.correct === false ? "not correct" : "scored";
  box.textContent = `Your answer is ${verdict}` + (told.score === null ? "." : `: ${told.score} of ${told.max_score} points.`);
}

$("#previous").addEventListener("click", () => { flushTyping(); client.send("navigate", { to: "previous" }); });
$("#next").addEventListener("click", () => { flushTyping(); client.send("navigate", { to: "next" }); });
$("#flag").addEventListener("click", () => {
  const id = current.item.item_id;
  client.send("flag", { item_id: id, flagged: !state.flags.includes(id) });
});
$("#review").addEventListener("click", review);
$("#back-to-exam").addEventListener("click", () => { show("exam"); $("#item-title").focus?.(); });
$("#submit").addEventListener("click", () => {
  if (confirm("Submit the exam? You cannot change your answers afterwards.")) client.send("end_assessment");
});
$("#home-button").addEventListener("click", () => {
  client?.stop();
  session?.stop();
  client = null;
  session = null;
  sensors = null;
  home();
});

function review() {
  flushTyping();
  show("review-screen");
  const answered = state.items.filter((i) => i.item_id in state.responses);
  const flagged = state.items.filter((i) => state.flags.includes(i.item_id));
  $("#review-summary").textContent =
    `${answered.length} of ${state.items.length} answered, ${state.items.length - answered.length} unanswered, ${flagged.length} flagged.`;
  $("#review-list").replaceChildren(...state.items.map((i) => {
    const li = document.createElement("li");
    const b = document.createElement("button");
    b.type = "button";
    const marks = [i.item_id in state.responses ? "answered" : "unanswered", state.flags.includes(i.item_id) ? "flagged" : ""].filter(Boolean);
    b.textContent = `Question ${i.position + 1}: ${marks.join(", ")}`;
    b.addEventListener("click", () => { show("exam"); client.send("navigate", { to: i.position }); });
    li.append(b);
    return li;
  }));
  $("#submit").focus();
}

function finish(reason, told = null) {
  sensors = null;
  $("#fullscreen-prompt").hidden = true;
  client?.stop();
  session?.stop();
  show("done");
  $("#timer").textContent = "";
  $("#done-reason").textContent = {
    submitted: "Your answers were submitted.",
    expired: "Time is up: the server closed the exam with your saved answers.",
    terminated: "The proctor ended your exam.",
  }[reason] ?? "";
  // After-submission feedback tests: how each answer went (never the correct answers unless
  // the test's review policy shows them, in which case the server sends them).
  $("#done-feedback").replaceChildren(...(told ?? []).map((f, n) => {
    const verdict = f.pending ? "waiting for a grade" : f.correct === true ? "correct" : f.correct === false ? "not correct" : "scored";
    return Object.assign(document.createElement("li"), {
      textContent: `Question ${n + 1}: ${verdict}${f.score === null ? "" : `, ${f.score} of ${f.max_score}`}`,
    });
  }));
}

// The countdown: from the server's deadline and the measured clock, once a second.
setInterval(() => {
  if (!state || !client || state.state !== "in_progress" || !state.timer?.deadline) return;
  const left = client.clock.remainingMs(state.timer.deadline);
  if (left === null) return;
  const total = Math.ceil(left / 1000);
  $("#timer").textContent = `${Math.floor(total / 60)}:${String(total % 60).padStart(2, "0")}`;
  for (const minutes of [5, 1]) {
    if (left <= minutes * 60000 && left > 0 && !warned.has(minutes)) {
      warned.add(minutes);
      $("#warning").textContent = `${minutes} minute${minutes > 1 ? "s" : ""} left.`;
    }
  }
  if (left === 0) $("#warning").textContent = "Time is up.";
  sectionCountdown();
}, 1000);

// A section with its own time limit: its countdown, and "next" (to the next section) once it is
// spent; the server refuses its answers from then on whatever the page does.
let sectionMoved = null;
function sectionCountdown() {
  const timed = current?.section_time;
  $("#section-timer").hidden = !timed;
  if (!timed) return;
  const left = timed.deadline ? client.clock.remainingMs(timed.deadline) ?? timed.remaining_ms : timed.remaining_ms;
  const total = Math.ceil(left / 1000);
  $("#section-timer").textContent = `This section: ${Math.floor(total / 60)}:${String(total % 60).padStart(2, "0")} left`;
  if (left === 0 && sectionMoved !== timed.section && current.position < current.total_items - 1) {
    sectionMoved = timed.section;
    flushTyping();
    client.send("navigate", { to: "next" });
  }
}

// ---- integrity sensors: the browser's signals, fed to Sensors while in a proctored session ----

document.addEventListener("visibilitychange", () => sensors?.visibility(document.hidden));
window.addEventListener("blur", () => sensors?.focus(false));
window.addEventListener("focus", () => sensors?.focus(true));
document.addEventListener("fullscreenchange", () => {
  sensors?.fullscreen(Boolean(document.fullscreenElement));
  showFullscreenPrompt();
});
$("#enter-fullscreen").addEventListener("click", () => {
  document.documentElement.requestFullscreen?.().catch(() => {
    $("#warning").textContent = "This browser refused fullscreen; tell your proctor.";
  });
});
window.addEventListener("online", () => sensors?.network(true));
window.addEventListener("offline", () => sensors?.network(false));
// Reported always; blocked when the test forbids it (the server flags the attempt either way).
for (const kind of ["copy", "cut", "paste"]) {
  document.addEventListener(kind, (event) => {
    sensors?.clipboard(kind);
    if (sensors && lockdown.forbid_copy_paste) event.preventDefault();
  });
}
document.addEventListener("contextmenu", (event) => {
  sensors?.contextMenu();
  if (sensors && lockdown.forbid_copy_paste) event.preventDefault();
});
document.addEventListener("keydown", (event) => {
  const shortcut = suspiciousShortcut(event);
  if (shortcut) sensors?.shortcut(shortcut);
});
let selectionTimer = 0;
document.addEventListener("selectionchange", () => {
  clearTimeout(selectionTimer);
  selectionTimer = setTimeout(() => {
    const selection = document.getSelection();
    const prompt = $("#prompt");
    if (!sensors || !current || !selection || selection.isCollapsed || !prompt.contains(selection.anchorNode)) return;
    const range = selection.getRangeAt(0);
    const start = Math.min(range.startOffset, range.endOffset);
    sensors.highlight(selection.toString(), current.item.item_id, start, start + selection.toString().length);
  }, 400);
});

boot();
