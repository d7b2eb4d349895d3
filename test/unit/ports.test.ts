// Loopback ports the tests hand to their servers: never the same one twice in a process. The
// kernel may offer a just-closed port again, and a `.ci/run` once gave a rebuild's SSH forward the
// port its Pebble had been given a moment before (QEMU: "Could not set up host forwarding rule").
import * as net from "net";
import { describe, expect, test } from "vitest";
import { freePort as e2ePort } from "../e2e/lib/vm";
import { freePort as scriptsPort } from "../scripts/helpers";

const bindable = (port: number) => new Promise<boolean>((res) => {
  const s = net.createServer().once("error", () => res(false)).listen(port, "127.0.0.1", () => s.close(() => res(true)));
});

describe("freePort", () => {
  // 400 draws from Linux's ~28,000 ephemeral ports repeat one with a probability of about 94%
  // when nothing prevents it (the birthday bound), so dropping the check fails this test.
  test.each([["the VM suite's", e2ePort], ["the tool tests'", scriptsPort]])("%s never hands out a port twice, and each one binds", async (_name, freePort) => {
    const ports: number[] = [];
    for (let i = 0; i < 400; i++) ports.push(await freePort());
    expect(new Set(ports).size).toBe(ports.length);
    expect(await bindable(ports[ports.length - 1])).toBe(true);
  });
});
