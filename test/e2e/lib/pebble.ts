// Pebble (Debian package) as the ACME CA, with pebble-challtestsrv answering every DNS name
// with 127.0.0.1, so HTTP-01 validation reaches the VM through its forwarded port 80.
import { createSocket } from "node:dgram";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { request } from "node:https";
import { join } from "node:path";
import { runOk } from "./exec";
import { findDaemon, startDaemon, waitReady, type Daemon } from "./daemon";
import { freePort } from "./vm";

/** How the guest reaches the host's loopback under QEMU user networking (slirp). */
export const HOST_FROM_GUEST = "10.0.2.2";

export interface Pebble {
  /** The ACME directory as the guest sees it. */
  directoryUrl: string;
  /** The same directory from this machine. */
  hostDirectoryUrl: string;
  /** CA of Pebble's listener + Pebble's issuing root: what the guest's certbot and curl trust. */
  acmeCaPem: string;
  listenerCaPem: string;
  issuerRootPem: string;
  httpPort: number;
  port: number;
  stop(): Promise<void>;
}

async function freeUdpTcpPort(): Promise<number> {
  for (;;) {
    const port = await freePort();
    const ok = await new Promise<boolean>((res) => {
      const s = createSocket("udp4");
      s.once("error", () => res(false));
      s.bind(port, "127.0.0.1", () => s.close(() => res(true)));
    });
    if (ok) return port;
  }
}

/**
 * A CA (ca.pem) and a listener certificate (cert.pem, key.pem) in `dir`, valid for 10.0.2.2,
 * 127.0.0.1, localhost and `names`.
 */
export async function makeListenerCert(dir: string, opts: { cn?: string; names?: string[] } = {}): Promise<void> {
  const o = (args: string[]) => runOk("openssl", args, { cwd: dir });
  await o(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "3650",
    "-subj", "/CN=nodehost-e2e listener CA", "-keyout", "ca.key", "-out", "ca.pem",
    "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
  await o(["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", `/CN=${opts.cn ?? "pebble"}`,
    "-keyout", "key.pem", "-out", "cert.csr"]);
  const dns = ["localhost", ...(opts.names ?? [])].map((n) => `DNS:${n}`).join(",");
  writeFileSync(join(dir, "san.ext"),
    `subjectAltName=IP:${HOST_FROM_GUEST},IP:127.0.0.1,${dns}\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n`);
  await o(["x509", "-req", "-in", "cert.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
    "-days", "3650", "-extfile", "san.ext", "-out", "cert.pem"]);
}

function httpsGet(url: string, ca: string): Promise<{ status: number; body: string }> {
  return new Promise((res, rej) => {
    const req = request(url, { ca, timeout: 5000 }, (r) => {
      let body = "";
      r.on("data", (d) => (body += d));
      r.on("end", () => res({ status: r.statusCode ?? 0, body }));
    });
    req.on("error", rej);
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.end();
  });
}

interface PebbleState { port: number; mgmtPort: number; dnsPort: number; httpPort: number }

/**
 * Starts Pebble and its DNS in `dir` (or finds the ones an earlier process left running there).
 * `httpPort` is the host port forwarded to the guest's 80: Pebble connects there to validate.
 */
export async function startPebble(opts: { dir: string; httpPort: number; detached?: boolean }): Promise<Pebble> {
  const { dir } = opts;
  mkdirSync(dir, { recursive: true });
  const statePath = join(dir, "pebble.json");
  let state: PebbleState;
  let daemons: Daemon[];
  const running = [findDaemon(dir, "pebble"), findDaemon(dir, "challtestsrv")];
  if (running[0] && running[1]) {
    state = JSON.parse(readFileSync(statePath, "utf8"));
    if (state.httpPort !== opts.httpPort) throw new Error(`Pebble in ${dir} validates on port ${state.httpPort}, not ${opts.httpPort}`);
    daemons = running as Daemon[];
  } else {
    await Promise.all(running.map((d) => d?.stop()));
    await makeListenerCert(dir);
    state = { port: await freePort(), mgmtPort: await freePort(), dnsPort: await freeUdpTcpPort(), httpPort: opts.httpPort };
    const mgmtDnsPort = await freePort();
    writeFileSync(join(dir, "pebble-config.json"), JSON.stringify({
      pebble: {
        listenAddress: `127.0.0.1:${state.port}`,
        managementListenAddress: `127.0.0.1:${state.mgmtPort}`,
        certificate: join(dir, "cert.pem"),
        privateKey: join(dir, "key.pem"),
        httpPort: opts.httpPort,
        tlsPort: 5001,
        ocspResponderURL: "",
        externalAccountBindingRequired: false,
      },
    }, null, 2));
    const dns = startDaemon(dir, "challtestsrv", "pebble-challtestsrv", [
      "-dns01", `127.0.0.1:${state.dnsPort}`, "-http01", "", "-https01", "", "-tlsalpn01", "",
      "-management", `127.0.0.1:${mgmtDnsPort}`, "-defaultIPv4", "127.0.0.1", "-defaultIPv6", "",
    ], { detached: opts.detached });
    const pebble = startDaemon(dir, "pebble", "pebble", [
      "-config", join(dir, "pebble-config.json"), "-dnsserver", `127.0.0.1:${state.dnsPort}`,
    ], {
      detached: opts.detached,
      // No random 0-15 s validation delay, no injected bad nonces: speed and determinism, not chaos.
      env: { PEBBLE_VA_NOSLEEP: "1", PEBBLE_WFE_NONCEREJECT: "0" },
    });
    daemons = [dns, pebble];
    writeFileSync(statePath, JSON.stringify(state));
  }
  const listenerCaPem = readFileSync(join(dir, "ca.pem"), "utf8");
  const pebbleD = daemons.find((d) => d.name === "pebble")!;
  await waitReady(pebbleD, async () => (await httpsGet(`https://127.0.0.1:${state.port}/dir`, listenerCaPem)).status === 200);
  let issuerRootPem = "";
  await waitReady(pebbleD, async () => {
    const r = await httpsGet(`https://127.0.0.1:${state.mgmtPort}/roots/0`, listenerCaPem);
    issuerRootPem = r.body;
    return r.status === 200 && r.body.includes("BEGIN CERTIFICATE");
  });
  return {
    directoryUrl: `https://${HOST_FROM_GUEST}:${state.port}/dir`,
    hostDirectoryUrl: `https://127.0.0.1:${state.port}/dir`,
    acmeCaPem: `${listenerCaPem.trim()}\n${issuerRootPem.trim()}\n`,
    listenerCaPem,
    issuerRootPem,
    httpPort: state.httpPort,
    port: state.port,
    async stop() {
      await Promise.all(daemons.map((d) => d.stop()));
    },
  };
}
