// The VM suite's log receiver (test/e2e/lib/log-receiver.ts) is what the logs.forward test
// asserts with: it must take RFC 5425 frames however TCP splits them, and refuse anything else.
import * as tls from "node:tls";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { LOG_PEER_NAME, parseRfc5424, splitFrames, startLogReceiver, type LogReceiver } from "../e2e/lib/log-receiver";

const frame = (msg: string) => `${Buffer.byteLength(msg)} ${msg}`;

describe("the VM suite's log receiver", () => {
  let dir: string;
  let r: LogReceiver;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "log-receiver-"));
    r = await startLogReceiver(dir);
  });
  afterAll(async () => {
    await r?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const connect = (opts: tls.ConnectionOptions = {}) => new Promise<tls.TLSSocket>((res, rej) => {
    const s = tls.connect({ host: "127.0.0.1", port: r.port, servername: LOG_PEER_NAME, ca: r.caPem, checkServerIdentity: tls.checkServerIdentity, ...opts }, () => res(s));
    s.once("error", rej);
  });

  test("parses RFC 5424 messages, with structured data, a BOM and none", () => {
    expect(parseRfc5424("<36>1 2026-12-06T23:00:00.1+00:00 host nodehost-e2e - - - mark\n")).toMatchObject({ pri: 36, hostname: "host", app: "nodehost-e2e", msg: "mark" });
    expect(parseRfc5424('<86>1 2026-12-06T23:00:00Z host sshd-session 1234 - [x@1 a="b\\]c"] \uFEFFAccepted publickey')?.msg).toBe("Accepted publickey");
    expect(parseRfc5424("<13>1 2026-12-06T23:00:00Z host app - - -")?.msg).toBe("");
    for (const bad of ["<13>Dec  6 23:00:00 host app: traditional", "<192>1 t h a - - - x", "13>1 t h a - - - x"]) expect(parseRfc5424(bad), bad).toBeUndefined();
  });

  test("splits octet-counted frames and keeps a partial one for later; a line-framed stream is an error", () => {
    const two = Buffer.from(frame("<13>1 t h a - - - é one") + frame("<13>1 t h a - - - two") + "21 <13>1 t h");
    const { frames, rest, error } = splitFrames(two);
    expect(frames.map((f) => f.toString())).toEqual(["<13>1 t h a - - - é one", "<13>1 t h a - - - two"]);
    expect(rest.toString()).toBe("21 <13>1 t h");
    expect(error).toBeUndefined();
    expect(splitFrames(Buffer.from("<13>1 t h a - - - line\n")).error).toMatch(/not octet-counted/);
  });

  test("takes frames over TLS however they are split, under the name it claims", async () => {
    const s = await connect();
    const text = frame("<36>1 2026-12-06T23:00:00Z vm nodehost-e2e - - - split-mark") + frame("<38>1 2026-12-06T23:00:00Z vm other - - - next");
    s.write(text.slice(0, 7));
    await new Promise((res) => setTimeout(res, 50));
    s.write(text.slice(7));
    const got = await r.waitFor((m) => m.msg === "next", 5_000);
    expect(got.pri).toBe(38);
    expect(r.messages.find((m) => m.msg === "split-mark")?.app).toBe("nodehost-e2e");
    expect(r.errors).toEqual([]);
    s.end();
    // A client that checks for another name refuses the receiver.
    await expect(connect({ servername: "logs.other.test", checkServerIdentity: (h, c) => tls.checkServerIdentity("logs.other.test", c) })).rejects.toThrow(/altnames|does not match/i);
  });

  test("a line-framed message is recorded as an error, and waitFor gives up in time", async () => {
    const s = await connect();
    s.write("<13>1 2026-12-06T23:00:00Z vm app - - - not counted\n");
    await expect(r.waitFor((m) => m.msg === "not counted", 1_000)).rejects.toThrow(/no such log message within 1000 ms \(\d+ received, by app: .*nodehost-e2e 1/);
    expect(r.errors.some((e) => /not octet-counted/.test(e))).toBe(true);
    s.destroy();
  });
});
