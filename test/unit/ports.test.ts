// Loopback ports the tests hand to their servers: never the same one twice in a process. The
// kernel may offer a just-closed port again, and a `.ci/run` once gave a rebuild's SSH forward the
// port its Pebble had been given a moment before (QEMU: "Could not set up host forwarding rule").
import * as net from "net";
import { describe, expect, test } from "vitest";
import { freePort as e2ePort } from "../e2e/lib/vm";
import { inSlice, PORT_SLICES, portSlice } from "../e2e/lib/ports";
import { freePort as scriptsPort } from "../scripts/helpers";

const bindable = (port: number) => new Promise<boolean>((res) => {
  const s = net.createServer().once("error", () => res(false)).listen(port, "127.0.0.1", () => s.close(() => res(true)));
});

describe("freePort", () => {
  // A worker draws from its slice of the ports Linux gives bind(0) (lib/ports.ts, portSlice):
  // about 880 ports. 200 draws from those repeat one with a probability above 99.99% when nothing
  // prevents it (the birthday bound), so dropping the check fails this test. (Both cases share
  // one handed-out set: 400 draws of the ~880.)
  test.each([["the VM suite's", e2ePort], ["the tool tests'", scriptsPort]])("%s never hands out a port twice, and each one binds", async (_name, freePort) => {
    const ports: number[] = [];
    for (let i = 0; i < 200; i++) ports.push(await freePort());
    expect(new Set(ports).size).toBe(ports.length);
    expect(await bindable(ports[ports.length - 1])).toBe(true);
  });

  test("keeps each vitest worker to its own slice of ports, so two workers never draw the same one", async () => {
    expect(([undefined, "1", "2", "9", "x"] as const).map((id) => portSlice({ VITEST_POOL_ID: id }))).toEqual([undefined, 0, 1, 0, undefined]);
    // This process is a worker itself: every port it is handed is in its slice, none in another's.
    const own = portSlice();
    expect(own).toBeDefined();
    const other = (own! + 1) % PORT_SLICES;
    for (let i = 0; i < 40; i++) {
      const p = await e2ePort();
      expect([p, inSlice(p, own)]).toEqual([p, true]);
      expect([p, inSlice(p, other)]).toEqual([p, false]);
    }
  });
});
