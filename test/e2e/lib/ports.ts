// Loopback ports for the tests' servers (the VM's forwards, Pebble, the S3 server, the tool tests'
// nginx and databases): one helper for the VM suite and the tool tests alike.
import { createServer, type Server } from "node:net";

/** Ports this process has handed out: the kernel may offer a port again once it is closed. */
const handedOut = new Set<number>();

/** Blocks of ports the kernel's draws are sorted into, one set per test worker (portSlice). */
const PORT_BLOCK = 64;
export const PORT_SLICES = 8;

/**
 * The slice of ports this process may hand out: vitest runs test files in worker processes at once
 * (`npm test`'s tool tests), and each draws its ports from the kernel on its own, so two of them
 * could be given the same free port in the moment before either binds it. Each worker
 * (VITEST_POOL_ID, unique among the workers running at once, from 1) keeps to ports whose 64-port
 * block falls in its own slice of eight (workers 1-8 apart; this machine runs fewer); a process
 * outside vitest takes any. (What it
 * draws from: Linux gives a listening socket with SO_REUSEADDR, as node's are, an odd port in the
 * lower half of ip_local_port_range first; net/ipv4/inet_connection_sock.c,
 * inet_csk_find_open_port: `attempt_half`, `offset |= 1U`. Here 32768-46883: about 880 ports a
 * slice.)
 */
export function portSlice(env: Record<string, string | undefined> = process.env): number | undefined {
  const id = Number(env.VITEST_POOL_ID ?? "");
  return env.VITEST_POOL_ID && Number.isInteger(id) && id >= 1 ? (id - 1) % PORT_SLICES : undefined;
}

export const inSlice = (port: number, slice: number | undefined) =>
  slice === undefined || Math.floor(port / PORT_BLOCK) % PORT_SLICES === slice;

/**
 * A loopback port nothing listens on, never one this process handed out before, in this worker's
 * slice (portSlice): a port is free here only until its user binds it, and the kernel can offer a
 * just-closed port again (a `.ci/run` once gave the second rebuild's SSH forward the port its
 * Pebble had just been given: "Could not set up host forwarding rule").
 */
export async function freePort(): Promise<number> {
  const slice = portSlice();
  // A port passed over (another slice's, or handed out before) stays bound until one is taken,
  // so every draw of a call is a port not drawn before in it.
  const held: Server[] = [];
  try {
    for (let i = 0; i < 50 * PORT_SLICES; i++) {
      const srv = createServer();
      const port = await new Promise<number>((res, rej) => {
        srv.on("error", rej);
        srv.listen(0, "127.0.0.1", () => res((srv.address() as { port: number }).port));
      });
      held.push(srv);
      if (inSlice(port, slice) && !handedOut.has(port)) {
        handedOut.add(port);
        return port;
      }
    }
  } finally {
    await Promise.all(held.map((srv) => new Promise((res) => srv.close(res))));
  }
  throw new Error(`freePort: no port in slice ${slice ?? "any"} that was not handed out already in ${50 * PORT_SLICES} tries`);
}
