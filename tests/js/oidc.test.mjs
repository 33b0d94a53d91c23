import { test } from "node:test";
import assert from "node:assert/strict";
import { loginUrl, readOidcFragment } from "../../delivery_service/web/lib/oidc.js";

test("a token in the fragment is taken, and the URL keeps its path and query without it", () => {
  const result = readOidcFragment(
    "http://exam.test/?session=s1#oidc_token=abc.def&oidc_page=p1&expires_in=60", "p1",
  );
  assert.deepEqual(result, { token: "abc.def", clean: "/?session=s1" });
});

test("a token without the value this page chose is refused (a planted sign-in)", () => {
  for (const [href, expected] of [
    ["http://exam.test/#oidc_token=attackers", "p1"],
    ["http://exam.test/#oidc_token=attackers&oidc_page=p2", "p1"],
    ["http://exam.test/#oidc_token=attackers&oidc_page=p1", null],
  ]) {
    const result = readOidcFragment(href, expected);
    assert.equal(result.token, undefined);
    assert.equal(result.error.code, "oidc_not_started_here");
  }
});

test("a refusal in the fragment carries its code and message", () => {
  const result = readOidcFragment(
    "http://exam.test/console/#oidc_error=account_disabled&oidc_message=this+account+is+disabled",
  );
  assert.deepEqual(result, {
    error: { code: "account_disabled", message: "this account is disabled" },
    clean: "/console/",
  });
});

test("a page without either is left alone", () => {
  assert.equal(readOidcFragment("http://exam.test/console/#grid"), null);
  assert.equal(readOidcFragment("http://exam.test/"), null);
});

test("the login URL returns to this page's path and query", () => {
  const url = loginUrl({ login_url: "/api/v1/auth/oidc/login" }, { pathname: "/", search: "?attempt=a1" }, "p1");
  assert.equal(url, "/api/v1/auth/oidc/login?next=%2F%3Fattempt%3Da1&page=p1");
});
