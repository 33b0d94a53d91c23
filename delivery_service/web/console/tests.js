// A test's availability (PUT /api/v1/tests/{id}/availability): the classes whose students may
// take it self-paced, its window, its access password (set, keep or remove; never shown) and
// the networks candidates may take it from. The server decides who may change what; this page
// shows what it answers.

import { Api, ApiError, onSignIn, signedIn } from "/static/lib/api.js";
import { offerOidc } from "/static/lib/oidc.js";

const api = new Api();
const $ = (selector) => document.querySelector(selector);
const form = $("#availability");
let tests = [];
let classes = [];

function show(id) {
  for (const section of ["login", "catalog"]) $(`#${section}`).hidden = section !== id;
}

const pad = (n) => String(n).padStart(2, "0");

// An ISO time as a datetime-local field's value (the browser's time zone), and back.
function toLocal(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

const fromLocal = (value) => (value ? new Date(value).toISOString() : null);
const when = (iso) => new Date(iso).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });

function windowText(test) {
  const parts = [];
  if (test.opens_at) parts.push(`opens ${when(test.opens_at)}`);
  if (test.closes_at) parts.push(`closes ${when(test.closes_at)}`);
  const state = { upcoming: "not open yet", open: "open now", closed: "closed" }[test.window];
  return parts.length ? `${state} (${parts.join(", ")})` : state;
}

function describe(test) {
  const audience = test.assigned_to.length
    ? `${test.assigned_to.length} class(es)` : "staff only (no class assigned)";
  const facts = [`${test.title}: ${windowText(test)}; ${audience}`];
  if (test.password_required) facts.push("access password set");
  if (test.allowed_networks?.length) facts.push(`networks ${test.allowed_networks.join(", ")}`);
  if (test.reserved_for_session) {
    facts.push("a proctored session uses it, so it is never taken self-paced");
  }
  $("#facts").textContent = `${facts.join("; ")}.`;
}

function render(test) {
  describe(test);
  form.hidden = false;
  const box = $("#classes");
  box.replaceChildren(box.querySelector("legend"));
  // The caller's classes (a teacher's own; an admin's all): the part of the audience they set.
  const options = classes.map((c) => ({ id: c.id, label: `${c.name}${c.state === "archived" ? " (archived)" : ""}` }));
  for (const option of options) {
    const label = document.createElement("label");
    const input = Object.assign(document.createElement("input"), {
      type: "checkbox", name: "assigned_to", value: option.id, checked: test.assigned_to.includes(option.id),
    });
    label.append(input, ` ${option.label}`);
    box.append(label);
  }
  if (!options.length) box.append(Object.assign(document.createElement("p"), { textContent: "You teach no class yet." }));
  form.elements.opens_at.value = toLocal(test.opens_at);
  form.elements.closes_at.value = toLocal(test.closes_at);
  form.elements.allowed_networks.value = (test.allowed_networks ?? []).join("\n");
  form.elements.password.value = "";
  form.querySelector("input[name=password_action][value=keep]").checked = true;
  $("#password-state").textContent = test.password_required
    ? "Candidates must give this test's access password to start it."
    : "This test has no access password.";
}

function problem(error) {
  if (!(error instanceof ApiError)) return String(error);
  const listed = (error.details?.errors ?? []).map((e) => `${e.loc.filter((p) => p !== "body").join(".")}: ${e.msg}`);
  return `${error.code}: ${error.message}${listed.length ? ` — ${listed.join("; ")}` : ""}`;
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const test = tests.find((t) => t.id === $("#test-picker").value);
  const said = $("#said");
  said.className = "";
  said.textContent = "";
  const fields = new FormData(form);
  const body = {
    assigned_to: fields.getAll("assigned_to"),
    opens_at: fromLocal(fields.get("opens_at")),
    closes_at: fromLocal(fields.get("closes_at")),
    allowed_networks: String(fields.get("allowed_networks")).split("\n").map((l) => l.trim()).filter(Boolean),
  };
  const action = fields.get("password_action");
  if (action === "set") body.password = String(fields.get("password"));
  if (action === "clear") body.password = null;
  try {
    const saved = await api.put(`/api/v1/tests/${encodeURIComponent(test.id)}/availability`, body);
    tests = tests.map((t) => (t.id === saved.id ? saved : t));
    render(saved);
    said.className = "ok";
    said.textContent = "Saved.";
  } catch (error) {
    said.className = "error";
    said.textContent = problem(error);
  }
});

$("#test-picker").addEventListener("change", (event) => {
  $("#said").textContent = "";
  history.replaceState(null, "", `?test=${event.target.value}`);
  render(tests.find((t) => t.id === event.target.value));
});

async function boot() {
  const me = await signedIn(api);
  if (!me) return show("login");
  $("#who").textContent = `${me.username} (${me.role})`;
  show("catalog");
  [tests, classes] = await Promise.all([api.get("/api/v1/tests"), api.get("/api/v1/classes")]);
  const picker = $("#test-picker");
  picker.replaceChildren(...tests.map((t) => new Option(t.title, t.id)));
  if (!tests.length) {
    $("#facts").textContent = "There are no tests yet.";
    return;
  }
  const wanted = new URLSearchParams(location.search).get("test");
  picker.value = tests.some((t) => t.id === wanted) ? wanted : tests[0].id;
  render(tests.find((t) => t.id === picker.value));
}

// ---- a QTI package -------------------------------------------------------------------------------

$("#qti-upload").addEventListener("submit", async (event) => {
  event.preventDefault();
  const file = event.target.elements.file.files[0];
  const said = $("#qti-said");
  const problems = $("#qti-problems");
  said.textContent = "Uploading…";
  problems.hidden = true;
  try {
    const result = await api.send("POST", "/api/v1/qti/import", file, "application/zip");
    const items = Object.keys(result.items).length;
    said.textContent = `QTI ${result.version} package imported: ${items} item(s)` +
      (result.test_id ? ", and a test." : ", no test.");
    problems.hidden = !result.problems.length;
    problems.querySelector("tbody").replaceChildren(...result.problems.map((p) => {
      const tr = document.createElement("tr");
      for (const text of [p.file, p.identifier ?? "", p.reason]) {
        tr.append(Object.assign(document.createElement("td"), { textContent: text }));
      }
      return tr;
    }));
    event.target.reset();
    if (result.test_id) {
      history.replaceState(null, "", `?test=${result.test_id}`);
      await boot();
    }
  } catch (error) {
    said.textContent = problem(error);
  }
});

onSignIn(api, $("#login-form"), $("#login-error"), boot);
offerOidc(api, $("#login-form"), $("#login-error"));

boot();
