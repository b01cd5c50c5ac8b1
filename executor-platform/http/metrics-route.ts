import type { DaemonMetrics } from "../daemon/daemon-metrics.js";
import type { HttpServer } from "./http-server.js";

/**
 * `GET /metrics`: the daemon's Prometheus metrics. They count every deployment's instances
 * together, so only an operator may read them: with tokens configured, one granted `*`.
 */
export function addMetricsRoute(server: HttpServer, metrics: DaemonMetrics): void {
  server.route("GET", "/metrics", { access: "operator" }, async (_request, response) => {
    const { contentType, body } = await metrics.scrape();
    response.writeHead(200, { "content-type": contentType, "cache-control": "no-store" });
    response.end(body);
  });
}
