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
      "random:index/randomPassword:RandomPassword": 3,
    });
    expect(run.result).toBe("ssh -p 2222 deploy@192.0.2.20");
    const conn = run.custom.find((r) => r.type === "command:remote:Command")!.inputs.connection;
    expect(conn).toMatchObject({ host: "192.0.2.20", port: 2222, user: "deploy" });
  });

  test("does not need a DigitalOcean token", () => {
    expect(() => parseConfig(raw, secretKeys, { project: "nodehost", stack: "dev" })).not.toThrow();
  });
});
