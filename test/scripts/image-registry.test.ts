// test/e2e/lib/image-registry.ts natively: the registry the VM suite's Docker pulls from (Debian's
// docker-registry over TLS, fed by skopeo), with a tiny synthetic image and variants of it.
import { createHash } from "node:crypto";
import { request } from "node:https";
import { gunzipSync } from "node:zlib";
import * as fs from "fs";
import * as path from "path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { pidAlive } from "../e2e/lib/exec";
import { startImageRegistry, variantArchive, type ImageRegistry } from "../e2e/lib/image-registry";
import { writeDockerArchive } from "../e2e/lib/service-images";
import { missing, run, tmpDir } from "./helpers";

const need = missing("docker-registry", "skopeo", "openssl", "tar");
if (need.length) console.warn(`image registry tests SKIPPED: missing ${need.join(", ")} (apt-get install docker-registry skopeo)`);

const sha256 = (b: Buffer | string) => createHash("sha256").update(b).digest("hex");
/** A member of a tar archive, as bytes. */
const member = (archive: string, name: string) => {
  const r = run("tar", ["-xOf", archive, name]);
  if (r.status !== 0) throw new Error(`tar -xOf ${archive} ${name}: ${r.stderr}`);
  return Buffer.from(r.stdout, "utf8");
};
const configOf = (archive: string) => member(archive, (JSON.parse(member(archive, "manifest.json").toString()) as { Config: string }[])[0].Config);

function get(url: string, ca: string, accept?: string): Promise<{ status: number; body: Buffer }> {
  return new Promise((res, rej) => {
    const req = request(url, { ca, timeout: 10_000, headers: accept ? { Accept: accept } : {} }, (r) => {
      const chunks: Buffer[] = [];
      r.on("data", (c: Buffer) => chunks.push(c));
      r.on("end", () => res({ status: r.statusCode ?? 0, body: Buffer.concat(chunks) }));
    });
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", rej);
    req.end();
  });
}

/** A manifest as served, with its digest (of the bytes served: what the registry stores it under). */
interface Manifest { mediaType: string; config: { digest: string }; layers: { mediaType: string; digest: string; size: number }[]; digest: string }

describe.skipIf(need.length > 0)("image registry: docker load archives pushed to a loopback registry", () => {
  const dir = tmpDir("nodehost-image-registry-");
  const archive = path.join(dir, "app.tar");
  let reg: ImageRegistry;
  let stopped = false;
  const manifest = async (ref: string): Promise<Manifest> => {
    const r = await get(`https://${reg.hostPort}/v2/e2e/app/manifests/${ref}`, reg.caPem,
      "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json");
    expect(r.status).toBe(200);
    return { ...(JSON.parse(r.body.toString()) as Manifest), digest: `sha256:${sha256(r.body)}` };
  };
  const blob = async (digest: string) => {
    const r = await get(`https://${reg.hostPort}/v2/e2e/app/blobs/${digest}`, reg.caPem);
    expect(r.status).toBe(200);
    return r.body;
  };
  /** Every blob the registry stores (layers, configs, manifests), by digest: storage/docker/registry/v2/blobs/sha256/<ab>/<hex>/data. */
  const storedBlobs = () => {
    const root = path.join(dir, "registry", "storage", "docker", "registry", "v2", "blobs", "sha256");
    return fs.readdirSync(root).flatMap((ab) => fs.readdirSync(path.join(root, ab))).map((h) => `sha256:${h}`).sort();
  };
  const first: { digest?: string; manifest?: Manifest } = {};

  beforeAll(async () => {
    const rootfs = path.join(dir, "rootfs");
    fs.mkdirSync(path.join(rootfs, "usr/local/bin"), { recursive: true });
    fs.mkdirSync(path.join(rootfs, "etc"));
    fs.writeFileSync(path.join(rootfs, "etc/os-release"), 'ID=nodehost-e2e\n');
    fs.writeFileSync(path.join(rootfs, "usr/local/bin/app"), "#!/bin/sh\necho hello\n", { mode: 0o755 });
    fs.writeFileSync(path.join(rootfs, "data.bin"), Buffer.alloc(64 * 1024, 7));
    await writeDockerArchive(rootfs, archive, "e2e/app:1", {
      Env: ["PATH=/usr/local/bin:/usr/bin:/bin"], Entrypoint: ["/usr/local/bin/app"], Cmd: [], ExposedPorts: {}, Volumes: {},
    });
    reg = await startImageRegistry(path.join(dir, "registry"));
  }, 60_000);

  afterAll(async () => {
    if (reg && !stopped) await reg.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it("pushes an archive and returns its config digest, which is the image id", async () => {
    expect(reg.hostPort).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(reg.guestHost).toBe(`10.0.2.2:${reg.hostPort.split(":")[1]}`);
    first.digest = await reg.push(archive, "e2e/app:1");
    expect(first.digest).toBe(`sha256:${sha256(configOf(archive))}`);
    first.manifest = await manifest("1");
    expect(first.manifest.mediaType).toBe("application/vnd.docker.distribution.manifest.v2+json");
    expect(first.manifest.config.digest).toBe(first.digest);
    // skopeo compresses the archive's plain tar layer on the way to a registry, as Docker Hub's are.
    expect(first.manifest.layers.map((l) => l.mediaType)).toEqual(["application/vnd.docker.image.rootfs.diff.tar.gzip"]);
    // What the guest's Docker checks on pull: the layer it gets unpacks to the config's diff_id.
    const config = JSON.parse((await blob(first.digest)).toString()) as { rootfs: { diff_ids: string[] } };
    expect(`sha256:${sha256(gunzipSync(await blob(first.manifest.layers[0].digest)))}`).toBe(config.rootfs.diff_ids[0]);
  }, 120_000);

  it("a variant with a label is a new image over the same layer, stored once", async () => {
    const labelled = path.join(dir, "labelled.tar");
    await variantArchive(archive, labelled, { labels: { "org.example.variant": "labelled" } });
    const config = JSON.parse(configOf(labelled).toString()) as { config: { Labels: Record<string, string>; Entrypoint: string[] } };
    expect(config.config.Labels).toEqual({ "org.example.variant": "labelled" });
    expect(config.config.Entrypoint).toEqual(["/usr/local/bin/app"]);
    const digest = await reg.push(labelled, "e2e/app:1");
    expect(digest).not.toBe(first.digest);
    expect(digest).toBe(`sha256:${sha256(configOf(labelled))}`);
    const m = await manifest("1");
    expect(m.config.digest).toBe(digest);
    expect(m.layers.map((l) => l.digest)).toEqual(first.manifest!.layers.map((l) => l.digest));
    // One layer, two configs, two manifests: the layer is stored once,
    expect(storedBlobs()).toEqual([m.layers[0].digest, first.digest!, digest, first.manifest!.digest, m.digest].sort());
    // and was sent once: the registry's access log (startDaemon's <name>.log) has one upload of it.
    const log = fs.readFileSync(path.join(dir, "registry", "image-registry.log"), "utf8");
    const uploads = log.split("\n").filter((l) => /"PUT \/v2\/e2e\/app\/blobs\/uploads\//.test(l) && l.includes(`digest=${encodeURIComponent(m.layers[0].digest)}`));
    expect(uploads).toHaveLength(1);
  }, 120_000);

  it("a variant with another entrypoint: its own digest, the same one each time it is made", async () => {
    const a = path.join(dir, "false-a.tar");
    const b = path.join(dir, "false-b.tar");
    await variantArchive(archive, a, { entrypoint: ["/bin/false"] });
    await variantArchive(archive, b, { entrypoint: ["/bin/false"] });
    expect(sha256(fs.readFileSync(a))).toBe(sha256(fs.readFileSync(b)));
    const digest = await reg.push(a, "e2e/app:false");
    expect(digest).not.toBe(first.digest);
    expect(digest).toBe(`sha256:${sha256(configOf(a))}`);
    const config = JSON.parse((await blob(digest)).toString()) as { config: { Entrypoint: string[]; Labels?: Record<string, string> } };
    expect(config.config.Entrypoint).toEqual(["/bin/false"]);
    expect(config.config.Labels).toBeUndefined();
    expect(await reg.push(b, "e2e/app:false")).toBe(digest);
  }, 120_000);

  it("stop ends the registry's process", async () => {
    await reg.stop();
    stopped = true;
    expect(pidAlive(reg.pid)).toBe(false);
    await expect(get(`https://${reg.hostPort}/v2/`, reg.caPem)).rejects.toThrow(/ECONNREFUSED/);
  }, 30_000);
});
