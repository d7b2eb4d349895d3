// The host steps as Pulumi sees them: script, parameters, triggers, order, logging and secrecy.
import * as crypto from "crypto";
import * as fs from "fs";
import * as path from "path";
import * as pulumi from "@pulumi/pulumi";
import { beforeAll, describe, expect, test, vi } from "vitest";
import { parseConfig } from "../../components/config";
import { StepSpec } from "../../components/host/step";
import { stepWrapper, sha256 } from "../../components/host/step";
import { createStack } from "../../components/stack";
import { FakeAccount } from "./fake-do";
import { one, Recorded, resolve, Run, runProgram, ROOT, stackFileConfig, stackPublicKey, upStack, withEditedScripts, withUserValues } from "./harness";

const ORDER = ["wait-for-boot", "base", "docker-data", "backups", "node-pm2", "app", "nginx", "tls", "health-gate"];
const DEPENDS: Record<string, string[]> = {
  "wait-for-boot": [],
  base: ["wait-for-boot"],
  "docker-data": ["base"],
  backups: ["docker-data"],
  "node-pm2": ["base"],
  app: ["node-pm2", "backups"],
  nginx: ["app"],
  tls: ["nginx"],
  "health-gate": ["tls", "app", "backups"],
};
/**
 * The steps whose re-run re-runs each one (their fingerprints in its triggers): every step it
 * depends on but two orderings, app after backups and nginx after app (components/host/index.ts).
 */
const RERUN_AFTER: Record<string, string[]> = { ...DEPENDS, app: ["node-pm2"], nginx: [] };
const SECRET_STEPS = ["docker-data", "backups", "app", "nginx"];

interface Declared { run: Run; specs: StepSpec[]; commands: Recorded[] }

async function declare(over: Record<string, string> = {}, secret: string[] = []): Promise<Declared> {
  const { raw, secretKeys } = withUserValues(stackFileConfig("production"));
  let specs: StepSpec[] = [];
  const run = await runProgram("production", async () => {
    const s = createStack(parseConfig({ ...raw, ...over }, [...secretKeys, ...secret], { project: "nodehost", stack: "production" }));
    specs = await Promise.all(s.steps.map((st) => resolve(st.spec)));
    return { dropletId: await resolve(s.outputs.dropletId) };
  });
  if (run.error) throw run.error;
  const commands = run.resources.filter((r) => r.type === "command:remote:Command");
  return { run, specs, commands };
}

const script = (step: string) =>
  [fs.readFileSync(path.join(ROOT, "scripts", "lib.sh"), "utf8"), fs.readFileSync(path.join(ROOT, "scripts", `${step}.sh`), "utf8")].join("\n");

let d: Declared;
beforeAll(async () => {
  d = await declare();
});

describe("host steps", () => {
  test("run in dependency order, each after exactly the steps it needs", () => {
    expect(d.specs.map((s) => s.name)).toEqual(ORDER);
    for (const s of d.specs) expect([s.name, s.dependsOn]).toEqual([s.name, DEPENDS[s.name]]);
    const byName = new Map(d.commands.map((c) => [c.name, c]));
    for (const s of d.specs.slice(1)) {
      const deps = (byName.get(`nodehost-production-${s.name}-run`)!.opts.dependsOn ?? []) as pulumi.Resource[];
      // The app step also waits for its archive's copy.
      expect(deps.length).toBe(DEPENDS[s.name].length + (s.name === "app" ? 1 : 0));
    }
  });

  test("the app travels as a file by CopyToRemote, not in the step's stdin: state keeps its path and hash, the host checks its sha256", () => {
    const copies = d.run.resources.filter((r) => r.type === "command:remote:CopyToRemote");
    expect(copies.map((c) => c.name)).toEqual(["nodehost-production-app-upload"]);
    const copy = copies[0];
    const app = d.specs.find((s) => s.name === "app")!;
    const upload = app.uploads![0];
    // A relative path in the project directory (the same in state on every machine) and under the
    // connecting user's home on the host.
    expect(upload.localPath).toMatch(/^\.nodehost\/archives\/app-[0-9a-f]{16}\.tgz$/);
    expect(upload.remotePath).toBe(`.nodehost-incoming/${path.basename(upload.localPath)}`);
    const bytes = fs.readFileSync(path.join(ROOT, upload.localPath));
    expect(crypto.createHash("sha256").update(bytes).digest("hex")).toBe(upload.sha256);
    expect(copy.inputs.remotePath).toBe(upload.remotePath);
    // A FileAsset (the mocks record no path; step.ts builds it from the same upload as the spec).
    expect(copy.inputs.source.__pulumiAsset).toBe(true);
    expect(copy.inputs.connection).toEqual(d.commands.find((c) => c.name === "nodehost-production-app-run")!.inputs.connection);
    // A new droplet gets the file again (triggers replace the copy).
    expect(copy.inputs.triggers).toEqual([app.triggers[1]]);
    // The step names the file and its hash; the archive's bytes are nowhere in its stdin.
    expect(app.stdin).toContain(`APP_ARCHIVE_SHA256='${upload.sha256}'`);
    expect(app.stdin).toContain(`APP_ARCHIVE_PATH='${upload.remotePath}'`);
    expect(app.stdin).not.toContain(bytes.toString("base64").slice(0, 64));
    expect(app.stdin.length).toBeLessThan(80_000);
  });

  test("the first step waits for the droplet, its volume (so a resize is done before base looks) and the reserved IP's assignment", async () => {
    const first = d.commands.find((c) => c.name === "nodehost-production-wait-for-boot-run")!;
    const deps = (first.opts.dependsOn ?? []) as pulumi.CustomResource[];
    const urns = await Promise.all(deps.map((r) => resolve(r.urn)));
    expect(urns.map((u) => u.split("::").slice(-2).join("::"))).toEqual([
      "nodehost:cloud:Server$digitalocean:index/droplet:Droplet::nodehost-production-droplet",
      "nodehost:cloud:Server$digitalocean:index/volume:Volume::nodehost-production-data",
      "nodehost:cloud:Server$digitalocean:index/reservedIpAssignment:ReservedIpAssignment::nodehost-production-ip-assignment",
    ]);
  });

  test("each command is the fixed wrapper and its stdin is the parameters then lib.sh and the step's own script", () => {
    for (const s of d.specs) {
      const cmd = d.commands.find((c) => c.name === `nodehost-production-${s.name}-run`)!;
      expect(cmd.inputs.create).toBe(stepWrapper(Number(/^(\d+)m$/.exec(cmd.opts.customTimeouts!.create!)![1])));
      expect(cmd.inputs.stdin).toBe(s.stdin);
      expect(s.stdin.startsWith(`# nodehost step: ${s.name}\n`)).toBe(true);
      expect(s.stdin.endsWith(`\n${script(s.name)}`)).toBe(true);
    }
  });

  test("ssh.openToWorld leaves SSH open to anywhere in UFW; ssh.extraUsers join AllowUsers", async () => {
    const ssh = JSON.parse(withUserValues(stackFileConfig("production")).raw["nodehost:ssh"]);
    const open = await declare({ "nodehost:ssh": JSON.stringify({ ...ssh, allowFrom: [], openToWorld: true, extraUsers: ["alice", "deploy"] }) });
    const base = open.specs.find((s) => s.name === "base")!.stdin;
    expect(base).toContain("\nSSH_ALLOW_FROM=''\n");
    expect(base).toContain("\nSSH_ALLOW_USERS='deploy alice'\n");
  });

  test("logs.forward reaches base as its receiver, the peer name (host by default), the CA and the framing; unset, none", async () => {
    const off = d.specs.find((s) => s.name === "base")!.stdin;
    for (const k of ["LOG_HOST", "LOG_PORT", "LOG_PEER", "LOG_CA_PEM_B64", "LOG_FRAMING"]) expect(off).toContain(`\n${k}=''\n`);
    const ca = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    const on = (await declare({ "nodehost:logs": JSON.stringify({ forward: { host: "logs.example.net", caPem: ca } }) })).specs.find((s) => s.name === "base")!.stdin;
    expect(on).toContain("\nLOG_HOST='logs.example.net'\n");
    expect(on).toContain("\nLOG_PORT='6514'\n");
    expect(on).toContain("\nLOG_PEER='logs.example.net'\n");
    expect(on).toContain(`\nLOG_CA_PEM_B64='${Buffer.from(ca).toString("base64")}'\n`);
    expect(on).toContain("\nLOG_FRAMING='octet-counted'\n");
    const peer = (await declare({ "nodehost:logs": JSON.stringify({ forward: { host: "203.0.113.9", peerName: "*.example.net", framing: "traditional" } }) })).specs.find((s) => s.name === "base")!.stdin;
    expect(peer).toContain("\nLOG_PEER='*.example.net'\n");
    expect(peer).toContain("\nLOG_FRAMING='traditional'\n");
  });

  test("parameters are single-quoted shell variables, with the values the config implies", () => {
    const nginx = d.specs.find((s) => s.name === "nginx")!.stdin;
    expect(nginx).toContain("\nSERVER_NAMES='example.com www.example.com'\n");
    expect(nginx).toContain("\nAPP_PORT='3081'\n");
    expect(nginx).toContain("\nBASIC_AUTH_USER='admin'\n");
    const base = d.specs.find((s) => s.name === "base")!.stdin;
    expect(base).toContain("\nDATA_DEVICE='/dev/disk/by-id/scsi-0DO_Volume_nodehost-production-data'\n");
    expect(base).toContain("\nDATA_SIZE_GB='50'\n");
    // UFW narrows SSH to ssh.allowFrom as the cloud firewall does; sshd lets in the deploy user only.
    expect(base).toMatch(/\nSSH_ALLOW_FROM='[0-9a-f.:/ ]+'\n/);
    expect(base).toContain("\nSSH_ALLOW_USERS='deploy'\n");
    expect(base).toContain("\nREBOOT_AT='04:30'\n");
    const data = d.specs.find((s) => s.name === "docker-data")!.stdin;
    expect(data).toContain("\nPOSTGRES_IMAGE='postgres:16'\n");
    expect(data).toContain("\nREDIS_IMAGE='redis:7'\n");
    const tls = d.specs.find((s) => s.name === "tls")!.stdin;
    expect(tls).toContain("\nACME_SERVER='https://acme-v02.api.letsencrypt.org/directory'\n");
  });

  test("no parameter reaches a child of the step: bash reads the header, and a child's environment holds none of it", () => {
    const { execFileSync } = require("child_process") as typeof import("child_process");
    const checked: string[] = [];
    for (const s of d.specs) {
      const header = s.stdin.slice(0, s.stdin.indexOf(`\n${script(s.name)}`));
      const names = [...header.matchAll(/^(?:export )?([A-Z][A-Z0-9_]*)=/gm)].map((m) => m[1]);
      if (names.length === 0) continue; // wait-for-boot has none
      checked.push(s.name);
      // The header as the step's shell runs it, then a child (env) and the shell's own view.
      const out = execFileSync("bash", ["-c", `${header}\nenv -0; printf '\\1'; for n in ${names.join(" ")}; do [[ -n \${!n+x} ]] && printf '%s\\0' "$n"; done`], { env: { PATH: process.env.PATH }, encoding: "utf8" });
      const [childEnv, shellSees] = out.split("\x01");
      const childNames = childEnv.split("\0").map((kv) => kv.slice(0, kv.indexOf("=")));
      expect(names.filter((n) => childNames.includes(n)), s.name).toEqual([]);
      expect(shellSees.split("\0").filter(Boolean), s.name).toEqual(names);
    }
    expect(checked.sort()).toEqual(ORDER.filter((n) => n !== "wait-for-boot").sort());
  });

  test("triggers are the stdin hash, the droplet id and the fingerprints of the steps whose re-run calls for this one's", () => {
    const fp = new Map<string, string>();
    for (const s of d.specs) {
      const upstream = RERUN_AFTER[s.name].map((n) => fp.get(n)!);
      expect(s.triggers).toEqual([sha256(s.stdin), (d.run.result as { dropletId: string }).dropletId, ...upstream]);
      fp.set(s.name, sha256(JSON.stringify(s.triggers)));
    }
  });

  test("steps that carry a secret send it only on stdin, as a Pulumi secret, and log nothing", async () => {
    for (const s of d.specs) {
      const cmd = d.commands.find((c) => c.name === `nodehost-production-${s.name}-run`)!;
      const secret = SECRET_STEPS.includes(s.name);
      expect([s.name, cmd.inputs.logging]).toEqual([s.name, secret ? "none" : "stdoutAndStderr"]);
      expect([s.name, await pulumi.isSecret(pulumi.output(cmd.props.stdin))]).toEqual([s.name, secret]);
      expect(cmd.inputs.environment).toBeUndefined();
    }
    const generated = ["postgres-password", "redis-password", "basic-auth-password", "backup-passphrase", "pitr-cipher-pass"].map(
      (n) => `generated-nodehost-production-${n}-0123456789`,
    );
    for (const s of d.specs) {
      for (const g of generated) {
        if (s.stdin.includes(g)) expect(SECRET_STEPS).toContain(s.name);
      }
    }
    expect(d.specs.find((s) => s.name === "docker-data")!.stdin).toContain(`\nPOSTGRES_PASSWORD='${generated[0]}'`);
    // Backups are encrypted with a passphrase the stack generates and keeps in state.
    expect(d.specs.find((s) => s.name === "backups")!.stdin).toContain(`\nBACKUP_PASSPHRASE='${generated[3]}'`);
    expect(d.specs.filter((s) => s.stdin.includes(generated[3])).map((s) => s.name)).toEqual(["backups"]);
  });

  test("the point-in-time archive: on by default, its generated cipher pass to the backups step alone; off, neither step archives and no pass is sent", async () => {
    const backups = d.specs.find((s) => s.name === "backups")!.stdin;
    expect(backups).toContain(`\nPITR_CIPHER_PASS='generated-nodehost-production-pitr-cipher-pass-0123456789'\n`);
    expect(backups).toContain("\nPITR_ENABLED='true'\n");
    expect(d.specs.filter((s) => s.stdin.includes("pitr-cipher-pass")).map((s) => s.name)).toEqual(["backups"]);
    const docker = d.specs.find((s) => s.name === "docker-data")!.stdin;
    expect(docker).toContain("\nPITR_ENABLED='true'\n");
    expect(docker).toContain("\nPITR_ARCHIVE_TIMEOUT='30'\n");
    const off = await declare({ "nodehost:backup": JSON.stringify({ pointInTime: { enabled: false } }) });
    for (const name of ["docker-data", "backups"]) expect(off.specs.find((s) => s.name === name)!.stdin).toContain("\nPITR_ENABLED='false'\n");
    expect(off.specs.find((s) => s.name === "backups")!.stdin).toContain("\nPITR_CIPHER_PASS=''\n");
  });

  test("the images' refresh: the tool and the window reach docker-data, and \"never\" reaches it as never", async () => {
    const docker = d.specs.find((s) => s.name === "docker-data")!.stdin;
    expect(docker).toContain("\nIMAGES_REFRESH_AT='03:30'\n");
    const tool = /\nCONTAINERS_TOOL_B64='([A-Za-z0-9+/=]+)'\n/.exec(docker);
    expect(Buffer.from(tool![1], "base64").toString()).toMatch(/^#!\/usr\/bin\/env bash\n# nodehost-containers:/);
    const off = await declare({ "nodehost:updates": JSON.stringify({ imagesAt: "never" }) });
    expect(off.specs.find((s) => s.name === "docker-data")!.stdin).toContain("\nIMAGES_REFRESH_AT='never'\n");
  });

  test("a configured backupPassphrase replaces the generated one (to read another stack's backups)", async () => {
    const own = await declare({ "nodehost:backupPassphrase": "a-passphrase-kept-in-a-password-manager" }, ["nodehost:backupPassphrase"]);
    expect(own.specs.find((s) => s.name === "backups")!.stdin).toContain("\nBACKUP_PASSPHRASE='a-passphrase-kept-in-a-password-manager'\n");
    expect(own.run.custom.filter((r) => r.name.endsWith("backup-passphrase"))).toEqual([]);
  });

  test("backup.publicKeys and backupPreviousPassphrases reach the backups step alone, the passphrases one per line", async () => {
    const pub = fs.readFileSync(path.join(__dirname, "fixtures", "backup-public-key.asc"), "utf8");
    const old = ["a-first-passphrase-of-this-stack", "a-second-passphrase-of-this-stack"];
    const keyed = await declare({
      "nodehost:backup": JSON.stringify({ publicKeys: [pub] }),
      "nodehost:backupPreviousPassphrases": JSON.stringify(old),
    }, ["nodehost:backupPreviousPassphrases"]);
    const stdin = keyed.specs.find((s) => s.name === "backups")!.stdin;
    expect(stdin).toContain(`\nBACKUP_PREVIOUS_PASSPHRASES='${old.join("\n")}'\n`);
    const b64 = /\nBACKUP_PUBLIC_KEYS_B64='([A-Za-z0-9+/=]+)'\n/.exec(stdin)![1];
    expect(Buffer.from(b64, "base64").toString()).toBe(pub.trim() + "\n");
    expect(keyed.specs.filter((s) => s.stdin.includes(old[0])).map((s) => s.name)).toEqual(["backups"]);
    // None: both empty (the step then removes any from before).
    const none = d.specs.find((s) => s.name === "backups")!.stdin;
    expect(none).toContain("\nBACKUP_PREVIOUS_PASSPHRASES=''\n");
    expect(none).toContain("\nBACKUP_PUBLIC_KEYS_B64=''\n");
  });

  test("a private repository: the deploy key reaches the app step alone, in its secret stdin; the server keys without their comments; no upload", async () => {
    const key = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ-deploy-key-of-this-stack\n-----END OPENSSH PRIVATE KEY-----\n";
    const hostKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPm6v3HMFHKhOTXyTgmtGVhbxxGCSDxWpJVtiYyFiKhR github.com";
    const git = await declare({
      "nodehost:app": JSON.stringify({ source: "git", gitUrl: "git@github.com:acme/app.git", gitRef: "v1.2.0", gitHostKeys: [hostKey] }),
      "nodehost:appGitDeployKey": key,
    }, ["nodehost:appGitDeployKey"]);
    const app = git.specs.find((s) => s.name === "app")!;
    expect(app.stdin).toContain(`\nAPP_GIT_DEPLOY_KEY='${key}'\n`);
    expect(app.stdin).toContain("\nAPP_GIT_HOST_KEYS='ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPm6v3HMFHKhOTXyTgmtGVhbxxGCSDxWpJVtiYyFiKhR'\n");
    expect(git.specs.filter((s) => s.stdin.includes("deploy-key-of-this-stack")).map((s) => s.name)).toEqual(["app"]);
    const cmd = git.commands.find((c) => c.name === "nodehost-production-app-run")!;
    expect([await pulumi.isSecret(pulumi.output(cmd.props.stdin)), cmd.inputs.logging]).toEqual([true, "none"]);
    expect(app.uploads).toEqual([]);
    expect(git.run.resources.filter((r) => r.type === "command:remote:CopyToRemote")).toEqual([]);
  });

  test("the first step dials SSH long enough for a droplet to boot; every step has a bounded timeout", () => {
    const first = d.commands.find((c) => c.name === "nodehost-production-wait-for-boot-run")!;
    const droplet = d.run.custom.find((r) => r.type === "digitalocean:index/droplet:Droplet")!;
    expect(first.inputs.connection).toMatchObject({ user: "deploy", port: 22, dialErrorLimit: 60 });
    // The droplet's own address as the provider returns it, not the reserved IP (still moving on a rebuild).
    expect(first.inputs.connection.host).toMatch(/^203\.0\.113\.\d+$/);
    expect(droplet.inputs.name).toBe("nodehost-production");
    // pulumi-command does not stop a running command at customTimeouts; the wrapper's timeout(1)
    // on the host does, with the same limit.
    for (const c of d.commands) {
      const minutes = /^(\d+)m$/.exec(c.opts.customTimeouts?.create ?? "")?.[1];
      expect(minutes, c.name).toBeDefined();
      expect(c.inputs.create).toMatch(/^sudo -n bash -c '/);
      expect(c.inputs.create).toContain(`timeout --kill-after=60 ${minutes}m bash "$f"`);
    }
  });

  test("a grown volume re-runs base (which grows the filesystem) and the steps after it but the site's (nginx, tls)", async () => {
    const droplet = JSON.parse(stackFileConfig("production")["nodehost:droplet"]);
    const grown = await declare({ "nodehost:droplet": JSON.stringify({ ...droplet, volumeSizeGb: 80 }) });
    const differs = d.specs.filter((s, i) => JSON.stringify(s.triggers) !== JSON.stringify(grown.specs[i].triggers)).map((s) => s.name);
    expect(differs).toEqual(["base", "docker-data", "backups", "node-pm2", "app", "health-gate"]);
  });

  test("a changed parameter re-triggers its step and the steps after it, and nothing else", async () => {
    const changed = await declare({ "nodehost:nginx": JSON.stringify({ allowIps: ["198.51.100.0/24"] }) });
    const differs = d.specs.filter((s, i) => JSON.stringify(s.triggers) !== JSON.stringify(changed.specs[i].triggers)).map((s) => s.name);
    expect(differs).toEqual(["nginx", "tls", "health-gate"]);
  });

  test("an edited script re-triggers its step and the steps that must follow it (a new Node.js: a new release; no new site), and nothing else", async () => {
    const changed = await withEditedScripts((dir) => fs.appendFileSync(path.join(dir, "node-pm2.sh"), "\n# an edit\n"), () => declare());
    const differs = d.specs.filter((s, i) => JSON.stringify(s.triggers) !== JSON.stringify(changed.specs[i].triggers)).map((s) => s.name);
    expect(differs).toEqual(["node-pm2", "app", "health-gate"]);
  });

  test("a new release (the app's env changed) re-runs the app and the health gate, not the site (nginx, tls)", async () => {
    const app = JSON.parse(stackFileConfig("production")["nodehost:app"] ?? "{}") as { env?: Record<string, string> };
    const changed = await declare({ "nodehost:app": JSON.stringify({ ...app, env: { ...app.env, RELEASE_NOTE: "new" } }) });
    const differs = d.specs.filter((s, i) => JSON.stringify(s.triggers) !== JSON.stringify(changed.specs[i].triggers)).map((s) => s.name);
    expect(differs).toEqual(["app", "health-gate"]);
  });

  test("a changed Postgres image re-triggers docker-data, the backups set up on it and the health gate, not a release", async () => {
    const changed = await declare({ "nodehost:images": JSON.stringify({ postgres: "registry.example.com/postgres:16" }) });
    const differs = d.specs.filter((s, i) => JSON.stringify(s.triggers) !== JSON.stringify(changed.specs[i].triggers)).map((s) => s.name);
    expect(differs).toEqual(["docker-data", "backups", "health-gate"]);
  });
});

describe("the droplet's SSH host key", () => {
  const DROPLET = "digitalocean:index/droplet:Droplet";
  const hostKeyOf = (userData: string) => /\n {2}ed25519_public: "(ssh-ed25519 [A-Za-z0-9+/=]+)"\n/.exec(userData)?.[1];
  const connections = (run: Run) => run.resources.filter((r) => r.type.startsWith("command:remote:")).map((r) => r.inputs.connection as Record<string, unknown>);

  test("is made by the program, handed to cloud-init in the user-data (a secret), and checked by every step and copy", async () => {
    expect(one(d.run.custom, "tls:index/privateKey:PrivateKey").inputs).toEqual({ algorithm: "ED25519" });
    const droplet = one(d.run.custom, DROPLET);
    expect(await pulumi.isSecret(pulumi.output(droplet.props.userData))).toBe(true);
    expect(droplet.inputs.userData).toContain("\nssh_keys:\n  ed25519_private: |\n    -----BEGIN OPENSSH PRIVATE KEY-----\n    mock-nodehost-production-host-key\n    -----END OPENSSH PRIVATE KEY-----\n  ed25519_public: \"ssh-ed25519 ");
    const pub = hostKeyOf(droplet.inputs.userData)!;
    expect(pub).toBeDefined();
    const conns = connections(d.run);
    expect(conns.length).toBe(ORDER.length + 1);
    for (const c of conns) expect(c.hostKey).toBe(pub);
    for (const s of d.specs) expect([s.name, s.hostKey]).toEqual([s.name, pub]);
  });

  test("a droplet made from other user-data (before the stack had a host key, or before ssh.publicKeys changed) is not checked, not rebuilt, and the up says so", async () => {
    const account = new FakeAccount();
    const first = await upStack(account, "production");
    if (first.error) throw first.error;
    const pub = hostKeyOf(one(first.custom, DROPLET).inputs.userData)!;
    expect(connections(first).map((c) => c.hostKey)).toEqual(connections(first).map(() => pub));
    const ssh = JSON.parse(stackFileConfig("production")["nodehost:ssh"]) as Record<string, unknown>;
    const warn = vi.spyOn(pulumi.log, "warn");
    const second = await upStack(account, "production", { "nodehost:ssh": JSON.stringify({ ...ssh, publicKeys: [stackPublicKey("production"), stackPublicKey("second-operator")] }) });
    if (second.error) throw second.error;
    expect(account.changes.filter((c) => c.type === DROPLET).map((c) => c.op)).toEqual(["create"]);
    expect(connections(second).map((c) => c.hostKey)).toEqual(connections(second).map(() => undefined));
    expect(warn.mock.calls.map((c) => String(c[0])).filter((m) => m.includes("host key is not checked"))).toHaveLength(1);
    warn.mockRestore();
  });
});
