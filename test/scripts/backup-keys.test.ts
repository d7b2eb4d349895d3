// nodehost-backup-keys run for real with gpg: what the backups step installs from backup.publicKeys.
import * as fs from "fs";
import * as path from "path";
import { afterAll, describe, expect, it } from "vitest";
import { missing, run, SCRIPTS, tmpDir } from "./helpers";

const TOOL = path.join(SCRIPTS, "tools", "nodehost-backup-keys");
const need = missing("gpg", "gpgconf");
if (need.length) console.warn(`backup key tests SKIPPED: missing ${need.join(", ")} (apt-get install gnupg)`);

describe.skipIf(need.length > 0)("nodehost-backup-keys", () => {
  const homes: string[] = [];
  /** A new key pair in its own gpg home: its armored public key, fingerprint and home. */
  const keyPair = (algo: string, usage: string, expire = "never", encryptionSubkey?: string) => {
    const home = tmpDir("nodehost-key-");
    homes.push(home);
    const gpg = (...args: string[]) => run("gpg", ["--batch", "--quiet", "--homedir", home, ...args]);
    const made = gpg("--passphrase", "", "--quick-gen-key", `key ${homes.length} <ops@example.invalid>`, algo, usage, expire);
    expect(made.status, made.stderr).toBe(0);
    const fpr = /^fpr:+([0-9A-F]{40}):/m.exec(gpg("--with-colons", "--list-keys").stdout)![1];
    if (encryptionSubkey) expect(gpg("--passphrase", "", "--quick-add-key", fpr, encryptionSubkey, "encr", expire).status).toBe(0);
    return { fpr, home, pub: gpg("--armor", "--export", fpr).stdout, sec: gpg("--armor", "--pinentry-mode", "loopback", "--passphrase", "", "--export-secret-keys", fpr).stdout };
  };
  const a = keyPair("future-default", "default");
  // RSA: gpg's quick-gen-key makes the primary key sign-only, encryption is a subkey of its own.
  const b = keyPair("rsa3072", "default", "never", "rsa3072");
  const install = (keys: string[], dir: string) => {
    const file = path.join(tmpDir("nodehost-keys-in-"), "keys.asc");
    fs.writeFileSync(file, keys.join("\n"));
    return run(TOOL, ["install", file, dir]);
  };
  const files = (dir: string) => fs.readdirSync(dir).sort();

  afterAll(() => {
    for (const home of homes) run("gpgconf", ["--homedir", home, "--kill", "all"]);
  });

  it("installs each key as <fingerprint>.asc (0600), then changes nothing; a key no longer given is removed", () => {
    const dir = path.join(tmpDir("nodehost-keys-"), "backup-keys");
    const first = install([a.pub, b.pub], dir);
    expect(first.status, first.stderr).toBe(0);
    expect(files(dir)).toEqual([`${a.fpr}.asc`, `${b.fpr}.asc`].sort());
    expect(first.stdout.trim().split("\n").sort()).toEqual([`changed: ${dir}/${a.fpr}.asc`, `changed: ${dir}/${b.fpr}.asc`].sort());
    expect((fs.statSync(path.join(dir, `${a.fpr}.asc`)).mode & 0o777).toString(8)).toBe("600");
    expect((fs.statSync(dir).mode & 0o777).toString(8)).toBe("700");

    const again = install([a.pub, b.pub], dir);
    expect(again.status).toBe(0);
    expect(again.stdout).toBe("");

    const fewer = install([b.pub], dir);
    expect(fewer.stdout.trim()).toBe(`changed: removed ${dir}/${a.fpr}.asc`);
    expect(files(dir)).toEqual([`${b.fpr}.asc`]);
    expect(install([], dir).stdout.trim()).toBe(`changed: removed ${dir}/${b.fpr}.asc`);
    expect(files(dir)).toEqual([]);

    expect(install([a.pub], dir).status).toBe(0);
    expect(run(TOOL, ["list", dir]).stdout.trim()).toBe(`${a.fpr} key 1 <ops@example.invalid>`);
  });

  it.each([
    ["a private key", () => [a.pub, a.sec], "backup.publicKeys[1]: must be a public key block (a private key must never reach the host)"],
    ["a key that can only sign", () => [keyPair("ed25519", "sign").pub], "backup.publicKeys[0]: the key has no usable encryption (sub)key"],
    ["text that is no key", () => [a.pub, "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nbm90IGEga2V5\n-----END PGP PUBLIC KEY BLOCK-----\n"], "backup.publicKeys[1]: gpg cannot read it as an OpenPGP key"],
  ])("refuses %s, names it, and changes nothing", (_what, keys, message) => {
    const dir = path.join(tmpDir("nodehost-keys-"), "backup-keys");
    expect(install([b.pub], dir).status).toBe(0);
    const r = install(keys(), dir);
    expect(r.status).toBe(1);
    expect(r.stderr.trim()).toBe(`nodehost-backup-keys: ${message}`);
    expect(files(dir)).toEqual([`${b.fpr}.asc`]);
  });

  it("refuses an expired key", async () => {
    const old = keyPair("future-default", "default", "seconds=1");
    await new Promise((r) => setTimeout(r, 2_100));
    const dir = path.join(tmpDir("nodehost-keys-"), "backup-keys");
    const r = install([old.pub], dir);
    expect(r.status).toBe(1);
    expect(r.stderr.trim()).toBe("nodehost-backup-keys: backup.publicKeys[0]: the key has expired");
    expect(fs.existsSync(dir)).toBe(false);
  });
});
