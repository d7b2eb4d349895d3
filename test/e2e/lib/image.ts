// The base disk of the VM test host: Debian 13 from debootstrap, cached by a hash of its recipe.
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { cacheDir, cachePath, repoRoot } from "./paths";
import { CURRENT_LTS_NODE, DEFAULT_PM2_VERSION } from "../../../components/config";
import { pidAlive, runOk } from "./exec";

/** What a DigitalOcean Debian 13 image has that provisioning relies on, and no more. */
export const BASE_PACKAGES = [
  "linux-image-amd64", "initramfs-tools", "zstd", "systemd-sysv", "udev", "dbus", "kmod",
  "openssh-server", "cloud-init", "sudo", "curl", "ca-certificates", "gnupg", "cron",
  "iproute2", "procps", "e2fsprogs", "netbase", "less",
];

/**
 * The packages the steps install with apt_install, read from scripts/ (node-pm2's nodejs/npm are
 * left out: the e2e stack takes Node from the npm registry). The apt floor of `npm run bench`
 * installs them in one go; the warm disk has them installed.
 */
export function stepPackages(): string[] {
  const pkgs = new Set<string>();
  const dir = join(repoRoot, "scripts");
  for (const f of readdirSync(dir).filter((n) => n.endsWith(".sh") && n !== "lib.sh")) {
    // `apt_install pkg...` lines, and the `*_pkgs=(pkg...)` arrays a step installs when it needs them.
    for (const m of readFileSync(join(dir, f), "utf8").matchAll(/^\s*(?:apt_install|[a-z_]+_pkgs=\()\s*([^#)\n]+)/gm)) {
      for (const p of m[1].trim().split(/\s+/)) if (/^[a-z0-9][a-z0-9.+-]+$/.test(p)) pkgs.add(p);
    }
  }
  pkgs.delete("nodejs");
  pkgs.delete("npm");
  return [...pkgs].sort();
}

/**
 * The CAs of this machine's TLS-intercepting egress proxy (harness.ts trustMachineCas), as files
 * for the guest's /usr/local/share/ca-certificates: the image has them (a droplet needs none).
 */
export function machineCaFiles(dir = process.env.NODEHOST_E2E_EXTRA_CA_DIR ?? "/usr/local/share/ca-certificates"): { name: string; content: string }[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir).filter((f) => f.endsWith(".crt")).sort()
    .map((f, i) => ({ name: `nodehost-e2e-machine-${i}.crt`, content: `${readFileSync(join(dir, f), "utf8").trim()}\n` }));
}

const SCRIPT = join(__dirname, "build-base-image.sh");
/** Sourced by both image builders; part of both recipes. */
export const CHROOT_LIB = join(__dirname, "chroot.sh");

export interface BaseImage {
  dir: string;
  disk: string;
  /**
   * The same root with stepPackages() installed: for the rebuild tests, which prove the data's
   * path onto a new root disk, not the packages' (the disaster-recovery rebuilds; the fresh
   * provision and `npm run bench` start from `disk`, as a droplet does).
   */
  warmDisk: string;
  kernel: string;
  initrd: string;
  /**
   * The packages `disk` has with a newer version in the security archive at build time, one per
   * line: the base step's first-up pass must install each (build-base-image.sh takes only the kernel).
   */
  pendingSecurity: string;
  hash: string;
  /** false when this call built it, true when it came from the cache. */
  cached: boolean;
  buildMs: number;
}

/** The service image archives the warm disk's Docker store holds (build-base-image.sh warm_docker_images). */
async function warmArchives(log?: (s: string) => void): Promise<string[]> {
  // Imported here: service-images.ts imports CHROOT_LIB from this module.
  const { ensureServiceImages } = await import("./service-images");
  return (await ensureServiceImages(log)).map((i) => i.archive);
}

/** The scripts/ tool that installs Node.js and PM2 (node-pm2 step); the warm disk runs it too. */
const RUNTIME_TOOL = join(repoRoot, "scripts", "tools", "nodehost-runtime");
/**
 * What the warm disk's Node.js and PM2 are: the stack's defaults (components/config.ts), which the
 * e2e stack keeps, from the npm registry (its app.nodeSource).
 */
const WARM_RUNTIME = [CURRENT_LTS_NODE, DEFAULT_PM2_VERSION, "https://registry.npmjs.org"].join(",");

export function baseImageRecipeHash(archives: string[]): string {
  return createHash("sha256")
    .update(WARM_RUNTIME)
    .update(readFileSync(RUNTIME_TOOL))
    // Each archive's directory names its recipe's hash (images/<id>-<hash>/<file>).
    .update(archives.map((a) => a.split("/").slice(-2).join("/")).join(","))
    .update("\0")
    .update(BASE_PACKAGES.join(","))
    .update("\0")
    .update(stepPackages().join(","))
    .update("\0")
    .update(JSON.stringify(machineCaFiles()))
    .update("\0")
    .update(readFileSync(SCRIPT))
    .update(readFileSync(CHROOT_LIB))
    .digest("hex")
    .slice(0, 16);
}

/** Returns the cached image for the current recipe, building it (atomically) when absent. */
export async function ensureBaseImage(opts: { log?: (s: string) => void } = {}): Promise<BaseImage> {
  const log = opts.log ?? ((s: string) => process.stderr.write(s + "\n"));
  const archives = await warmArchives(opts.log);
  const hash = baseImageRecipeHash(archives);
  const dir = cachePath(`base-trixie-${hash}`);
  const image = (cached: boolean, buildMs: number): BaseImage => ({
    dir, hash, cached, buildMs,
    disk: join(dir, "disk.qcow2"), warmDisk: join(dir, "warm.qcow2"), kernel: join(dir, "vmlinuz"), initrd: join(dir, "initrd.img"),
    pendingSecurity: join(dir, "pending-security.txt"),
  });
  if (existsSync(join(dir, "disk.qcow2")) && existsSync(join(dir, "warm.qcow2"))) return image(true, 0);

  // Leftovers of builds whose process died (a kept failure, a killed run) only take space.
  for (const name of readdirSync(cacheDir())) {
    const m = name.match(/^base-trixie-[0-9a-f]+\.tmp-(\d+)$/);
    if (m && !pidAlive(Number(m[1]))) rmSync(join(cacheDir(), name), { recursive: true, force: true });
  }
  const started = Date.now();
  const tmp = `${dir}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  log(`building base image ${hash} (debootstrap trixie; about 2-3 min)`);
  try {
    const cas = join(tmp, "cas");
    mkdirSync(cas, { recursive: true });
    for (const f of machineCaFiles()) writeFileSync(join(cas, f.name), f.content);
    await runOk("bash", [SCRIPT, join(tmp, "out"), join(tmp, "work"), BASE_PACKAGES.join(","), stepPackages().join(","), cas, archives.join(","), WARM_RUNTIME], {
      timeoutMs: 20 * 60_000,
      echo: process.env.NODEHOST_E2E_VERBOSE === "1",
    });
    writeFileSync(join(tmp, "out", "recipe.txt"), `${BASE_PACKAGES.join(",")}\n`);
    try {
      renameSync(join(tmp, "out"), dir);
    } catch (e) {
      // Another run finished the same recipe first: its image is as good as ours.
      if (!existsSync(join(dir, "warm.qcow2"))) throw e;
    }
  } catch (e) {
    throw new Error(`base image build failed (work files kept in ${tmp}): ${(e as Error).message}`);
  }
  rmSync(tmp, { recursive: true, force: true });
  const ms = Date.now() - started;
  log(`built base image in ${(ms / 1000).toFixed(0)} s`);
  return image(false, ms);
}
