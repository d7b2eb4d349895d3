// `npm run local -- --stack <name>`: the app keys of a stack file, on the local VM, so a team sees
// its own app run before it pays for a droplet. The cloud, the CA, the bucket and every secret
// stay the local world's stand-ins; only what shapes the app and its site is taken.
import { readFileSync } from "node:fs";
import { isAbsolute, join, resolve } from "node:path";
import { parse } from "yaml";

/** nginx keys a local run takes: allowIps is left out (it would shut out this machine). */
const NGINX_KEYS = ["apiPublic", "maxBodySize", "routes", "basicAuthUser"] as const;

export interface LocalStack {
  /** Whole top-level keys for e2eConfig's overrides. */
  overrides: Record<string, unknown>;
  /** What the run tells the user it took and what it left out. */
  notes: string[];
}

/**
 * The overrides for the stack file `Pulumi.<stack>.yaml` in `projectDir`. Errors name the file
 * and key; the values themselves are checked by the stack's own schema when the replay parses them.
 */
export function localStack(projectDir: string, stack: string, base: { app: Record<string, unknown>; nginx: Record<string, unknown> }): LocalStack {
  if (!/^[A-Za-z0-9_.-]+$/.test(stack)) throw new Error(`--stack: "${stack}" is not a stack name`);
  const file = join(projectDir, `Pulumi.${stack}.yaml`);
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch {
    throw new Error(`--stack ${stack}: no ${file}`);
  }
  const doc = (parse(text) ?? {}) as { config?: Record<string, unknown> };
  const config = doc.config ?? {};
  const notes: string[] = [];
  const obj = (key: string): Record<string, unknown> => {
    const v = config[key];
    if (v === undefined) return {};
    if (v === null || typeof v !== "object" || Array.isArray(v)) throw new Error(`${file}: ${key} must be a mapping`);
    return v as Record<string, unknown>;
  };
  const app: Record<string, unknown> = { ...obj("nodehost:app") };
  // A path in the stack file is the project directory's, as `pulumi up` there reads it.
  if (typeof app.path === "string" && !isAbsolute(app.path)) app.path = resolve(projectDir, app.path);
  if (app.nodeSource !== undefined && app.nodeSource !== "npm-registry") notes.push(`app.nodeSource ${String(app.nodeSource)} is out of reach here: Node.js comes from the npm registry`);
  const nginxIn = obj("nodehost:nginx");
  const nginx: Record<string, unknown> = { ...base.nginx };
  for (const k of NGINX_KEYS) if (k in nginxIn) nginx[k] = nginxIn[k];
  if ("allowIps" in nginxIn) notes.push("nginx.allowIps is left out (it would shut this machine out of the local site)");
  if ("nodehost:appSecrets" in config) notes.push("appSecrets are encrypted in the stack file: the local run gives the app the test world's stand-in secrets");
  notes.unshift(`from ${file}: app (${Object.keys(app).sort().join(", ") || "defaults"}), nginx (${NGINX_KEYS.filter((k) => k in nginxIn).join(", ") || "defaults"})`);
  return { overrides: { app: { ...base.app, ...app, nodeSource: "npm-registry" }, nginx }, notes };
}
