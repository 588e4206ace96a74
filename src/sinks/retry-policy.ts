// How a failed publish attempt is classified and how long to wait before the next one.
// Event Grid's documented answers: 400 bad event, 401/403 auth, 404 wrong endpoint,
// 413 too large (never worth retrying); 408, 429 and 5xx are transient.
import { isRestError } from "@azure/core-rest-pipeline";

export type FailureReason =
  | "exhausted" // transient errors until the retries ran out
  | "bad_request" // 400
  | "unauthorized" // 401
  | "forbidden" // 403
  | "not_found" // 404
  | "too_large" // 413
  | "client_error" // another 4xx
  | "circuit_open" // the circuit breaker kept the bridge from calling Event Grid
  | "handshake_refused" // a webhook did not grant delivery in the CloudEvents abuse-protection handshake
  | "internal"; // an error before any HTTP exchange (a bug or a bad event)

export interface AttemptError {
  /** HTTP status when Event Grid answered. */
  status?: number;
  /** Event Grid's error code (`error.code`), a network error code (ECONNRESET) or "timeout". */
  code?: string;
  /** A short message, safe to log (never holds credentials). */
  message: string;
  retryable: boolean;
  /** Server-requested wait, when it sent Retry-After. */
  retryAfterMs?: number;
}

const NON_RETRYABLE_REASON: Record<number, FailureReason> = {
  400: "bad_request",
  401: "unauthorized",
  403: "forbidden",
  404: "not_found",
  413: "too_large",
};

export function isRetryableStatus(status: number): boolean {
  return status === 408 || status === 429 || status >= 500;
}

export function classifyError(error: unknown, now: () => number = Date.now): AttemptError {
  if (error instanceof Error && (error.name === "AbortError" || error.name === "TimeoutError")) {
    return { code: "timeout", message: "Event Grid did not answer within the timeout", retryable: true };
  }
  if (isRestError(error)) {
    const status = error.statusCode;
    if (status === undefined) {
      // Transport error: connection refused or reset, DNS failure.
      return { code: error.code ?? "network_error", message: safeMessage(error.message), retryable: true };
    }
    const retryAfterMs = parseRetryAfter(error.response?.headers.get("retry-after-ms") ?? error.response?.headers.get("x-ms-retry-after-ms"), error.response?.headers.get("retry-after"), now);
    return {
      status,
      code: error.code,
      message: safeMessage(error.message),
      retryable: isRetryableStatus(status),
      ...(retryAfterMs !== undefined ? { retryAfterMs } : {}),
    };
  }
  const message = error instanceof Error ? error.message : String(error);
  return { code: "internal", message: safeMessage(message), retryable: false };
}

export function failureReason(last: AttemptError): FailureReason {
  if (last.code === "circuit_open") return "circuit_open";
  // Before the status: an OPTIONS refused with 403 is a refused handshake, not a forbidden publish.
  if (last.code === "handshake_refused") return "handshake_refused";
  if (last.retryable) return "exhausted";
  if (last.status === undefined) return "internal";
  return NON_RETRYABLE_REASON[last.status] ?? "client_error";
}

/** Retry-After in milliseconds: `retry-after-ms`, else seconds or an HTTP date. */
export function parseRetryAfter(msHeader: string | undefined, header: string | undefined, now: () => number = Date.now): number | undefined {
  if (msHeader !== undefined && /^\d+$/.test(msHeader.trim())) return Number(msHeader.trim());
  if (header === undefined) return undefined;
  const trimmed = header.trim();
  if (/^\d+(\.\d+)?$/.test(trimmed)) return Math.round(Number(trimmed) * 1000);
  const date = Date.parse(trimmed);
  if (Number.isFinite(date)) return Math.max(0, date - now());
  return undefined;
}

export interface BackoffOptions {
  baseDelayMs: number;
  maxDelayMs: number;
  retryAfterMaxMs: number;
}

/**
 * Delay before retry number `retry` (1-based): exponential with "equal jitter" (half fixed,
 * half random) so that many replicas do not retry in lockstep; a Retry-After from Event Grid
 * wins when it asks for longer, up to a cap so one answer cannot park a request for hours.
 */
export function retryDelay(retry: number, options: BackoffOptions, retryAfterMs?: number, random: () => number = Math.random): number {
  const exp = Math.min(options.maxDelayMs, options.baseDelayMs * 2 ** (retry - 1));
  const jittered = exp / 2 + random() * (exp / 2);
  const asked = retryAfterMs === undefined ? 0 : Math.min(retryAfterMs, options.retryAfterMaxMs);
  return Math.round(Math.max(jittered, asked));
}

// Error messages from the HTTP stack can carry the request URL; strip query strings
// (a SAS could ride there) and keep the message short.
export function safeMessage(message: string): string {
  return message.replace(/\?[^\s"']*/g, "").slice(0, 500);
}
