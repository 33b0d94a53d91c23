// The grading queue: answered essays of ended attempts (GET /api/v1/grading), one form each
// (POST /api/v1/grading/{attempt}/{item}). The server checks the range and asks for a reason
// when a grade already given changes; this page only shows what it answers.

import { Api, ApiError, onSignIn, signedIn } from "/static/lib/api.js";
import { offerOidc } from "/static/lib/oidc.js";

const api = new Api();
const $ = (selector) => document.querySelector(selector);
const filters = $("#filters");

const time = (iso) => (iso ? new Date(iso).toLocaleString() : "—");

function show(id) {
  for (const section of ["login", "queue"]) $(`#${section}`).hidden = section !== id;
}

function element(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (className) node.className = className;
  return node;
}

function responseText(response) {
  if (response === null || response === undefined) return "(no answer)";
  return typeof response === "string" ? response : JSON.stringify(response);
}

function outcome(result) {
  const score = result.score === null ? "—" : `${result.score} / ${result.max_score}`;
  if (!result.final) return `Saved. Attempt score so far ${score}; ${result.pending_grades} essay(s) still to grade.`;
  const passed = result.passed === null ? "" : result.passed ? " — passed" : " — not passed";
  return `Saved. The result is final: ${score}${passed}.`;
}

function card(task) {
  const article = element("article", undefined, "task");
  article.dataset.attempt = task.attempt_id;
  article.dataset.item = task.item_id;
  const title = element("h3", `${task.candidate} — ${task.test_title} — ${task.item_id}`);
  const meta = element("p", `Submitted ${time(task.submitted_at)}` +
    (task.grade === null ? "" : ` · graded ${task.grade} / ${task.max_score} on ${time(task.graded_at)}`));
  const prompt = element("p", task.prompt ?? "", "prompt");
  const answer = element("blockquote", responseText(task.response), "response");

  const form = element("form", undefined, "inline");
  const score = element("input");
  Object.assign(score, { type: "number", name: "score", min: "0", max: String(task.max_score),
    step: "any", required: true, value: task.grade ?? "" });
  const scoreLabel = element("label", `Score (0–${task.max_score}) `);
  scoreLabel.append(score);
  const reason = element("input");
  Object.assign(reason, { name: "reason", maxLength: 2000 });
  const reasonLabel = element("label", "Reason for the change ");
  reasonLabel.append(reason);
  reasonLabel.hidden = task.grade === null;  // a first grade needs none
  const save = element("button", task.grade === null ? "Save grade" : "Change grade");
  save.type = "submit";
  const said = element("p", "", "said");
  said.setAttribute("role", "status");
  form.append(scoreLabel, reasonLabel, save);

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    said.className = "said";
    said.textContent = "";
    save.disabled = true;
    const body = { score: Number(score.value) };
    if (reason.value.trim()) body.reason = reason.value.trim();
    try {
      const done = await api.post(
        `/api/v1/grading/${encodeURIComponent(task.attempt_id)}/${encodeURIComponent(task.item_id)}`, body);
      said.textContent = outcome(done.result);
      Object.assign(task, done.task);
      reasonLabel.hidden = false;
      save.textContent = "Change grade";
      meta.textContent = `Submitted ${time(task.submitted_at)} · graded ${task.grade} / ${task.max_score} on ${time(task.graded_at)}`;
    } catch (error) {
      said.className = "said error";
      said.textContent = error instanceof ApiError ? `${error.code}: ${error.message}` : String(error);
      if (error instanceof ApiError && error.code === "reason_required") reason.focus();
    } finally {
      save.disabled = false;
    }
  });
  article.append(title, meta, prompt, answer, form, said);
  return article;
}

async function loadQueue() {
  const form = new FormData(filters);
  const query = new URLSearchParams({ status: form.get("status") });
  if (form.get("test_id")) query.set("test_id", form.get("test_id"));
  $("#status").textContent = "Loading…";
  try {
    const tasks = await api.get(`/api/v1/grading?${query}`);
    $("#tasks").replaceChildren(...tasks.map(card));
    $("#status").textContent = tasks.length ? `${tasks.length} essay(s)` : "Nothing here.";
  } catch (error) {
    $("#status").textContent = error instanceof ApiError ? `${error.code}: ${error.message}` : String(error);
  }
}

async function boot() {
  const me = await signedIn(api);
  if (!me) return show("login");
  $("#who").textContent = `${me.username} (${me.role})`;
  show("queue");
  const select = filters.elements.test_id;
  for (const test of await api.get("/api/v1/tests")) select.append(new Option(test.title, test.id));
  const wanted = new URLSearchParams(location.search).get("test");
  if (wanted) select.value = wanted;
  await loadQueue();
}

filters.addEventListener("change", loadQueue);

offerOidc(api, $("#login-form"), $("#login-error"));
onSignIn(api, $("#login-form"), $("#login-error"), boot);

boot();
