// scripts/health-gate.sh run for real against a local server: the HTTP form a droplet behind the load
// balancer is checked in (HEALTH_SCHEME=http: TLS ends at the balancer). The HTTPS form runs on every
// VM of the suite (test/e2e), through nginx and the test CA's certificate.
import * as http from "http";
import { AddressInfo } from "net";
import * as path from "path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runAsync, SCRIPTS } from "./helpers";

const GATE = path.join(SCRIPTS, "health-gate.sh");

describe("health-gate.sh over HTTP (behind a load balancer)", () => {
  let server: http.Server;
  let port = 0;
  let answer = { code: 200, body: '{"status":"ok"}' };
  const seen: { host?: string; url?: string }[] = [];

  beforeAll(async () => {
    server = http.createServer((req, res) => {
      seen.push({ host: req.headers.host, url: req.url });
      res.statusCode = answer.code;
      res.end(answer.body);
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    port = (server.address() as AddressInfo).port;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  const gate = (env: Record<string, string>) => runAsync("bash", [GATE], {
    env: { PATH: process.env.PATH!, SERVER_NAMES: "example.test www.example.test", HEALTH_PATH: "/api/health", HEALTH_TIMEOUT_S: "4", ACME_CA_PEM: "", HEALTH_SCHEME: "http", HEALTH_PORT: String(port), ...env },
    timeoutMs: 60_000,
  });

  it("passes on a 200 with status ok from the site's first name, resolved to this host", async () => {
    answer = { code: 200, body: '{"status":"ok"}' };
    seen.length = 0;
    const r = await gate({});
    expect([r.status, r.stderr]).toEqual([0, ""]);
    expect(r.stdout).toContain('healthy: http://example.test/api/health -> {"status":"ok"}');
    expect(seen[0]).toEqual({ host: `example.test:${port}`, url: "/api/health" });
  });

  it("fails the step once its time is up on a 200 whose status says otherwise, with the last answer", async () => {
    answer = { code: 200, body: '{"status":"error","postgres":"down"}' };
    const r = await gate({});
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/error: http:\/\/example\.test\/api\/health is not healthy after 4s \(\d+ attempts\)/);
    expect(r.stdout).toContain('last answer from http://example.test/api/health: HTTP 200 {"status":"error","postgres":"down"}');
  });

  it("refuses a scheme other than https or http", async () => {
    const r = await gate({ HEALTH_SCHEME: "ftp" });
    expect([r.status, r.stderr.trim()]).toEqual([1, "error: HEALTH_SCHEME must be https or http"]);
  });
});
