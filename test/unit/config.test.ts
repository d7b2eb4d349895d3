// Stack config validation: every problem reported at once, by key, without echoing secrets.
import { describe, expect, test } from "vitest";
import { ConfigError, parseConfig } from "../../components/config";
import { stackFileConfig, withUserValues } from "./harness";

const names = { project: "nodehost", stack: "staging" };
const base = withUserValues(stackFileConfig("staging"));

function problems(over: Record<string, string | undefined>, secretKeys = base.secretKeys): string[] {
  const raw: Record<string, string> = { ...base.raw };
  for (const [k, v] of Object.entries(over)) {
    if (v === undefined) delete raw[k];
    else raw[k] = v;
  }
  try {
    parseConfig(raw, secretKeys, names);
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return (e as ConfigError).problems;
  }
  return [];
}

const droplet = (o: object) => JSON.stringify({ ...JSON.parse(base.raw["nodehost:droplet"]), ...o });

describe("bad config gives one error per bad key, naming it", () => {
  test.each([
    ["a misspelt top-level key", { "nodehost:domian": "example.com" }, ["nodehost:domian: unknown key (misspelt?)"]],
    ["a misspelt nested key", { "nodehost:droplet": droplet({ sise: "s-1vcpu-1gb" }) }, ["nodehost:droplet.sise: unknown key (misspelt?)"]],
    ["a wrong type", { "nodehost:dns": JSON.stringify({ ttl: "ten" }) }, ["nodehost:dns.ttl: must be a number (got a string)"]],
    ["a string for a boolean", { "nodehost:protect": "yes" }, ["nodehost:protect: must be a boolean (got a string)"]],
    [
      "an invalid region",
      { "nodehost:droplet": droplet({ region: "xx9" }) },
      ['nodehost:droplet.region: Invalid option: expected one of "nyc1"|"nyc2"|"nyc3"|"sfo1"|"sfo2"|"sfo3"|"ams2"|"ams3"|"sgp1"|"lon1"|"fra1"|"tor1"|"blr1"|"syd1"|"atl1"'],
    ],
    ["an invalid size", { "nodehost:droplet": droplet({ size: "huge" }) }, ["nodehost:droplet.size: must be a DigitalOcean size slug such as s-2vcpu-4gb"]],
    ["an image that is not apt-based", { "nodehost:droplet": droplet({ image: "fedora-40-x64" }) }, ["nodehost:droplet.image: must be an apt-based image slug such as debian-13-x64 or ubuntu-24-04-x64"]],
    ["an invalid domain", { "nodehost:domain": "Example..com" }, ["nodehost:domain: must be a lower-case DNS name such as example.com"]],
    ["a missing domain", { "nodehost:domain": undefined }, ["nodehost:domain: is required"]],
    ["a bad CIDR in the SSH allow-list", { "nodehost:ssh": JSON.stringify({ publicKeys: [JSON.parse(base.raw["nodehost:ssh"]).publicKeys[0]], allowFrom: ["office"] }) }, ["nodehost:ssh.allowFrom[0]: must be an IPv4 or IPv6 address or CIDR such as 203.0.113.7/32"]],
    ["a missing SSH private key", { "nodehost:sshPrivateKey": undefined }, ["nodehost:sshPrivateKey: is required"]],
    ["a missing DigitalOcean token", { "digitalocean:token": undefined }, ["digitalocean:token: is required when hostMode is digitalocean (or set DIGITALOCEAN_TOKEN)"]],
    ["a bad cron schedule", { "nodehost:backup": JSON.stringify({ schedule: "every 4 hours" }) }, ["nodehost:backup.schedule: must be a five-field cron schedule such as '0 */4 * * *'"]],
    ["existing mode without its host", { "nodehost:hostMode": "existing", "nodehost:backup": JSON.stringify({ endpoint: "http://127.0.0.1:9000", bucketName: "b-1" }), "nodehost:backupAccessKey": "k", "nodehost:backupSecretKey": "s" }, ["nodehost:existingHost: is required when hostMode is existing"]],
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
      "nodehost:droplet.size: must be a DigitalOcean size slug such as s-2vcpu-4gb",
      expect.stringMatching(/^nodehost:droplet\.region: Invalid option/),
      "nodehost:sshPrivateKey: is required",
      "nodehost:domian: unknown key (misspelt?)",
      "digitalocean:token: is required when hostMode is digitalocean (or set DIGITALOCEAN_TOKEN)",
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

describe("defaults a real user would pick", () => {
  test("a minimal config gets the seed values", () => {
    const minimal = withUserValues({
      "nodehost:domain": "example.org",
      "nodehost:ssh": JSON.stringify({ allowFrom: ["198.51.100.1/32"] }),
      "nodehost:tls": JSON.stringify({ email: "ops@example.org" }),
    });
    const c = parseConfig(minimal.raw, minimal.secretKeys, { project: "nodehost", stack: "production" });
    expect(c.droplet).toMatchObject({ size: "s-2vcpu-4gb", region: "fra1", image: "debian-13-x64", backups: false });
    expect(c.dns.ttl).toBe(600);
    expect(c.app).toMatchObject({ port: 3081, nodeMajor: 20, nodeSource: "nodesource" });
    expect(c.images).toMatchObject({ postgres: "postgres:16", redis: "redis:7" });
    expect(c.backup).toMatchObject({ schedule: "0 */4 * * *", retentionLocalDays: 7, retentionRemoteDays: 30 });
    expect(c.tls.acmeServer).toBe("https://acme-v02.api.letsencrypt.org/directory");
    expect(c.siteNames).toEqual(["example.org", "www.example.org"]);
  });

  test("a subdomain stack answers to the subdomain only", () => {
    expect(parseConfig(base.raw, base.secretKeys, names).siteNames).toEqual(["staging.example.com"]);
  });
});
