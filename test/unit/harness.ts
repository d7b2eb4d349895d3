// Runs the Pulumi program under mocks and records every resource with its inputs and options.
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import * as pulumi from "@pulumi/pulumi";
import { parse } from "yaml";

export const ROOT = path.join(__dirname, "..", "..");

export interface Recorded {
  type: string;
  name: string;
  inputs: Record<string, any>;
  opts: pulumi.CustomResourceOptions;
  /** The inputs as the program passed them (Outputs kept, so secrecy can be checked). */
  props: Record<string, unknown>;
}

/** The checked-in stack file as the flat map Pulumi hands the program. */
export function stackFileConfig(stack: string): Record<string, string> {
  const doc = parse(fs.readFileSync(path.join(ROOT, `Pulumi.${stack}.yaml`), "utf8"));
  const raw: Record<string, string> = {};
  for (const [k, v] of Object.entries(doc.config as Record<string, unknown>)) {
    raw[k] = typeof v === "string" ? v : JSON.stringify(v);
  }
  return raw;
}

/**
 * Runs `fn` with the steps reading a copy of scripts/ that `edit` changed (NODEHOST_SCRIPTS_DIR),
 * so a test can change a script without touching the checkout. Shared by the unit and VM suites.
 */
export async function withEditedScripts<T>(edit: (dir: string) => void, fn: () => Promise<T>): Promise<T> {
  const copy = fs.mkdtempSync(path.join(os.tmpdir(), "nodehost-scripts-"));
  try {
    fs.cpSync(path.join(ROOT, "scripts"), copy, { recursive: true });
    edit(copy);
    process.env.NODEHOST_SCRIPTS_DIR = copy;
    return await fn();
  } finally {
    delete process.env.NODEHOST_SCRIPTS_DIR;
    fs.rmSync(copy, { recursive: true, force: true });
  }
}

export const TEST_PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPm6v3HMFHKhOTXyTgmtGVhbxxGCSDxWpJVtiYyFiKhR ops@test";
export const TEST_PRIVATE_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nnot-a-real-key\n-----END OPENSSH PRIVATE KEY-----\n";

/** What README tells a user to set on top of the stack file: their key and the secrets. */
export function withUserValues(raw: Record<string, string>): { raw: Record<string, string>; secretKeys: string[] } {
  const ssh = JSON.parse(raw["nodehost:ssh"] ?? "{}");
  const secrets: Record<string, string> = {
    "nodehost:sshPrivateKey": TEST_PRIVATE_KEY,
    "digitalocean:token": "dop_v1_test_token_value",
    "digitalocean:spacesAccessId": "TESTSPACESACCESSID",
    "digitalocean:spacesSecretKey": "test-spaces-secret-value",
  };
  return {
    raw: { ...raw, "nodehost:ssh": JSON.stringify({ ...ssh, publicKeys: [TEST_PUBLIC_KEY] }), ...secrets },
    secretKeys: Object.keys(secrets),
  };
}

/** Outputs the real provider computes; everything else echoes the inputs. */
function computed(type: string, name: string): Record<string, unknown> {
  switch (type) {
    case "digitalocean:index/droplet:Droplet":
      return { ipv4Address: "203.0.113.50", ipv6Address: "2001:db8::50", dropletUrn: `do:droplet:${name}` };
    case "digitalocean:index/reservedIp:ReservedIp":
      return { ipAddress: "198.51.100.7", reservedIpUrn: `do:floatingip:${name}` };
    case "digitalocean:index/volume:Volume":
      return { volumeUrn: `do:volume:${name}` };
    case "digitalocean:index/vpc:Vpc":
      return { vpcUrn: `do:vpc:${name}` };
    case "digitalocean:index/domain:Domain":
      return { domainUrn: `do:domain:${name}` };
    case "digitalocean:index/spacesBucket:SpacesBucket":
      return { bucketUrn: `do:space:${name}` };
    case "digitalocean:index/sshKey:SshKey":
      return { fingerprint: "aa:bb:cc" };
    case "digitalocean:index/spacesKey:SpacesKey":
      return { accessKey: "DO00TESTACCESS", secretKey: "spaces-key-secret-from-provider" };
    case "random:index/randomPassword:RandomPassword":
      return { result: `generated-${name}-0123456789` };
    case "random:index/randomId:RandomId":
      return { hex: "a1b2c3" };
    default:
      return {};
  }
}

const SECRET_SIG = "4dabf18193072939515e22adb298388d";

/** Mocks receive secret inputs wrapped in Pulumi's secret envelope; tests want the values. */
function unwrapSecrets(v: any): any {
  if (Array.isArray(v)) return v.map(unwrapSecrets);
  if (v !== null && typeof v === "object") {
    if (v[SECRET_SIG] !== undefined && "value" in v) return unwrapSecrets(v.value);
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, unwrapSecrets(x)]));
  }
  return v;
}

export interface Run {
  resources: Recorded[];
  /** Custom resources only (what a cloud provider or the command provider would create). */
  custom: Recorded[];
  result?: unknown;
  error?: unknown;
}

/** Sets mocks, runs `program` inside a root stack, and waits until every registration settled. */
export async function runProgram(stack: string, program: () => unknown): Promise<Run> {
  const recorded = new Map<string, Recorded>();
  const inputs = new Map<string, Record<string, any>>();
  const customs = new Set<string>();
  pulumi.runtime.setMocks(
    {
      newResource: (args: pulumi.runtime.MockResourceArgs) => {
        inputs.set(`${args.type}::${args.name}`, unwrapSecrets(args.inputs));
        if (args.custom) customs.add(`${args.type}::${args.name}`);
        return { id: `${args.name}-id`, state: { ...args.inputs, ...computed(args.type, args.name) } };
      },
      call: (args: pulumi.runtime.MockCallArgs) => args.inputs,
    },
    "nodehost",
    stack,
    false,
  );
  const run: Run = { resources: [], custom: [] };
  try {
    await pulumi.runtime.runInPulumiStack(async () => {
      pulumi.runtime.registerStackTransformation((a) => {
        recorded.set(`${a.type}::${a.name}`, { type: a.type, name: a.name, inputs: {}, opts: a.opts, props: a.props });
        return undefined;
      });
      run.result = await program();
      return {};
    });
  } catch (e) {
    run.error = e;
  }
  await (pulumi.runtime as unknown as { waitForRPCs: () => Promise<void> }).waitForRPCs();
  for (const [key, r] of recorded) r.inputs = inputs.get(key) ?? {};
  run.resources = [...recorded.values()];
  run.custom = run.resources.filter((r) => customs.has(`${r.type}::${r.name}`));
  return run;
}

/** Resolves an Output to its value (mocks resolve everything, secrets included). */
export function resolve<T>(o: pulumi.Input<T>): Promise<T> {
  return new Promise((res) => pulumi.output(o).apply((v) => { res(v as T); return v; }));
}

export function countByType(rs: Recorded[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const r of rs) counts[r.type] = (counts[r.type] ?? 0) + 1;
  return Object.fromEntries(Object.entries(counts).sort(([a], [b]) => a.localeCompare(b)));
}

export function one(rs: Recorded[], type: string, nameSuffix = ""): Recorded {
  const found = rs.filter((r) => r.type === type && r.name.endsWith(nameSuffix));
  if (found.length !== 1) throw new Error(`expected one ${type} *${nameSuffix}, found ${found.length}`);
  return found[0];
}
