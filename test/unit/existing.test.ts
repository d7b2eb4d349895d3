// The `existing` host mode: no cloud resource at all, the same host steps against the given host.
import { describe, expect, test } from "vitest";
import { parseConfig } from "../../components/config";
import { createStack } from "../../components/stack";
import { countByType, EXISTING_CONFIG, resolve, runProgram } from "./harness";

const { raw, secretKeys } = EXISTING_CONFIG;

describe("hostMode existing", () => {
  test("declares no DigitalOcean resource, only the host steps and their generated passwords", async () => {
    const run = await runProgram("dev", async () => {
      const s = createStack(parseConfig(raw, secretKeys, { project: "nodehost", stack: "dev" }));
      return resolve(s.outputs.sshCommand);
    });
    expect(run.error).toBeUndefined();
    expect(run.custom.filter((r) => r.type.startsWith("digitalocean:"))).toEqual([]);
    expect(countByType(run.custom)).toEqual({
      "command:remote:Command": 9,
      "command:remote:CopyToRemote": 1,
      "random:index/randomPassword:RandomPassword": 5,
    });
    expect(run.result).toBe("ssh -p 2222 deploy@192.0.2.20");
    const conn = run.custom.find((r) => r.type === "command:remote:Command")!.inputs.connection;
    expect(conn).toMatchObject({ host: "192.0.2.20", port: 2222, user: "deploy" });
    expect(conn.hostKey).toBeUndefined();
  });

  test("existingHost.hostKey pins the server's key on every step's connection; a malformed one is refused by key", async () => {
    const hostKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFrv7gCqJH1k3bqTt6ZJb7ZiVwVhYQx3QhQF0S5f3n8e root@host";
    const existing = JSON.parse(raw["nodehost:existingHost"]);
    const pinned = { ...raw, "nodehost:existingHost": JSON.stringify({ ...existing, hostKey }) };
    const run = await runProgram("dev", async () => {
      createStack(parseConfig(pinned, secretKeys, { project: "nodehost", stack: "dev" }));
      return undefined;
    });
    expect(run.error).toBeUndefined();
    const conns = run.custom.filter((r) => r.type.startsWith("command:remote:")).map((r) => r.inputs.connection);
    expect(conns.length).toBe(10);
    for (const c of conns) expect(c.hostKey).toBe(hostKey);
    const bad = { ...raw, "nodehost:existingHost": JSON.stringify({ ...existing, hostKey: "ssh-ed25519 AAAA$(reboot)" }) };
    expect(() => parseConfig(bad, secretKeys, { project: "nodehost", stack: "dev" })).toThrow(
      "nodehost:existingHost.hostKey: must be the host's public key line",
    );
  });

  test("does not need a DigitalOcean token", () => {
    expect(() => parseConfig(raw, secretKeys, { project: "nodehost", stack: "dev" })).not.toThrow();
  });
});
