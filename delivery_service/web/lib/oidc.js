// OpenID Connect sign-in on any page with a sign-in form: the "Sign in with …" button, and
// what the server hands back after the provider in the URL fragment (routes/oidc.py):
// `#oidc_token=…` (kept where a password sign-in keeps its token) or `#oidc_error=code&oidc_message=…`.

const PAGE_KEY = "examserver.oidc_page";

// DOM-free: what the fragment carries, and the URL without it (tests/js/oidc.test.mjs). A
// token counts only beside the value this page chose when it started the flow (`expected`):
// otherwise anyone could sign a victim into the attacker's account with a link to
// `/#oidc_token=<attacker's token>`.
export function readOidcFragment(href, expected = null) {
  const url = new URL(href);
  const fragment = new URLSearchParams(url.hash.slice(1));
  const token = fragment.get("oidc_token");
  const code = fragment.get("oidc_error");
  if (!token && !code) return null;
  const clean = url.pathname + url.search;
  if (token && expected && fragment.get("oidc_page") === expected) return { token, clean };
  if (token) {
    return { error: { code: "oidc_not_started_here", message: "this sign-in was not started on this page" }, clean };
  }
  return { error: { code, message: fragment.get("oidc_message") || code }, clean };
}

// Where the login route starts, returning to this page (path and query, never another host),
// with the page's own random value to expect back.
export function loginUrl(info, location, page) {
  const next = location.pathname + location.search;
  return `${info.login_url}?${new URLSearchParams({ next, page })}`;
}

function newPageValue() {
  const bytes = crypto.getRandomValues(new Uint8Array(24));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

// Take a token or refusal from the fragment at once (before the page looks for a token), then
// offer the button beside the form when the server has a provider configured.
export function offerOidc(api, form, errorBox) {
  const result = readOidcFragment(location.href, sessionStorage.getItem(PAGE_KEY));
  if (result) {
    sessionStorage.removeItem(PAGE_KEY);
    // Out of the address bar and the history entry: the token must not be bookmarked or shared.
    history.replaceState(history.state, "", result.clean);
    if (result.token) api.adopt(result.token);
    else errorBox.textContent = `${result.error.message} (${result.error.code})`;
  }
  api.request("GET", "/api/v1/auth/oidc", undefined, false).then((info) => {
    if (!info?.enabled || form.parentElement.querySelector(".oidc-sign-in")) return;
    const button = document.createElement("button");
    button.type = "button";
    button.className = "oidc-sign-in";
    button.textContent = `Sign in with ${info.label}`;
    button.addEventListener("click", () => {
      button.disabled = true;  // one flow per click: a double click would start two
      const page = newPageValue();
      sessionStorage.setItem(PAGE_KEY, page);
      location.assign(loginUrl(info, location, page));
    });
    form.after(button);
    addEventListener("pageshow", () => { button.disabled = false; });  // back from the provider
  }, () => {});  // no button if the server cannot say: the password form still works
}
