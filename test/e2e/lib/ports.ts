// Loopback ports for the tests' servers (the VM's forwards, Pebble, the S3 server, the tool tests'
// nginx and databases): one helper for the VM suite and the tool tests alike.
import { createServer } from "node:net";

/** Ports this process has handed out: the kernel may offer a port again once it is closed. */
const handedOut = new Set<number>();

/**
 * A loopback port nothing listens on, never one this process handed out before: a port is free
 * here only until its user binds it, and the kernel can offer a just-closed port again (a
 * `.ci/run` once gave the second rebuild's SSH forward the port its Pebble had just been given:
 * "Could not set up host forwarding rule").
 */
export async function freePort(): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const port = await new Promise<number>((res, rej) => {
      const srv = createServer();
      srv.on("error", rej);
      srv.listen(0, "127.0.0.1", () => {
        const p = (srv.address() as { port: number }).port;
        srv.close(() => res(p));
      });
    });
    if (!handedOut.has(port)) {
      handedOut.add(port);
      return port;
    }
  }
  throw new Error("freePort: no port that was not handed out already in 50 tries");
}
