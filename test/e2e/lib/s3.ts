// An S3-compatible server (s3rver, from npm) playing the Spaces bucket on loopback, and the
// list/get/put helpers tests assert with. The guest reaches it at http://10.0.2.2:<port>.
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { findDaemon, startDaemon, waitReady, type Daemon } from "./daemon";
import { HOST_FROM_GUEST } from "./pebble";
import { freePort } from "./vm";
import { repoRoot } from "./paths";

/** s3rver accepts exactly this key pair (it has no user management). */
export const S3_ACCESS_KEY = "S3RVER";
export const S3_SECRET_KEY = "S3RVER";

export interface S3Server {
  /** Endpoint as the guest sees it (path-style). */
  endpoint: string;
  hostEndpoint: string;
  bucket: string;
  region: string;
  accessKey: string;
  secretKey: string;
  list(prefix?: string): Promise<{ key: string; size: number; lastModified: string }[]>;
  get(key: string): Promise<Buffer>;
  put(key: string, body: Buffer | string): Promise<void>;
  remove(key: string): Promise<void>;
  stop(): Promise<void>;
}

export async function startS3(opts: { dir: string; bucket: string; detached?: boolean }): Promise<S3Server> {
  mkdirSync(join(opts.dir, "data"), { recursive: true });
  const statePath = join(opts.dir, "s3.json");
  let daemon: Daemon | undefined = findDaemon(opts.dir, "s3rver");
  let port: number;
  if (daemon) {
    port = (JSON.parse(readFileSync(statePath, "utf8")) as { port: number }).port;
  } else {
    port = await freePort();
    daemon = startDaemon(opts.dir, "s3rver", process.execPath, [
      join(repoRoot, "node_modules", "s3rver", "bin", "s3rver.js"),
      "--directory", join(opts.dir, "data"), "--address", "127.0.0.1", "--port", String(port),
      "--silent", "--no-vhost-buckets", "--configure-bucket", opts.bucket,
    ], { detached: opts.detached });
    writeFileSync(statePath, JSON.stringify({ port }));
  }
  const base = `http://127.0.0.1:${port}`;
  const d = daemon;
  await waitReady(d, async () => (await fetch(`${base}/${opts.bucket}?list-type=2`)).ok);

  const url = (key: string) => `${base}/${opts.bucket}/${key.split("/").map(encodeURIComponent).join("/")}`;
  const must = async (r: Response, what: string) => {
    if (!r.ok) throw new Error(`S3 ${what}: HTTP ${r.status} ${await r.text()}`);
    return r;
  };
  return {
    endpoint: `http://${HOST_FROM_GUEST}:${port}`,
    hostEndpoint: base,
    bucket: opts.bucket,
    region: "us-east-1",
    accessKey: S3_ACCESS_KEY,
    secretKey: S3_SECRET_KEY,
    async list(prefix = "") {
      const out: { key: string; size: number; lastModified: string }[] = [];
      let token = "";
      for (;;) {
        const q = new URLSearchParams({ "list-type": "2", prefix, ...(token ? { "continuation-token": token } : {}) });
        const xml = await (await must(await fetch(`${base}/${opts.bucket}?${q}`), `list ${prefix}`)).text();
        for (const m of xml.matchAll(/<Contents>([\s\S]*?)<\/Contents>/g)) {
          const field = (n: string) => (m[1].match(new RegExp(`<${n}>([\\s\\S]*?)</${n}>`)) ?? [])[1] ?? "";
          out.push({ key: decodeXml(field("Key")), size: Number(field("Size")), lastModified: field("LastModified") });
        }
        const next = (xml.match(/<NextContinuationToken>([\s\S]*?)<\/NextContinuationToken>/) ?? [])[1];
        if (!next || !/<IsTruncated>true<\/IsTruncated>/.test(xml)) return out;
        token = decodeXml(next);
      }
    },
    async get(key) {
      return Buffer.from(await (await must(await fetch(url(key)), `get ${key}`)).arrayBuffer());
    },
    async put(key, body) {
      await must(await fetch(url(key), { method: "PUT", body: typeof body === "string" ? body : new Uint8Array(body) }), `put ${key}`);
    },
    async remove(key) {
      await must(await fetch(url(key), { method: "DELETE" }), `delete ${key}`);
    },
    stop: () => d.stop(),
  };
}

function decodeXml(s: string): string {
  return s.replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&quot;/g, '"').replace(/&apos;/g, "'").replace(/&amp;/g, "&");
}
