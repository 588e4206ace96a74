// Checks the Authorization header Auth0 sends: the stream's token verbatim, or `Bearer <token>`.
// Comparison is on SHA-256 digests with timingSafeEqual, so neither the content nor the
// length of a configured token leaks through response timing; every token is always compared.
import { createHash, timingSafeEqual } from "node:crypto";

const digest = (value: string) => createHash("sha256").update(value, "utf8").digest();

export type TokenVerifier = (authorization: string | undefined) => boolean;

export function tokenVerifier(tokens: readonly string[]): TokenVerifier {
  const expected = tokens.filter((t) => t.length > 0).map(digest);
  if (expected.length === 0) throw new Error("at least one stream token is required");
  return (authorization) => {
    if (authorization === undefined || authorization.length === 0) return false;
    const presented = authorization.replace(/^Bearer\s+/i, "");
    const candidates = presented === authorization ? [digest(authorization)] : [digest(presented), digest(authorization)];
    let ok = false;
    for (const candidate of candidates) for (const token of expected) ok = timingSafeEqual(candidate, token) || ok;
    return ok;
  };
}
