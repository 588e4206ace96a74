// The admin listener: Prometheus scrape, liveness, readiness and the JSON health view.
// Kept off the ingestion port so that the public ingress never exposes it.
import express from "express";
import type { HealthModel } from "./health.js";
import type { Metrics } from "./metrics.js";

/** The admin listener's paths: Kubernetes probes and scrape configs are checked against these. */
export const ADMIN_PATHS = { metrics: "/metrics", liveness: "/healthz", readiness: "/readyz", health: "/health" } as const;

export function createAdminApp(options: { metrics: Metrics; health: HealthModel }): express.Express {
  const { metrics, health } = options;
  const app = express();
  app.disable("x-powered-by");
  app.set("etag", false);

  app.get(ADMIN_PATHS.metrics, async (_req, res) => {
    metrics.ready.set(health.ready ? 1 : 0);
    res.set("content-type", metrics.registry.contentType);
    res.send(await metrics.registry.metrics());
  });

  // Liveness: the event loop answers. Nothing external is checked, so an Event Grid outage
  // never gets the pod restarted.
  app.get(ADMIN_PATHS.liveness, (_req, res) => {
    res.json({ status: "ok" });
  });

  app.get(ADMIN_PATHS.readiness, (_req, res) => {
    if (health.ready) res.json({ ready: true });
    else res.status(503).json({ ready: false, reason: health.readinessReason });
  });

  app.get(ADMIN_PATHS.health, (_req, res) => {
    res.json(health.snapshot());
  });

  app.use((req, res) => {
    res.status(404).json({ error: "not_found", message: `the admin port serves /metrics, /healthz, /readyz and /health, not ${req.path}` });
  });

  return app;
}
