// The stack's log receiver (logs.forward) in the test world: syslog over TLS (RFC 5425) on this
// machine's loopback, which the guest reaches at 10.0.2.2:<port>. Its certificate comes from a CA
// of its own and names LOG_PEER_NAME, so the host's rsyslog must check both to connect. It keeps
// every message in memory for the tests, and strictly: a frame that is not octet-counted, or a
// message that is not RFC 5424, is recorded as an error the tests assert empty.
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import * as tls from "node:tls";
import { makeListenerCert } from "./pebble";

/** The name on the receiver's certificate: the stack's logs.forward.peerName in the VM suite. */
export const LOG_PEER_NAME = "logs.nodehost.test";
/** Messages kept; more than the whole VM suite sends, and a bound all the same. */
const MAX_MESSAGES = 200_000;

export interface SyslogMessage {
  pri: number;
  timestamp: string;
  hostname: string;
  app: string;
  msg: string;
  /** The whole message as it arrived (without its length prefix). */
  raw: string;
}

export interface LogReceiver {
  port: number;
  /** The CA the receiver's certificate is issued by: the stack's logs.forward.caPem. */
  caPem: string;
  peerName: string;
  messages: SyslogMessage[];
  /** Framing or format errors, and TLS handshakes that failed (a client that did not trust us). */
  errors: string[];
  /** The first message (already received or arriving within `timeoutMs`) that `pred` accepts. */
  waitFor(pred: (m: SyslogMessage) => boolean, timeoutMs: number): Promise<SyslogMessage>;
  stop(): Promise<void>;
}

// RFC 5424 section 6: <PRI>VERSION SP TIMESTAMP SP HOSTNAME SP APP-NAME SP PROCID SP MSGID SP SD [SP MSG]
const RFC5424 = /^<(\d{1,3})>1 (\S+) (\S+) (\S+) (\S+) (\S+) (-|(?:\[(?:[^\]\\]|\\.)*\])+)(?: ([\s\S]*))?$/;

export function parseRfc5424(raw: string): SyslogMessage | undefined {
  const m = RFC5424.exec(raw.replace(/\n$/, ""));
  if (!m || Number(m[1]) > 191) return undefined;
  // A message may start with a UTF-8 byte order mark (RFC 5424 section 6.4).
  return { pri: Number(m[1]), timestamp: m[2], hostname: m[3], app: m[4], msg: (m[8] ?? "").replace(/^\uFEFF/, ""), raw };
}

/**
 * Splits octet-counted frames (RFC 6587 section 3.4.1, as RFC 5425 section 4.3 has them):
 * `MSG-LEN SP SYSLOG-MSG`, MSG-LEN counting bytes. Returns the frames and what is left over.
 */
export function splitFrames(buf: Buffer): { frames: Buffer[]; rest: Buffer; error?: string } {
  const frames: Buffer[] = [];
  let at = 0;
  for (;;) {
    const sp = buf.indexOf(0x20, at);
    if (sp === -1) {
      if (buf.length - at > 10 || !/^[0-9]*$/.test(buf.subarray(at).toString("latin1"))) return { frames, rest: Buffer.alloc(0), error: "not octet-counted" };
      return { frames, rest: buf.subarray(at) };
    }
    const len = buf.subarray(at, sp).toString("latin1");
    if (!/^[1-9][0-9]{0,8}$/.test(len)) return { frames, rest: Buffer.alloc(0), error: `not octet-counted: ${JSON.stringify(len.slice(0, 20))}` };
    const end = sp + 1 + Number(len);
    if (end > buf.length) return { frames, rest: buf.subarray(at) };
    frames.push(buf.subarray(sp + 1, end));
    at = end;
  }
}

/** Starts a receiver in `dir` (a dir used before keeps its CA and certificate), on `port` or any free one. */
export async function startLogReceiver(dir: string, opts: { port?: number } = {}): Promise<LogReceiver> {
  mkdirSync(dir, { recursive: true });
  if (!existsSync(join(dir, "cert.pem"))) await makeListenerCert(dir, { cn: LOG_PEER_NAME, names: [LOG_PEER_NAME] });
  const messages: SyslogMessage[] = [];
  const errors: string[] = [];
  const waiters = new Set<() => void>();
  const sockets = new Set<tls.TLSSocket>();
  const server = tls.createServer({ key: readFileSync(join(dir, "key.pem")), cert: readFileSync(join(dir, "cert.pem")), minVersion: "TLSv1.2" }, (socket) => {
    sockets.add(socket);
    let pending: Buffer = Buffer.alloc(0);
    socket.on("data", (d: Buffer) => {
      const { frames, rest, error } = splitFrames(Buffer.concat([pending, d]));
      pending = rest;
      if (error) {
        errors.push(error);
        socket.destroy();
      }
      for (const f of frames) {
        const m = parseRfc5424(f.toString("utf8"));
        if (!m) errors.push(`not RFC 5424: ${JSON.stringify(f.toString("utf8").slice(0, 80))}`);
        else if (messages.length < MAX_MESSAGES) messages.push(m);
      }
      if (frames.length) for (const w of waiters) w();
    });
    socket.on("error", () => socket.destroy());
    socket.on("close", () => sockets.delete(socket));
  });
  server.on("tlsClientError", (e) => errors.push(`TLS: ${e.message}`));
  const port = await new Promise<number>((res, rej) => {
    server.once("error", rej);
    server.listen(opts.port ?? 0, "127.0.0.1", () => res((server.address() as { port: number }).port));
  });
  return {
    port,
    caPem: readFileSync(join(dir, "ca.pem"), "utf8"),
    peerName: LOG_PEER_NAME,
    messages,
    errors,
    waitFor(pred, timeoutMs) {
      return new Promise((resolve, reject) => {
        let seen = 0;
        const check = () => {
          for (; seen < messages.length; seen++) {
            if (pred(messages[seen])) {
              done();
              resolve(messages[seen]);
              return;
            }
          }
        };
        const timer = setTimeout(() => {
          done();
          const apps = new Map<string, number>();
          for (const m of messages) apps.set(m.app, (apps.get(m.app) ?? 0) + 1);
          reject(new Error(`no such log message within ${timeoutMs} ms (${messages.length} received, by app: ${[...apps].map(([a, n]) => `${a} ${n}`).join(", ")})`));
        }, timeoutMs);
        const done = () => {
          clearTimeout(timer);
          waiters.delete(check);
        };
        waiters.add(check);
        check();
      });
    },
    stop: () => new Promise<void>((res) => {
      for (const s of sockets) s.destroy();
      server.close(() => res());
    }),
  };
}
