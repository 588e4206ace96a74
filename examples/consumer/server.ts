// Runs the example consumer on PORT (default 7071, the Azure Functions local port):
//   node --import tsx examples/consumer/server.ts
// Every path is served; point the subscription at e.g. http://localhost:7071/api/auth0-events.
// The handlers print a few fields of each log record. Auth0 logs hold personal data (user names,
// IP addresses): think twice before printing them anywhere but your own machine.
import { createServer } from "node:http";
import { createConsumer } from "./consumer.js";

/** The fields of an Auth0 log record (the event's `data`) these handlers read. */
interface Auth0Log {
  date?: string;
  description?: string;
  user_name?: string;
  user_id?: string;
  ip?: string;
  client_name?: string;
  connection?: string;
}

function log(data: unknown): Auth0Log {
  return data !== null && typeof data === "object" ? (data as Auth0Log) : {};
}

const rawPort = process.env.PORT ?? "7071";
const port = Number(rawPort);
if (!/^\d+$/.test(rawPort) || port > 65535) {
  console.error(`PORT must be an integer from 0 to 65535, got '${rawPort}'`);
  process.exit(2);
}

const consumer = createConsumer({
  handlers: {
    // f: failed login
    f: (event) => {
      const d = log(event.data);
      console.log(`[failed login] ${d.date ?? event.time} user=${d.user_name ?? d.user_id ?? "?"} ip=${d.ip ?? "?"} ${d.description ?? ""}`);
    },
    // s: successful login
    s: (event) => {
      const d = log(event.data);
      console.log(`[login] ${d.date ?? event.time} user=${d.user_name ?? d.user_id ?? "?"} app=${d.client_name ?? "?"} connection=${d.connection ?? "?"}`);
    },
  },
  // Everything else: the code and the API category the bridge attached.
  fallback: (event) => {
    console.log(`[${String(event.auth0code)}] ${String(event.auth0category ?? "")} ${event.type} id=${event.id}`);
  },
});

const server = createServer(consumer);
server.listen(port, () => {
  const { port: actual } = server.address() as { port: number };
  console.log(`consumer listening on http://localhost:${actual}/ (OPTIONS handshake + POST CloudEvents)`);
});

function stop(): void {
  process.off("SIGINT", stop);
  process.off("SIGTERM", stop);
  server.close();
  server.closeAllConnections();
}
process.on("SIGINT", stop);
process.on("SIGTERM", stop);
