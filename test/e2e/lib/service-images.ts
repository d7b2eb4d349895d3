// Postgres and Redis images built on this machine from Debian packages and written as
// `docker load` archives (no Docker engine, no Docker Hub), cached by a hash of their recipe.
import { createHash } from "node:crypto";
import { copyFileSync, createReadStream, existsSync, mkdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { runOk } from "./exec";
import { cachePath, e2eDir } from "./paths";
import { CHROOT_LIB } from "./image";

export interface ServiceImageRecipe {
  /** Short name: file names and logs. */
  id: string;
  /** The tag `docker load` gives it. */
  tag: string;
  suite: string;
  packages: string[];
  files: { before: string; after: string; entrypoint: string };
  config: {
    Env: string[];
    Entrypoint: string[];
    Cmd: string[];
    WorkingDir?: string;
    ExposedPorts: Record<string, object>;
    Volumes: Record<string, object>;
    StopSignal?: string;
  };
}

const imagesDir = join(e2eDir, "images");
const PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/**
 * PostgreSQL 17 from Debian 13 (Debian has no 16: bookworm ships 15, trixie 17), tagged with
 * the major it really holds. The official image's interface, not its contents. It carries
 * Debian's pgBackRest (2.55), as a team's mirror with it would: docker-data uses such an image as
 * it is, where on the official image it builds one with PostgreSQL's apt repository's package
 * (that build needs the internet, which the guest has not: README, "what the tests stand in for").
 */
export const POSTGRES: ServiceImageRecipe = {
  id: "postgres",
  tag: "nodehost-e2e/postgres:17",
  suite: "trixie",
  packages: ["postgresql-17", "pgbackrest", "ca-certificates"],
  files: { before: "postgres-before.sh", after: "postgres-after.sh", entrypoint: "postgres-entrypoint.sh" },
  config: {
    Env: [`PATH=/usr/lib/postgresql/17/bin:${PATH}`, "LANG=C.UTF-8", "PGDATA=/var/lib/postgresql/data"],
    Entrypoint: ["docker-entrypoint.sh"],
    Cmd: ["postgres"],
    ExposedPorts: { "5432/tcp": {} },
    Volumes: { "/var/lib/postgresql/data": {} },
    StopSignal: "SIGINT",
  },
};

/** Redis 7 from Debian 12 (Debian 13 ships Redis 8). */
export const REDIS: ServiceImageRecipe = {
  id: "redis",
  tag: "nodehost-e2e/redis:7",
  suite: "bookworm",
  packages: ["redis-server", "redis-tools"],
  files: { before: "redis-before.sh", after: "redis-after.sh", entrypoint: "redis-entrypoint.sh" },
  config: {
    Env: [`PATH=${PATH}`, "LANG=C.UTF-8"],
    Entrypoint: ["docker-entrypoint.sh"],
    Cmd: ["redis-server"],
    WorkingDir: "/data",
    ExposedPorts: { "6379/tcp": {} },
    Volumes: { "/data": {} },
  },
};

export const SERVICE_IMAGES = [POSTGRES, REDIS];

export interface ServiceImage {
  recipe: ServiceImageRecipe;
  tag: string;
  /** The `docker load` archive. */
  archive: string;
  /** The file name the guest finds it under in IMAGE_PRELOAD_DIR. */
  fileName: string;
  bytes: number;
  cached: boolean;
  buildMs: number;
}

const BUILD_SCRIPT = join(__dirname, "build-service-rootfs.sh");
/** Part of the cache key: bump when writeDockerArchive changes what it writes. */
const ARCHIVE_FORMAT = "docker-archive-v1";

export function recipeHash(r: ServiceImageRecipe): string {
  const h = createHash("sha256").update(ARCHIVE_FORMAT).update(JSON.stringify(r)).update(readFileSync(BUILD_SCRIPT)).update(readFileSync(CHROOT_LIB));
  for (const f of Object.values(r.files)) h.update(readFileSync(join(imagesDir, f)));
  return h.digest("hex").slice(0, 16);
}

/** The archive's file name: what docker-data looks for in the preload dir (`<repo>_<tag>.tar`). */
export function archiveName(tag: string): string {
  return `${tag.replace(/[/:]/g, "_")}.tar`;
}

async function sha256File(path: string): Promise<string> {
  const h = createHash("sha256");
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest("hex");
}

/** Writes a `docker load` archive: manifest.json, the config, one layer tarball. */
export async function writeDockerArchive(rootfs: string, out: string, tag: string, config: ServiceImageRecipe["config"]): Promise<void> {
  const stage = `${out}.stage`;
  rmSync(stage, { recursive: true, force: true });
  mkdirSync(stage, { recursive: true });
  const layerTmp = join(stage, "layer.tar");
  // --numeric-owner: the image's users exist only inside it; sorted and dated for stable bytes.
  await runOk("tar", ["--numeric-owner", "--sort=name", "--xattrs", "--mtime=2000-01-01", "-C", rootfs, "-cf", layerTmp, "."]);
  const diffId = await sha256File(layerTmp);
  mkdirSync(join(stage, diffId));
  renameSync(layerTmp, join(stage, diffId, "layer.tar"));
  const imageConfig = {
    architecture: "amd64",
    os: "linux",
    created: "2000-01-01T00:00:00Z",
    config: config,
    rootfs: { type: "layers", diff_ids: [`sha256:${diffId}`] },
    history: [{ created: "2000-01-01T00:00:00Z", created_by: "nodehost-e2e build-service-rootfs.sh" }],
  };
  const configJson = JSON.stringify(imageConfig);
  const configId = createHash("sha256").update(configJson).digest("hex");
  writeFileSync(join(stage, `${configId}.json`), configJson);
  writeFileSync(join(stage, "manifest.json"), JSON.stringify([{ Config: `${configId}.json`, RepoTags: [tag], Layers: [`${diffId}/layer.tar`] }]));
  const [repo, version] = [tag.slice(0, tag.lastIndexOf(":")), tag.slice(tag.lastIndexOf(":") + 1)];
  writeFileSync(join(stage, "repositories"), JSON.stringify({ [repo]: { [version]: diffId } }));
  await runOk("tar", ["--numeric-owner", "-C", stage, "-cf", out, "manifest.json", "repositories", `${configId}.json`, diffId]);
  rmSync(stage, { recursive: true, force: true });
}

export async function ensureServiceImage(r: ServiceImageRecipe, log: (s: string) => void = (s) => process.stderr.write(s + "\n")): Promise<ServiceImage> {
  const hash = recipeHash(r);
  const fileName = archiveName(r.tag);
  const archive = cachePath("images", `${r.id}-${hash}`, fileName);
  const result = (cached: boolean, buildMs: number): ServiceImage =>
    ({ recipe: r, tag: r.tag, archive, fileName, bytes: statSync(archive).size, cached, buildMs });
  if (existsSync(archive)) return result(true, 0);

  const started = Date.now();
  const work = cachePath("images", `tmp-${r.id}-${hash}-${process.pid}`);
  rmSync(work, { recursive: true, force: true });
  mkdirSync(work, { recursive: true });
  log(`building image ${r.tag} (${r.suite}: ${r.packages.join(" ")})`);
  const rootfs = join(work, "rootfs");
  await runOk("bash", [BUILD_SCRIPT, rootfs, r.suite, r.packages.join(","), join(imagesDir, r.files.before), join(imagesDir, r.files.after)], {
    timeoutMs: 20 * 60_000,
    echo: process.env.NODEHOST_E2E_VERBOSE === "1",
  });
  mkdirSync(join(rootfs, "usr/local/bin"), { recursive: true });
  copyFileSync(join(imagesDir, r.files.entrypoint), join(rootfs, "usr/local/bin/docker-entrypoint.sh"));
  await runOk("chmod", ["0755", join(rootfs, "usr/local/bin/docker-entrypoint.sh")]);
  const tmpArchive = join(work, fileName);
  await writeDockerArchive(rootfs, tmpArchive, r.tag, r.config);
  renameSync(tmpArchive, archive);
  rmSync(work, { recursive: true, force: true });
  const ms = Date.now() - started;
  log(`built ${r.tag} in ${(ms / 1000).toFixed(0)} s (${(statSync(archive).size / 1e6).toFixed(0)} MB)`);
  return result(false, ms);
}

export async function ensureServiceImages(log?: (s: string) => void): Promise<ServiceImage[]> {
  const out: ServiceImage[] = [];
  for (const r of SERVICE_IMAGES) out.push(await ensureServiceImage(r, log));
  return out;
}
