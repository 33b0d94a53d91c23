// The users page: find people, add one, disable or re-enable, reset a forgotten password, and
// import a CSV after checking it (a dry run whose report is shown as a table first).

import { Api, ApiError, onSignIn, signedIn } from "/static/lib/api.js";
import { offerOidc } from "/static/lib/oidc.js";

const api = new Api();
const $ = (selector) => document.querySelector(selector);
const PAGE = 50;
let me = null;
let offset = 0;
let total = 0;
let checkedFile = null;

function show(id) {
  for (const section of ["login", "people"]) $(`#${section}`).hidden = section !== id;
}

function said(error) {
  return error instanceof ApiError ? `${error.code}: ${error.message}` : String(error);
}

function cell(row, text) {
  const td = document.createElement("td");
  td.textContent = text ?? "";
  row.append(td);
  return td;
}

async function boot() {
  me = await signedIn(api);
  if (!me) return show("login");
  $("#who").textContent = `${me.username} (${me.role})`;
  show("people");
  for (const option of document.querySelectorAll("#create option[data-admin]")) {
    option.hidden = option.disabled = me.role !== "admin";
  }
  const classes = await api.get("/api/v1/classes");
  const select = $("#create select[name=class_id]");
  for (const c of classes) select.append(new Option(c.name, c.id));
  await list();
}

onSignIn(api, $("#login-form"), $("#login-error"), boot);
offerOidc(api, $("#login-form"), $("#login-error"));

// ---- the list ----------------------------------------------------------------------------------

async function list() {
  const fields = new FormData($("#search"));
  const query = new URLSearchParams({ limit: PAGE, offset });
  if (fields.get("q")) query.set("q", fields.get("q"));
  if (fields.get("role")) query.set("role", fields.get("role"));
  const page = await api.page(`/api/v1/users?${query}`);
  total = page.total;
  const body = $("#users tbody");
  body.replaceChildren(...page.items.map(row));
  const last = Math.min(offset + page.items.length, total);
  $("#count").textContent = total ? `${offset + 1}–${last} of ${total}` : "Nobody matches.";
  $("#prev").disabled = offset === 0;
  $("#next").disabled = offset + PAGE >= total;
}

function row(user) {
  const tr = document.createElement("tr");
  tr.dataset.username = user.username;
  cell(tr, user.username);
  cell(tr, user.display_name);
  cell(tr, user.role);
  const state = user.disabled ? "disabled" : user.must_change_password ? "must change password" : "active";
  cell(tr, state).className = "state";
  const actions = cell(tr, "");
  if (me.role === "admin" && user.id !== me.id) {
    actions.append(button(user.disabled ? "Enable" : "Disable", () => setDisabled(user, !user.disabled)));
  }
  if (me.role === "admin" && user.id !== me.id) {
    actions.append(button("Reset password", () => reset(user)));
  }
  return tr;
}

function button(label, run) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = label;
  b.addEventListener("click", async () => {
    $("#action-error").textContent = "";
    try {
      await run();
    } catch (error) {
      $("#action-error").textContent = said(error);
    }
  });
  return b;
}

async function setDisabled(user, disabled) {
  if (disabled && !confirm(`Disable ${user.username}? They are signed out everywhere at once.`)) return;
  await api.patch(`/api/v1/users/${user.id}`, { disabled });
  await list();
}

async function reset(user) {
  const temporary = prompt(
    `New temporary password for ${user.username} (12+ characters; they choose their own at ` +
      "sign-in). Leave empty for a one-time link instead.",
  );
  if (temporary === null) return;
  const done = await api.post(`/api/v1/users/${user.id}/password`, { password: temporary || null });
  issued(user.username, done.set_password_path, temporary ? "temporary password set" : null);
  await list();
}

// Shown once: a link to choose a password, or that a temporary one was set.
function issued(username, path, note) {
  const box = $("#issued");
  box.replaceChildren();
  const p = document.createElement("p");
  if (path) {
    const url = new URL(path, location.origin).href;
    p.append(`One-time link for ${username} (shown once): `);
    const code = document.createElement("code");
    code.className = "link";
    code.textContent = url;
    p.append(code);
  } else {
    p.textContent = `${username}: ${note}.`;
  }
  box.append(p);
}

$("#search").addEventListener("submit", async (event) => {
  event.preventDefault();
  offset = 0;
  await list();
});
$("#prev").addEventListener("click", () => ((offset = Math.max(0, offset - PAGE)), list()));
$("#next").addEventListener("click", () => ((offset += PAGE), list()));

// ---- adding one person -------------------------------------------------------------------------

$("#create").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  const fields = new FormData(form);
  const body = { username: fields.get("username"), role: fields.get("role") };
  if (fields.get("display_name")) body.display_name = fields.get("display_name");
  if (fields.get("password")) body.password = fields.get("password");
  if (fields.get("class_id")) body.class_ids = [fields.get("class_id")];
  $("#create-error").textContent = "";
  try {
    const user = await api.post("/api/v1/users", body);
    issued(user.username, user.set_password_path, "created with the password you gave");
    form.reset();
    await list();
  } catch (error) {
    $("#create-error").textContent = said(error);
  }
});

// ---- CSV import: check, then apply ---------------------------------------------------------------

const ACTIONS = { create: "create", update: "update", unchanged: "no change", refused: "refused" };

function report(result) {
  const table = $("#report");
  table.hidden = false;
  table.querySelector("tbody").replaceChildren(
    ...result.rows.map((r) => {
      const tr = document.createElement("tr");
      tr.className = r.action;
      cell(tr, String(r.line));
      cell(tr, r.username);
      cell(tr, r.display_name);
      cell(tr, r.role);
      cell(tr, r.classes_added.join("; "));
      cell(tr, ACTIONS[r.action] ?? r.action);
      cell(tr, r.code ? `${r.code}: ${r.reason}` : r.changes.join(", "));
      return tr;
    }),
  );
  const s = result.summary;
  $("#import-status").textContent =
    `${result.dry_run ? "Checked" : "Imported"} ${s.rows} rows: ${s.create} to create, ` +
    `${s.update} to update, ${s.unchanged} unchanged, ${s.refused} refused` +
    (s.classes_created ? `, ${s.classes_created} new classes.` : ".");
}

async function upload(dryRun) {
  const file = $("#import input[name=file]").files[0];
  $("#import-error").textContent = "";
  try {
    const result = await api.send("POST", `/api/v1/users/import?dry_run=${dryRun}`, file, "text/csv");
    report(result);
    return result;
  } catch (error) {
    $("#import-error").textContent = said(error);
    if (error.details?.rows) report(error.details);
    return null;
  }
}

$("#import").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("#apply").disabled = true;
  $("#passwords").hidden = true;
  const result = await upload(true);
  checkedFile = result?.ok ? $("#import input[name=file]").files[0] : null;
  $("#apply").disabled = !checkedFile;
  if (result && !result.ok) $("#import-error").textContent = "Fix the refused rows, then check again.";
});

$("#import input[name=file]").addEventListener("change", () => ($("#apply").disabled = true));

$("#apply").addEventListener("click", async () => {
  $("#apply").disabled = true;
  const result = await upload(false);
  if (!result) return;
  const table = $("#passwords");
  table.hidden = !result.passwords.length;
  table.querySelector("tbody").replaceChildren(
    ...result.passwords.map((p) => {
      const tr = document.createElement("tr");
      cell(tr, p.username);
      cell(tr, p.display_name);
      cell(tr, p.password).className = "secret";
      return tr;
    }),
  );
  await list();
});

boot();
