import { test } from "node:test";
import assert from "node:assert/strict";
import { tokenVerifier } from "../../src/ingest/auth.js";

test("accepts the raw token and Bearer <token>, for the current and the previous token", () => {
  const verify = tokenVerifier(["current-token-123", "previous-token-456"]);
  assert.equal(verify("current-token-123"), true);
  assert.equal(verify("Bearer current-token-123"), true);
  assert.equal(verify("bearer   current-token-123"), true);
  assert.equal(verify("previous-token-456"), true);
  assert.equal(verify("Bearer previous-token-456"), true);
});

test("refuses missing, empty, wrong, prefix and suffix tokens", () => {
  const verify = tokenVerifier(["current-token-123"]);
  for (const header of [undefined, "", "Bearer ", "current-token-12", "current-token-1234", "Basic current-token-123", "x"]) {
    assert.equal(verify(header), false, String(header));
  }
});

test("a token that itself starts with 'Bearer ' still works verbatim", () => {
  const verify = tokenVerifier(["Bearer abc-secret"]);
  assert.equal(verify("Bearer abc-secret"), true);
  assert.equal(verify("abc-secret"), false);
});

test("refuses to build without a token", () => {
  assert.throws(() => tokenVerifier(["", ""]));
});
