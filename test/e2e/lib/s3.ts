// An S3-compatible server (s3rver, from npm) playing the Spaces bucket on loopback, and the
// list/get/put helpers tests assert with. The guest reaches it at https://10.0.2.2:<port>: over
// TLS, as Spaces is (pgBackRest speaks S3 over HTTPS only), with a certificate from a CA made for
// the world, which the stack is given as backup.endpointCaPem (Spaces' is a public CA's instead).
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { request } from "node:https";
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
  /** The CA the server's certificate is from (PEM). */
  caPem: string;
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

/**
 * A CA and a certificate for the guest's and this machine's addresses of the server, kept in `dir`
 * (a detached world's server outlives the process that made them). pgBackRest checks IP addresses
 * in subjectAltName since 2.46 (pgbackrest PR #2047); the guest's is Debian 13's 2.55.
 */
function serverCertificate(dir: string): { key: string; cert: string; ca: string } {
  const f = (n: string) => join(dir, n);
  if (!existsSync(f("s3.pem"))) {
    const ssl = (...args: string[]) => execFileSync("openssl", args, { cwd: dir, stdio: ["ignore", "ignore", "pipe"] });
    // The extensions a strict verifier wants (Python 3.13's ssl, which s3cmd on Debian 13 runs
    // on, sets VERIFY_X509_STRICT: a CA without keyUsage, or a leaf without an authority key id,
    // is refused), as a real CA's certificates have them.
    ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "30", "-subj", "/CN=nodehost e2e S3 CA",
      "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-addext", "subjectKeyIdentifier=hash");
    ssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "s3.key", "-out", "s3.csr", "-subj", `/CN=${HOST_FROM_GUEST}`);
    writeFileSync(f("s3.ext"), [
      `subjectAltName=IP:${HOST_FROM_GUEST},IP:127.0.0.1`, "basicConstraints=critical,CA:FALSE", "keyUsage=critical,digitalSignature,keyEncipherment",
      "extendedKeyUsage=serverAuth", "subjectKeyIdentifier=hash", "authorityKeyIdentifier=keyid,issuer", "",
    ].join("\n"));
    ssl("x509", "-req", "-in", "s3.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", "s3.pem", "-days", "30", "-extfile", "s3.ext");
  }
  return { key: f("s3.key"), cert: f("s3.pem"), ca: readFileSync(f("ca.pem"), "utf8") };
}

/** One request to the server over TLS, trusting its CA alone (fetch takes no CA). */
function call(url: string, ca: string, method = "GET", body?: Buffer | string): Promise<{ ok: boolean; status: number; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method, ca, timeout: 60_000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve({ ok: res.statusCode! >= 200 && res.statusCode! < 300, status: res.statusCode!, body: Buffer.concat(chunks) }));
      res.on("error", reject);
    });
    req.on("timeout", () => req.destroy(new Error(`S3 ${method} ${url}: no answer in 60 s`)));
    req.on("error", reject);
    req.end(body);
  });
}

export async function startS3(opts: { dir: string; bucket: string; detached?: boolean }): Promise<S3Server> {
  mkdirSync(join(opts.dir, "data"), { recursive: true });
  const tls = serverCertificate(opts.dir);
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
      "--silent", "--no-vhost-buckets", "--configure-bucket", opts.bucket, "--key", tls.key, "--cert", tls.cert,
      // ListObjectsV2's continuation token (any listing past 1,000 keys: pgBackRest's backups
      // and the suite's list()) is DES-encrypted by s3rver (lib/controllers/bucket.js:13-26,
      // 3.7.1), a cipher only OpenSSL 3's legacy provider has: without it s3rver answers 500.
    ], { detached: opts.detached, env: { NODE_OPTIONS: "--openssl-legacy-provider" } });
    writeFileSync(statePath, JSON.stringify({ port }));
  }
  const base = `https://127.0.0.1:${port}`;
  const d = daemon;
  const fetchS3 = (u: string, init: { method?: string; body?: Buffer | string } = {}) => call(u, tls.ca, init.method, init.body);
  await waitReady(d, async () => (await fetchS3(`${base}/${opts.bucket}?list-type=2`)).ok);

  const url = (key: string) => `${base}/${opts.bucket}/${key.split("/").map(encodeURIComponent).join("/")}`;
  const must = async (r: { ok: boolean; status: number; body: Buffer }, what: string) => {
    if (!r.ok) throw new Error(`S3 ${what}: HTTP ${r.status} ${r.body.toString("utf8")}`);
    return r;
  };
  return {
    endpoint: `https://${HOST_FROM_GUEST}:${port}`,
    caPem: tls.ca,
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
        const xml = (await must(await fetchS3(`${base}/${opts.bucket}?${q}`), `list ${prefix}`)).body.toString("utf8");
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
      return (await must(await fetchS3(url(key)), `get ${key}`)).body;
    },
    async put(key, body) {
      await must(await fetchS3(url(key), { method: "PUT", body }), `put ${key}`);
    },
    async remove(key) {
      await must(await fetchS3(url(key), { method: "DELETE" }), `delete ${key}`);
    },
    stop: () => d.stop(),
  };
}

function decodeXml(s: string): string {
  return s.replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&quot;/g, '"').replace(/&apos;/g, "'").replace(/&amp;/g, "&");
}
