// `npm run local -- --stack <name>` (test/e2e/lib/local-config.ts): the app and site keys of a
// stack file, on the local world's stand-ins, and checked by the stack's own schema.
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { describe, expect, test } from "vitest";
import { ConfigError, parseConfig } from "../../components/config";
import { localStack } from "../e2e/lib/local-config";

const BASE = { app: { nodeSource: "npm-registry", env: { GREETING: "hi" } }, nginx: { basicAuthUser: "admin" } };

function project(stackYaml: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "nodehost-local-"));
  fs.writeFileSync(path.join(dir, "Pulumi.team.yaml"), stackYaml);
  return dir;
}

describe("npm run local --stack: a team's own app on the local VM", () => {
  test("takes the stack's app and site keys, its app path from the project directory, and leaves what would break a local run", () => {
    const dir = project(`config:
  nodehost:domain: example.org
  nodehost:app:
    source: path
    path: ../team-app
    nodeSource: nodesource
    healthPath: /healthz
    env: { LOG_LEVEL: debug }
    processes:
      - { name: web, file: server.ts, interpreter: tsx, mode: cluster, instances: 2, web: true }
  nodehost:nginx:
    allowIps: [203.0.113.7/32]
    basicAuthUser: team
    routes: [{ path: /api/socketio, websocket: true, idleTimeoutSeconds: 3600 }]
  nodehost:appSecrets:
    secure: AAABAKx
`);
    const { overrides, notes } = localStack(dir, "team", BASE);
    expect(overrides).toEqual({
      app: {
        source: "path", path: path.resolve(dir, "../team-app"), nodeSource: "npm-registry", healthPath: "/healthz", env: { LOG_LEVEL: "debug" },
        processes: [{ name: "web", file: "server.ts", interpreter: "tsx", mode: "cluster", instances: 2, web: true }],
      },
      nginx: { basicAuthUser: "team", routes: [{ path: "/api/socketio", websocket: true, idleTimeoutSeconds: 3600 }] },
    });
    expect(notes.join("\n")).toMatch(/nodesource is out of reach here/);
    expect(notes.join("\n")).toMatch(/nginx\.allowIps is left out/);
    expect(notes.join("\n")).toMatch(/appSecrets are encrypted in the stack file/);
  });

  test("a stack file with no app keys runs the defaults; a missing file or a bad name fails before anything starts", () => {
    expect(localStack(project("config:\n  nodehost:domain: example.org\n"), "team", BASE).overrides).toEqual({ app: BASE.app, nginx: BASE.nginx });
    expect(() => localStack(project(""), "prod", BASE)).toThrow(/--stack prod: no .*Pulumi\.prod\.yaml/);
    expect(() => localStack(project(""), "../x", BASE)).toThrow(/not a stack name/);
    expect(() => localStack(project("config:\n  nodehost:app: [1]\n"), "team", BASE)).toThrow(/nodehost:app must be a mapping/);
  });

  test("the stack's own schema judges what it took: a hostile value is refused naming its key", () => {
    const { overrides } = localStack(project(`config:
  nodehost:app:
    healthPath: "/health; return 200"
`), "team", BASE);
    const raw: Record<string, string> = {
      "nodehost:hostMode": "existing", "nodehost:domain": "example.org",
      "nodehost:existingHost": JSON.stringify({ address: "127.0.0.1", dataDevice: "/dev/vdb" }),
      "nodehost:ssh": JSON.stringify({ publicKeys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForTestsOnly0000000000000000000000 t@t"] }),
      "nodehost:tls": JSON.stringify({ email: "ops@example.org" }),
      "nodehost:app": JSON.stringify(overrides.app),
    };
    let err: unknown;
    try { parseConfig(raw, [], { project: "nodehost", stack: "team" }); } catch (e) { err = e; }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).problems).toContain("nodehost:app.healthPath: must be a path such as /api/health: '/' then letters, digits, '.', '_', '~', '-' and '/' (no '..' or '//')");
  });
});
