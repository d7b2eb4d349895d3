// HTTP(S) requests from this machine to a VM's forwarded ports, as a browser on the site's name
// would make them (SNI and Host set to the name, certificate checked against the test CA).
import { request as httpRequest } from "node:http";
import { request as httpsRequest } from "node:https";
import type { PeerCertificate, TLSSocket } from "node:tls";

export interface WebResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
  /** HTTPS only: the certificate the server presented (already verified against `ca`). */
  cert?: PeerCertificate;
}

export interface WebRequest {
  name: string;
  port: number;
  path: string;
  https?: boolean;
  ca?: string;
  method?: string;
  auth?: { user: string; password: string };
  timeoutMs?: number;
}

export function web(r: WebRequest): Promise<WebResponse> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { host: r.name };
    if (r.auth) headers.authorization = `Basic ${Buffer.from(`${r.auth.user}:${r.auth.password}`).toString("base64")}`;
    const opts = { host: "127.0.0.1", port: r.port, path: r.path, method: r.method ?? "GET", headers, timeout: r.timeoutMs ?? 20_000 };
    const req = r.https
      ? httpsRequest({ ...opts, servername: r.name, ca: r.ca, rejectUnauthorized: true, agent: false })
      : httpRequest({ ...opts, agent: false });
    req.on("response", (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (d: string) => (body += d));
      res.on("end", () => {
        const cert = r.https ? (res.socket as TLSSocket).getPeerCertificate?.() : undefined;
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body, cert });
      });
    });
    req.on("timeout", () => req.destroy(new Error(`timeout after ${r.timeoutMs ?? 20_000} ms`)));
    req.on("error", reject);
    req.end();
  });
}

/** Polls until `check` passes on a response; returns the last response or throws with it. */
export async function webUntil(r: WebRequest, check: (res: WebResponse) => boolean, timeoutMs: number): Promise<WebResponse> {
  const deadline = Date.now() + timeoutMs;
  let last: WebResponse | Error = new Error("no request made");
  while (Date.now() < deadline) {
    try {
      last = await web(r);
      if (check(last)) return last;
    } catch (e) {
      last = e as Error;
    }
    await new Promise((res) => setTimeout(res, 3000));
  }
  throw new Error(`${r.https ? "https" : "http"}://${r.name}${r.path} not as expected after ${timeoutMs} ms: ${last instanceof Error ? last.message : `${last.status} ${last.body.slice(0, 300)}`}`);
}

/**
 * A client polling `r` every `everyMs` while `during` runs, as a user's browser or an uptime check
 * would: returns what `during` returned and every answer that was not a 200 (status, or the
 * error), with the count of requests made. Bounded: at most `maxRequests`, each with its own
 * timeout, and it stops when `during` settles.
 */
export async function pollDuring<T>(r: WebRequest, during: () => Promise<T>, opts: { everyMs?: number; maxRequests?: number } = {}):
  Promise<{ result: T | Error; requests: number; failed: string[] }> {
  const everyMs = opts.everyMs ?? 250, maxRequests = opts.maxRequests ?? 20_000;
  let stop = false, requests = 0;
  const failed: string[] = [];
  const loop = (async () => {
    while (!stop && requests < maxRequests) {
      requests++;
      const at = new Date().toISOString();
      try {
        const res = await web({ ...r, timeoutMs: r.timeoutMs ?? 10_000 });
        if (res.status !== 200) failed.push(`${at} ${res.status}`);
      } catch (e) {
        failed.push(`${at} ${(e as Error).message}`);
      }
      await new Promise((res) => setTimeout(res, everyMs));
    }
  })();
  const result = await during().catch((e: unknown) => (e instanceof Error ? e : new Error(String(e))));
  stop = true;
  await loop;
  return { result, requests, failed };
}
