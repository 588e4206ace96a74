// Start-up check of the Event Grid target: an OPTIONS request, which Event Grid answers with
// the topic's input schema in `aeg-input-event-schema`. Publishing CloudEvents to a topic created
// with another schema would fail on every request, so the bridge stays unready and says why.
import type { KeyCredential, SASCredential, TokenCredential } from "@azure/core-auth";

export type EventGridCredential = KeyCredential | SASCredential | TokenCredential;

export interface TargetCheck {
  ok: boolean;
  /** What the target reported, when it answered. */
  schema?: string;
  status?: number;
  message: string;
}

const EVENTGRID_SCOPE = "https://eventgrid.azure.net/.default";

async function authHeaders(credential: EventGridCredential): Promise<Record<string, string>> {
  if ("key" in credential) return { "aeg-sas-key": credential.key };
  if ("signature" in credential) return { "aeg-sas-token": credential.signature };
  const token = await credential.getToken(EVENTGRID_SCOPE);
  if (!token) throw new Error("Microsoft Entra ID returned no token for Event Grid");
  return { authorization: `Bearer ${token.token}` };
}

export async function checkEventGridTarget(options: {
  endpoint: string;
  credential: EventGridCredential;
  channel?: string;
  timeoutMs: number;
}): Promise<TargetCheck> {
  const url = new URL(options.endpoint);
  url.searchParams.set("api-version", "2018-01-01");
  let response: Response;
  try {
    const headers = await authHeaders(options.credential);
    response = await fetch(url, { method: "OPTIONS", headers, signal: AbortSignal.timeout(options.timeoutMs) });
    await response.arrayBuffer();
  } catch (error) {
    const reason = error instanceof Error ? (error.cause instanceof Error ? error.cause.message : error.message) : String(error);
    return { ok: false, message: `Event Grid target did not answer the start-up check: ${reason}` };
  }
  if (response.status === 401 || response.status === 403) {
    return { ok: false, status: response.status, message: `Event Grid refused the credentials (HTTP ${response.status}): check EVENTGRID_KEY, EVENTGRID_SAS_TOKEN or the identity's "EventGrid Data Sender" role` };
  }
  if (!response.ok) {
    return { ok: false, status: response.status, message: `Event Grid start-up check answered HTTP ${response.status}: check EVENTGRID_ENDPOINT (it must be the full .../api/events URL)` };
  }
  const schema = response.headers.get("aeg-input-event-schema") ?? undefined;
  if (schema === "CloudEventV10") return { ok: true, schema, status: response.status, message: "Event Grid target accepts CloudEvents 1.0" };
  if (schema === undefined && options.channel) {
    // Partner namespaces only take CloudEvents 1.0, so a missing header is not a mismatch there.
    return { ok: true, status: response.status, message: "partner namespace answered (CloudEvents 1.0 is its only input schema)" };
  }
  return {
    ok: false,
    status: response.status,
    ...(schema !== undefined ? { schema } : {}),
    message:
      schema === undefined
        ? "Event Grid target did not report its input schema (aeg-input-event-schema): is EVENTGRID_ENDPOINT an Event Grid topic?"
        : `Event Grid topic input schema is ${schema}, not CloudEventV10: create the topic with the CloudEvents v1.0 input schema`,
  };
}
