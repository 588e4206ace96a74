// A CloudEvents webhook target for tests: node:http on loopback, with scriptable answers to the
// abuse-protection handshake (OPTIONS) and to deliveries (POST). Records every request so tests
// can assert on methods, headers and bodies, and lets them await requests instead of sleeping.
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

export interface ReceivedRequest {
  method: string;
  /** Path and query as received. */
  url: string;
  headers: IncomingHttpHeaders;
  body: string;
}

export interface Answer {
  status: number;
  headers?: Record<string, string>;
  body?: string;
  /** Never answer (the client's timeout has to fire). */
  hang?: boolean;
}

export type Responder = (request: ReceivedRequest) => Answer;

/** Grants what was asked: echoes the origin, and the rate when one was asked ("*" otherwise). */
export const grantAll: Responder = (request) => ({
  status: 200,
  headers: {
    allow: "POST, OPTIONS",
    "webhook-allowed-origin": String(request.headers["webhook-request-origin"] ?? ""),
    "webhook-allowed-rate": String(request.headers["webhook-request-rate"] ?? "*"),
  },
});

export const accept: Responder = () => ({ status: 204 });

export class WebhookReceiver {
  readonly requests: ReceivedRequest[] = [];
  /** Answer to OPTIONS. */
  handshake: Responder = grantAll;
  /** Answers to the next POSTs, used up in order; then `post`. */
  readonly postScript: Answer[] = [];
  post: Responder = accept;
  private readonly waiters: { check: () => boolean; resolve: () => void }[] = [];
  private readonly hanging: ServerResponse[] = [];
  private readonly server = createServer((req, res) => this.handle(req, res));
  url = "";

  async start(path = "/hooks/auth0"): Promise<this> {
    await new Promise<void>((resolve) => this.server.listen(0, "127.0.0.1", resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}${path}`;
    return this;
  }

  get options(): ReceivedRequest[] {
    return this.requests.filter((r) => r.method === "OPTIONS");
  }

  get posts(): ReceivedRequest[] {
    return this.requests.filter((r) => r.method === "POST");
  }

  /** Resolves once `count` POSTs have arrived. */
  waitForPosts(count: number): Promise<void> {
    return this.waitUntil(() => this.posts.length >= count);
  }

  waitUntil(check: () => boolean): Promise<void> {
    if (check()) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push({ check, resolve }));
  }

  async close(): Promise<void> {
    for (const res of this.hanging) res.destroy();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => {
      const request: ReceivedRequest = { method: req.method ?? "", url: req.url ?? "", headers: req.headers, body: Buffer.concat(chunks).toString("utf8") };
      this.requests.push(request);
      const answer = request.method === "OPTIONS" ? this.handshake(request) : request.method === "POST" ? (this.postScript.shift() ?? this.post(request)) : { status: 405 };
      if (answer.hang) this.hanging.push(res);
      else res.writeHead(answer.status, answer.headers).end(answer.body ?? "");
      for (const waiter of [...this.waiters]) {
        if (waiter.check()) {
          this.waiters.splice(this.waiters.indexOf(waiter), 1);
          waiter.resolve();
        }
      }
    });
  }
}

export async function startReceiver(path?: string): Promise<WebhookReceiver> {
  return new WebhookReceiver().start(path);
}
