// REST calls with the stored token; errors become exceptions carrying the server's code.

export class ApiError extends Error {
  constructor(status, code, message, details = null) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details ?? {};
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

  async login(username, password) {
    const body = await this.request("POST", "/api/v1/auth/login", { username, password }, false);
    this.storage?.setItem("examserver.token", body.access_token);
    return body.user;
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

  async request(method, path, body, auth = true) {
    const headers = { "content-type": "application/json" };
    if (auth && this.token) headers.authorization = `Bearer ${this.token}`;
    const reply = await fetch(this.base + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await reply.text();
    const data = text ? JSON.parse(text) : null;
    if (!reply.ok) {
      const error = data?.error ?? {};
      throw new ApiError(reply.status, error.code ?? "http_error", error.message ?? reply.statusText, error.details);
    }
    return data;
  }
}

// Every page's sign-in form (#login-form with username and password, #login-error):
// sign in, then run `next`; the server's refusal is shown in the form.
export function onSignIn(api, form, errorBox, next) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const fields = new FormData(form);
    try {
      await api.login(fields.get("username"), fields.get("password"));
      errorBox.textContent = "";
      await next();
    } catch (error) {
      errorBox.textContent = error.message;
    }
  });
}
