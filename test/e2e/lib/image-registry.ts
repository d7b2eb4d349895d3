// A container registry (Distribution, Debian's docker-registry) playing Docker Hub on loopback:
// the guest's Docker daemon pulls the suite's images from it at https://10.0.2.2:<port>, over TLS
// with a CA made for the world (the daemon trusts it by /etc/docker/certs.d/10.0.2.2:<port>/ca.crt).
// Images go in from `docker load` archives by skopeo (there is no Docker engine on this machine).
import { createHash, randomUUID } from "node:crypto";
import { constants, copyFileSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { request } from "node:https";
import { join, resolve } from "node:path";
import { startDaemon, waitReady } from "./daemon";
import { runOk } from "./exec";
import { HOST_FROM_GUEST } from "./pebble";
import { freePort } from "./ports";

export interface ImageRegistry {
  /** 127.0.0.1:<port>: where this machine reaches it. */
  hostPort: string;
  /** 10.0.2.2:<port>: where the guest reaches it (image names: `${guestHost}/<repo>:<tag>`). */
  guestHost: string;
  /** The CA the server's certificate is from (PEM). */
  caPem: string;
  /** The registry's process: the run's teardown stops it too (registry.ts). */
  pid: number;
  /**
   * Pushes a `docker load` archive as `repoTag` ("nodehost-e2e/redis:7"); returns the image's config
   * digest ("sha256:<hex>"), the id `docker image inspect -f '{{.Id}}'` shows once it is pulled.
   */
  push(archive: string, repoTag: string): Promise<string>;
  stop(): Promise<void>;
}

/** A CA and a certificate for the guest's and this machine's addresses of the registry, in `dir`. */
async function serverCertificate(dir: string): Promise<void> {
  if (existsSync(join(dir, "server.pem"))) return;
  const o = (args: string[]) => runOk("openssl", args, { cwd: dir, timeoutMs: 30_000 });
  await o(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "30",
    "-subj", "/CN=nodehost-e2e image registry CA", "-keyout", "ca.key", "-out", "ca.pem",
    "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-addext", "subjectKeyIdentifier=hash"]);
  await o(["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", `/CN=${HOST_FROM_GUEST}`,
    "-keyout", "server.key", "-out", "server.csr"]);
  // Docker's daemon is Go: it checks IP addresses against subjectAltName only, never the CN.
  writeFileSync(join(dir, "server.ext"), [
    `subjectAltName=IP:${HOST_FROM_GUEST},IP:127.0.0.1`, "basicConstraints=critical,CA:FALSE", "keyUsage=critical,digitalSignature",
    "extendedKeyUsage=serverAuth", "subjectKeyIdentifier=hash", "authorityKeyIdentifier=keyid,issuer", "",
  ].join("\n"));
  await o(["x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
    "-days", "30", "-extfile", "server.ext", "-out", "server.pem"]);
}

/** One GET over TLS, trusting the registry's CA alone (fetch takes no CA). */
function get(url: string, ca: string, headers: Record<string, string> = {}): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: Buffer }> {
  return new Promise((res, rej) => {
    const req = request(url, { ca, headers, timeout: 10_000 }, (r) => {
      const chunks: Buffer[] = [];
      r.on("data", (c: Buffer) => chunks.push(c));
      r.on("end", () => res({ status: r.statusCode ?? 0, headers: r.headers, body: Buffer.concat(chunks) }));
      r.on("error", rej);
    });
    req.on("timeout", () => req.destroy(new Error(`GET ${url}: no answer in 10 s`)));
    req.on("error", rej);
    req.end();
  });
}

/** The media types a pull asks for: one image's manifest, Docker's or OCI's (what skopeo pushes is Docker's, --format v2s2). */
const MANIFEST_ACCEPT = "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json";

export async function startImageRegistry(dir: string): Promise<ImageRegistry> {
  dir = resolve(dir);
  mkdirSync(join(dir, "storage"), { recursive: true });
  await serverCertificate(dir);
  const caPem = readFileSync(join(dir, "ca.pem"), "utf8");
  // skopeo's --dest-cert-dir takes the *.crt in it as CAs, added to the system's
  // (containers/image pkg/tlsclientconfig, SetupCertificates): the layout of Docker's certs.d.
  const certDir = join(dir, "certs");
  mkdirSync(certDir, { recursive: true });
  writeFileSync(join(certDir, "ca.crt"), caPem);

  const port = await freePort();
  // Keys from Distribution 2.8's docs/configuration.md (/usr/share/doc/docker-registry): no `auth`
  // section is no authentication; delete is off unless enabled. `log.level` leaves the access log
  // (log.accesslog, on by default) in the log: each pull the guest makes shows there.
  writeFileSync(join(dir, "config.yml"), [
    "version: 0.1",
    "log:",
    "  level: warn",
    "storage:",
    "  filesystem:",
    `    rootdirectory: ${join(dir, "storage")}`,
    "  delete:",
    "    enabled: true",
    "http:",
    `  addr: 127.0.0.1:${port}`,
    "  tls:",
    `    certificate: ${join(dir, "server.pem")}`,
    `    key: ${join(dir, "server.key")}`,
    "",
  ].join("\n"));
  const daemon = startDaemon(dir, "image-registry", "docker-registry", ["serve", join(dir, "config.yml")]);
  const base = `https://127.0.0.1:${port}`;
  try {
    // /v2/ answers 200 to a client it lets in (docs/spec/api.md, "API Version Check"): here anyone.
    await waitReady(daemon, async () => (await get(`${base}/v2/`, caPem)).status === 200, 15_000);
  } catch (e) {
    await daemon.stop();
    throw e;
  }

  return {
    hostPort: `127.0.0.1:${port}`,
    guestHost: `${HOST_FROM_GUEST}:${port}`,
    caPem,
    pid: daemon.pid,
    async push(archive, repoTag) {
      // docker-archive:PATH[:REFERENCE]: a colon in the path would be read as a reference.
      if (archive.includes(":")) throw new Error(`push: skopeo would take what follows ':' in ${archive} as an image name`);
      const colon = repoTag.lastIndexOf(":");
      if (colon <= repoTag.lastIndexOf("/")) throw new Error(`push: ${repoTag} has no tag (<repo>:<tag>)`);
      const digestFile = join(dir, `push-${randomUUID()}.digest`);
      // --format v2s2: Docker's schema 2 manifest, as Docker Hub serves its images. Precomputed
      // digests: a layer the registry has already (a variant's) is not uploaded again, whether or
      // not skopeo's blob-info cache knows its compressed digest (that cache, as root:
      // /var/lib/containers/cache/blob-info-cache-v1.boltdb, containers/image pkg/blobinfocache).
      await runOk("skopeo", ["copy", "--format", "v2s2", "--dest-precompute-digests", "--dest-cert-dir", certDir, "--digestfile", digestFile,
        `docker-archive:${resolve(archive)}`, `docker://127.0.0.1:${port}/${repoTag}`], { timeoutMs: 5 * 60_000 });
      const manifestDigest = readFileSync(digestFile, "utf8").trim();
      rmSync(digestFile, { force: true });
      // The config digest is in the manifest, read back by its digest: the image just pushed, even
      // if another push to the tag came after.
      const name = repoTag.slice(0, colon);
      const r = await get(`${base}/v2/${name}/manifests/${manifestDigest}`, caPem, { Accept: MANIFEST_ACCEPT });
      if (r.status !== 200) throw new Error(`push ${repoTag}: manifest ${manifestDigest}: HTTP ${r.status} ${r.body.toString("utf8")}`);
      const got = `sha256:${createHash("sha256").update(r.body).digest("hex")}`;
      if (got !== manifestDigest) throw new Error(`push ${repoTag}: manifest read back is ${got}, skopeo wrote ${manifestDigest}`);
      const digest = (JSON.parse(r.body.toString("utf8")) as { config?: { digest?: string } }).config?.digest;
      if (!digest || !/^sha256:[0-9a-f]{64}$/.test(digest)) throw new Error(`push ${repoTag}: no config digest in manifest ${r.body.toString("utf8")}`);
      return digest;
    },
    stop: () => daemon.stop(),
  };
}

/**
 * Writes a copy of a one-image `docker load` archive (writeDockerArchive's layout) whose image
 * config has `labels` added and/or its entrypoint or environment replaced: a new image (a new config digest, so a
 * new image id) with the same layer bytes, which a registry and Docker store once. The layer is
 * never unpacked: the archive is copied and its manifest and config replaced in place (GNU tar's
 * --delete and --append). Same archive and change, same bytes.
 */
export async function variantArchive(archive: string, out: string, change: { labels?: Record<string, string>; entrypoint?: string[]; env?: string[] }): Promise<void> {
  const member = async (name: string) => (await runOk("tar", ["-xOf", archive, name], { timeoutMs: 5 * 60_000 })).stdout;
  const manifest = JSON.parse(await member("manifest.json")) as { Config: string; RepoTags?: string[]; Layers: string[] }[];
  if (manifest.length !== 1) throw new Error(`variantArchive: ${archive} holds ${manifest.length} images, not one`);
  const oldConfig = manifest[0].Config;
  const image = JSON.parse(await member(oldConfig)) as { config?: { Labels?: Record<string, string> | null; Entrypoint?: string[] | null; Env?: string[] | null } };
  image.config ??= {};
  if (change.labels) image.config.Labels = { ...(image.config.Labels ?? {}), ...change.labels };
  if (change.entrypoint) image.config.Entrypoint = change.entrypoint;
  if (change.env) image.config.Env = change.env;
  const configJson = JSON.stringify(image);
  // The config's file name is its digest, as `docker save` names it (the image id).
  const configName = `${createHash("sha256").update(configJson).digest("hex")}.json`;

  const stage = `${out}.stage`;
  const tmp = `${out}.tmp`;
  rmSync(stage, { recursive: true, force: true });
  mkdirSync(stage, { recursive: true });
  try {
    writeFileSync(join(stage, configName), configJson);
    writeFileSync(join(stage, "manifest.json"), JSON.stringify([{ ...manifest[0], Config: configName }]));
    // A reflink where the filesystem has them: the layer is most of the archive.
    copyFileSync(archive, tmp, constants.COPYFILE_FICLONE);
    await runOk("tar", ["--delete", "-f", tmp, "manifest.json", oldConfig], { timeoutMs: 5 * 60_000 });
    // Owner, mode and date fixed: the appended headers are the same bytes each time.
    await runOk("tar", ["--append", "-f", tmp, "--numeric-owner", "--owner=0", "--group=0", "--mode=0644", "--mtime=2000-01-01",
      "-C", stage, configName, "manifest.json"], { timeoutMs: 60_000 });
    renameSync(tmp, out);
  } finally {
    rmSync(stage, { recursive: true, force: true });
    rmSync(tmp, { force: true });
  }
}
