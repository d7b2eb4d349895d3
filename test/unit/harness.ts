// Runs the Pulumi program under mocks and records every resource with its inputs and options.
import * as crypto from "crypto";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import * as pulumi from "@pulumi/pulumi";
import { parse } from "yaml";
import { parseConfig } from "../../components/config";
import { createStack } from "../../components/stack";
import { FakeAccount } from "./fake-do";

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

/**
 * A well-formed OpenSSH ed25519 public key line of its own for each name (the README gives each
 * stack its own deploy key; DigitalOcean takes a public key once per account). Not a usable key.
 */
export function stackPublicKey(name: string): string {
  const type = Buffer.from("ssh-ed25519");
  const raw = crypto.createHash("sha256").update(name).digest();
  const len = (b: Buffer) => { const l = Buffer.alloc(4); l.writeUInt32BE(b.length); return l; };
  return `ssh-ed25519 ${Buffer.concat([len(type), type, len(raw), raw]).toString("base64")} nodehost-${name}`;
}

/** A complete `existing`-mode config (no DigitalOcean keys needed): the flat map and its secret keys. */
export const EXISTING_CONFIG: { raw: Record<string, string>; secretKeys: string[] } = {
  raw: {
    "nodehost:hostMode": "existing",
    "nodehost:domain": "example.net",
    "nodehost:existingHost": JSON.stringify({ address: "192.0.2.20", port: 2222, dataDevice: "/dev/disk/by-id/virtio-data" }),
    "nodehost:ssh": JSON.stringify({ publicKeys: [TEST_PUBLIC_KEY] }),
    "nodehost:tls": JSON.stringify({ email: "ops@example.net" }),
    "nodehost:backup": JSON.stringify({ endpoint: "https://s3.example.net", bucketName: "site-backups" }),
    "nodehost:sshPrivateKey": TEST_PRIVATE_KEY,
    "nodehost:backupAccessKey": "AKIATEST",
    "nodehost:backupSecretKey": "backup-secret-value",
  },
  secretKeys: ["nodehost:sshPrivateKey", "nodehost:backupAccessKey", "nodehost:backupSecretKey"],
};

/** What README tells a user to set on top of the stack file: their key and the secrets. */
export function withUserValues(raw: Record<string, string>, publicKey = TEST_PUBLIC_KEY): { raw: Record<string, string>; secretKeys: string[] } {
  const ssh = JSON.parse(raw["nodehost:ssh"] ?? "{}");
  const secrets: Record<string, string> = {
    "nodehost:sshPrivateKey": TEST_PRIVATE_KEY,
    "digitalocean:token": "dop_v1_test_token_value",
    "digitalocean:spacesAccessId": "TESTSPACESACCESSID",
    "digitalocean:spacesSecretKey": "test-spaces-secret-value",
  };
  return {
    raw: { ...raw, "nodehost:ssh": JSON.stringify({ ...ssh, publicKeys: [publicKey] }), ...secrets },
    secretKeys: Object.keys(secrets),
  };
}

/** Outputs of the local providers (random); DigitalOcean's come from the fake account. */
function computed(type: string, name: string): Record<string, unknown> {
  switch (type) {
    case "random:index/randomPassword:RandomPassword":
      return { result: `generated-${name}-0123456789` };
    case "random:index/randomId:RandomId":
      return { hex: "a1b2c3" };
    case "tls:index/privateKey:PrivateKey":
      // The provider's OpenSSH forms (public with a trailing newline); not a usable key.
      return {
        privateKeyOpenssh: `-----BEGIN OPENSSH PRIVATE KEY-----\nmock-${name}\n-----END OPENSSH PRIVATE KEY-----\n`,
        publicKeyOpenssh: `${stackPublicKey(`host-${name}`).split(" ").slice(0, 2).join(" ")}\n`,
      };
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

/**
 * Sets mocks, runs `program` inside a root stack against `account` (a fresh fake DigitalOcean
 * account unless one is given: pass the same one to play several stacks and runs in one account),
 * and waits until every registration settled. A registration the fake refuses fails the run the
 * way a provider error fails `pulumi up`.
 */
export async function runProgram(stack: string, program: () => unknown, account: FakeAccount = new FakeAccount()): Promise<Run> {
  const recorded = new Map<string, Recorded>();
  const failures: unknown[] = [];
  const inputs = new Map<string, Record<string, any>>();
  const customs = new Set<string>();
  pulumi.runtime.setMocks(
    {
      newResource: (args: pulumi.runtime.MockResourceArgs) => {
        const key = `${args.type}::${args.name}`;
        const plain = unwrapSecrets(args.inputs);
        inputs.set(key, plain);
        if (args.custom) customs.add(key);
        // After a failure the engine starts no new step: nothing more reaches the account.
        if (failures.length > 0) return { id: `${args.name}-not-run`, state: { ...args.inputs } };
        try {
          const made = account.register(stack, args.type, args.name, plain, recorded.get(key)?.opts ?? {});
          return { id: made.id, state: { ...args.inputs, ...computed(args.type, args.name), ...made.outputs } };
        } catch (e) {
          // Not rethrown: the mock runtime would surface it as an unhandled rejection. The run
          // reports the first refusal as its error, as `pulumi up` fails on a provider error.
          failures.push(new Error(`${args.type} ${args.name}: ${(e as Error).message}`));
          return { id: `${args.name}-refused`, state: { ...args.inputs } };
        }
      },
      // tfdo v2.99.1 database/datasource_database_ca.go:33-40: the cluster's CA as PEM text (godo
      // decodes the API's base64 into Certificate []byte; the data source sets string(...)).
      call: (args: pulumi.runtime.MockCallArgs) => args.token === "digitalocean:index/getDatabaseCa:getDatabaseCa"
        ? { ...args.inputs, certificate: `-----BEGIN CERTIFICATE-----\nfake-ca-of-${args.inputs.clusterId}\n-----END CERTIFICATE-----\n` }
        : args.inputs,
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
  try {
    await (pulumi.runtime as unknown as { waitForRPCs: () => Promise<void> }).waitForRPCs();
  } catch (e) {
    run.error ??= e;
  }
  if (failures.length > 0) run.error = failures[0];
  else if (!run.error) {
    try {
      account.finish(stack);
    } catch (e) {
      run.error = e;
    }
  }
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

/** One `pulumi up` of a checked-in stack file (plus `over`, and the stack's own deploy key) in `account`. */
export async function upStack(account: FakeAccount, stack: string, over: Record<string, string> = {}): Promise<Run> {
  const { raw, secretKeys } = withUserValues(stackFileConfig(stack), stackPublicKey(stack));
  return runProgram(stack, async () => {
    const s = createStack(parseConfig({ ...raw, ...over }, secretKeys, { project: "nodehost", stack }));
    return Object.fromEntries(await Promise.all(Object.entries(s.outputs).map(async ([k, v]) => [k, await resolve(v)])));
  }, account);
}
