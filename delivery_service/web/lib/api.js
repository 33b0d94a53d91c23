// REST calls with the stored token; errors become exceptions carrying the server's code.

export class ApiError extends Error {
  constructor(status, code, message, details = {}) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

export class Api {
  constructor(base = "", storage = globalThis.sessionStorage) {
    this.base = base;
    this.storage = storage;
  }

  get token() {
    return this.storage?.getItem("examserver.token") ?? null;
  }

  // The signed-in user, with `must_change_password` when the token may only choose one.
  async login(username, password) {
    const body = await this.request("POST", "/api/v1/auth/login", { username, password }, false);
    this.adopt(body.access_token);
    return { ...body.user, must_change_password: body.must_change_password };
  }

  // Signed in: { current_password, new_password }; from a link: { token, new_password }.
  // The answer is a fresh sign-in (every earlier token of the user ended).
  async changePassword(body) {
    const signedIn = await this.request("POST", "/api/v1/auth/password", body, !body.token);
    this.adopt(signedIn.access_token);
    return signedIn.user;
  }

  // A token from another sign-in (OpenID Connect: lib/oidc.js), kept where login keeps its own.
  adopt(token) {
    this.storage?.setItem("examserver.token", token);
  }

  logout() {
    this.storage?.removeItem("examserver.token");
  }

  get(path) {
    return this.request("GET", path);
  }

  post(path, body) {
    return this.request("POST", path, body);
  }

  put(path, body) {
    return this.request("PUT", path, body);
  }

  patch(path, body) {
    return this.request("PATCH", path, body);
  }

  // A listing with its `X-Total-Count`: { items, total }.
  async page(path) {
    const reply = await this.fetch("GET", path);
    return { items: await this.parse(reply), total: Number(reply.headers.get("x-total-count") ?? 0) };
  }

  async request(method, path, body, auth = true) {
    return this.parse(await this.fetch(method, path, body, auth));
  }

  // A raw body (a CSV file) with its own content type.
  async send(method, path, data, contentType) {
    const headers = { "content-type": contentType };
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    return this.parse(await fetch(this.base + path, { method, headers, body: data }));
  }

  fetch(method, path, body, auth = true) {
    const headers = { "content-type": "application/json" };
    if (auth && this.token) headers.authorization = `Bearer ${this.token}`;
    return fetch(this.base + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  }

  async parse(reply) {
    const text = await reply.text();
    const data = text ? JSON.parse(text) : null;
    if (!reply.ok) {
      const error = data?.error ?? {};
      throw new ApiError(
        reply.status,
        error.code ?? "http_error",
        error.message ?? reply.statusText,
        error.details ?? {},
      );
    }
    return data;
  }
}

// Who is signed in, or null (then the page shows its sign-in form): no token, a token the
// server no longer takes, or one that may only choose a new password (signing in again asks
// for it) all mean "sign in".
export async function signedIn(api) {
  if (!api.token) return null;
  try {
    const me = await api.get("/api/v1/auth/me");
    if (!me.must_change_password) return me;
  } catch {
    // fall through: the token is not good any more
  }
  api.logout();
  return null;
}

// Every page's sign-in form (#login-form with username and password, #login-error):
// sign in, then run `next`; the server's refusal is shown in the form. A user whose password
// was set by someone else chooses their own first, in a form that replaces this one.
export function onSignIn(api, form, errorBox, next) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const fields = new FormData(form);
    try {
      const user = await api.login(fields.get("username"), fields.get("password"));
      errorBox.textContent = "";
      if (user.must_change_password) {
        form.hidden = true;
        await choosePassword(api, form.parentElement, { current_password: fields.get("password") });
        form.hidden = false;
        form.reset();
      }
      await next();
    } catch (error) {
      errorBox.textContent = error.message;
    }
  });
}

// A "choose your password" form in `container`; resolves once the server took the new one.
// `proof` is { current_password } (signed in) or { token } (from a set-password link).
export function choosePassword(api, container, proof, title = "Choose a new password") {
  const form = document.createElement("form");
  form.className = "choose-password";
  form.innerHTML = `
    <h3 tabindex="-1"></h3>
    <p>At least 12 characters; not a common password. A few unrelated words work well.</p>
    <label>New password <input name="new" type="password" autocomplete="new-password" required minlength="12"></label>
    <label>Again <input name="again" type="password" autocomplete="new-password" required></label>
    <button type="submit">Save password</button>
    <p class="error" role="alert"></p>`;
  form.querySelector("h3").textContent = title;
  container.append(form);
  form.querySelector("h3").focus();
  const problem = form.querySelector(".error");
  return new Promise((resolve) => {
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const fields = new FormData(form);
      if (fields.get("new") !== fields.get("again")) {
        problem.textContent = "The two passwords differ.";
        return;
      }
      try {
        const user = await api.changePassword({ ...proof, new_password: fields.get("new") });
        form.remove();
        resolve(user);
      } catch (error) {
        problem.textContent = error.message;
      }
    });
  });
}

// A set-password link (`/#set-password=<token>`, from an admin or teacher): ask for the
// password, sign in with it, and take the token out of the address bar and history.
export async function followSetPasswordLink(api, container) {
  const match = /^#set-password=(.+)$/.exec(location.hash);
  if (!match) return false;
  history.replaceState(null, "", location.pathname + location.search);
  await choosePassword(api, container, { token: decodeURIComponent(match[1]) }, "Choose your password");
  return true;
}
