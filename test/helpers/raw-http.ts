// Raw HTTP/1.1 over a node:net socket, for requests fetch cannot send: slow or cut-off bodies,
// oversized or invalid headers, conflicting framing headers. Loopback only.
import { connect } from "node:net";

export interface RawAnswer {
  /** "HTTP/1.1 408 Request Timeout", or undefined when the server closed without answering. */
  statusLine: string | undefined;
  status: number | undefined;
  headers: Record<string, string>;
  body: string;
  /** Socket error code seen on the client side (ECONNRESET, ...), if any. */
  error: string | undefined;
}

export type AfterWrite =
  /** Keep the socket open and wait for the answer (or for the server to close). */
  | "wait"
  /** Half-close (FIN) after writing, then wait for the answer or the close. */
  | "end"
  /** Destroy the socket right after writing (a client that vanishes mid-request). */
  | "destroy";

/**
 * Writes `payload` as is to the host and port of `url` and collects what comes back. Resolves
 * when a complete answer (by Content-Length) has arrived, or when the socket closes.
 */
export function rawRequest(url: string, payload: string | Buffer, after: AfterWrite = "wait"): Promise<RawAnswer> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const socket = connect(Number(port), hostname);
    const chunks: Buffer[] = [];
    let error: string | undefined;
    let settled = false;
    const finish = () => {
      if (settled) return;
      settled = true;
      socket.destroy();
      resolve(parseAnswer(Buffer.concat(chunks).toString("latin1"), error));
    };
    socket.on("data", (chunk: Buffer) => {
      chunks.push(chunk);
      if (isComplete(Buffer.concat(chunks).toString("latin1"))) finish();
    });
    socket.on("error", (e: NodeJS.ErrnoException) => {
      error = e.code ?? e.message;
    });
    socket.on("close", finish);
    socket.write(payload, () => {
      if (after === "end") socket.end();
      else if (after === "destroy") socket.destroy();
    });
  });
}

function isComplete(text: string): boolean {
  const end = text.indexOf("\r\n\r\n");
  if (end === -1) return false;
  const length = /\r\ncontent-length:\s*(\d+)/i.exec(text.slice(0, end + 2));
  if (!length) return false; // no length: the server closes the connection to end the answer
  return Buffer.byteLength(text.slice(end + 4), "latin1") >= Number(length[1]);
}

function parseAnswer(text: string, error: string | undefined): RawAnswer {
  const end = text.indexOf("\r\n\r\n");
  const head = end === -1 ? text : text.slice(0, end);
  const [statusLine, ...headerLines] = head.split("\r\n");
  const status = statusLine ? /^HTTP\/1\.[01] (\d{3})/.exec(statusLine)?.[1] : undefined;
  const headers: Record<string, string> = {};
  for (const line of headerLines) {
    const colon = line.indexOf(":");
    if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  return {
    statusLine: statusLine === "" ? undefined : statusLine,
    status: status === undefined ? undefined : Number(status),
    headers,
    body: end === -1 ? "" : text.slice(end + 4),
    error,
  };
}
