// Can this machine run the VM test host? Names every missing piece, so a skip says what was not proven.
import { execFileSync } from "node:child_process";
import { existsSync, statfsSync } from "node:fs";
import { cacheDir } from "./paths";

export interface Capability {
  ok: boolean;
  missing: string[];
}

const TOOLS: [string, string][] = [
  ["qemu-system-x86_64", "qemu-system-x86"],
  ["qemu-img", "qemu-utils"],
  ["debootstrap", "debootstrap"],
  ["mkfs.ext4", "e2fsprogs"],
  ["genisoimage", "genisoimage"],
  ["pebble", "pebble"],
  ["pebble-challtestsrv", "pebble"],
  ["openssl", "openssl"],
  ["ssh", "openssh-client"],
  ["ssh-keygen", "openssh-client"],
  ["gpg", "gnupg"],
  ["tar", "tar"],
];

function onPath(cmd: string): boolean {
  try {
    execFileSync("sh", ["-c", `command -v ${cmd}`], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

/** At least this much free space in the cache dir: base image, service images, a few VMs. */
export const MIN_FREE_GIB = 15;

export function checkCapability(): Capability {
  const missing: string[] = [];
  if (process.env.NODEHOST_E2E_SKIP) missing.push(`NODEHOST_E2E_SKIP is set (${process.env.NODEHOST_E2E_SKIP})`);
  if (process.platform !== "linux" || process.arch !== "x64") missing.push(`an x86-64 Linux machine (this is ${process.platform}/${process.arch})`);
  if (process.getuid?.() !== 0) missing.push("root (debootstrap and chroot build the images)");
  for (const [cmd, pkg] of TOOLS) if (!onPath(cmd)) missing.push(`${cmd} (Debian package ${pkg})`);
  if (!existsSync("/dev/kvm") && !onPath("qemu-system-x86_64")) missing.push("an accelerator or TCG");
  try {
    const s = statfsSync(cacheDir());
    const freeGiB = (s.bavail * s.bsize) / 2 ** 30;
    if (freeGiB < MIN_FREE_GIB) missing.push(`${MIN_FREE_GIB} GiB free in ${cacheDir()} (${freeGiB.toFixed(1)} GiB free)`);
  } catch (e) {
    missing.push(`a writable cache dir (${(e as Error).message})`);
  }
  return { ok: missing.length === 0, missing };
}

/** What the suite proves; printed when it cannot run, so a skip never reads as a pass. */
export const NOT_PROVEN = [
  "the host steps (wait-for-boot, base, docker-data, backups, node-pm2, app, nginx, tls, health-gate) run green on a real Debian 13 host",
  "steps run as the engine runs them: side by side where the graph allows (docker-data with node-pm2), re-run when any diffed input changes",
  "a second replay runs no step, and a changed step re-runs with its dependants only",
  "a failing step fails with its name and stderr, and its failure text (as the provider prints it, unmasked) holds no secret",
  "a stuck step is stopped on the host at its limit; apt waits for a lock held elsewhere; the pinned host key is checked",
  "HTTPS with an ACME-issued certificate, only ACME and redirects on HTTP, unknown hosts dropped, no CBC suites, /api/health through Nginx->PM2->app->Postgres+Redis, basic auth on the UI only, a ban after repeated failures",
  "only 22/80/443 listening beyond loopback, UFW following ssh.allowFrom, sshd hardening, no secret in docker inspect or ps, no core dumps",
  "the site healthy again after a power cycle; a failed release rolled back; a release stopped mid-switch loaded on the next run",
  "backups reach the bucket encrypted, a broken pg_dump fails loudly",
  "disaster recovery: a new host on the old volume, and a new host restoring the newest backup, with every row",
  "the cached base image is reused",
];

export function skipBanner(c: Capability): string {
  const line = "!".repeat(78);
  return [
    line,
    "!! SKIPPED: the VM test host cannot run on this machine. NOT PROVEN:",
    ...NOT_PROVEN.map((p) => `!!   - ${p}`),
    "!! Missing:",
    ...c.missing.map((m) => `!!   - ${m}`),
    "!! Install them (apt-get install qemu-system-x86 qemu-utils debootstrap genisoimage pebble gnupg) and run as root.",
    line,
  ].join("\n");
}
