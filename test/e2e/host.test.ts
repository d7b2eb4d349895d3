// Issue 3 on a real VM: the replay runs the program's own steps, honours triggers, fails loudly
// and without secrets, and the base image comes from the cache once built.
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, utimesSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as pulumi from "@pulumi/pulumi";
import { stepWrapper } from "../../components/host/step";
import { checkCapability, skipBanner } from "./lib/capability";
import { bootHost, DATA_DEVICE, DEPLOY_USER, startWorld, type Host, type World } from "./lib/harness";
import { ensureBaseImage } from "./lib/image";
import { newRunDir, pruneOldRuns, repoRoot } from "./lib/paths";
import { assertNoSecret, maskSecrets, orderSteps, providerErrorText, replay, SecretInFailureError, secretLeaves, StepFailedError, type Program, type StepSpec } from "./lib/replay";
import { generateKey, shellQuote, ssh, sshOk } from "./lib/ssh";

const cap = checkCapability();
if (!cap.ok) process.stderr.write(`${skipBanner(cap)}\n`);

const spec = (name: string, dependsOn: string[] = []): StepSpec =>
  ({ name, create: "true", stdin: "", triggers: [name], logging: "stdoutAndStderr", dependsOn, inputs: name });

describe("replay helpers (no VM)", () => {
  it("orders steps after their dependencies, keeping program order otherwise", () => {
    const order = orderSteps([spec("app", ["node", "data"]), spec("boot"), spec("node", ["boot"]), spec("data", ["boot"])]);
    expect(order.map((s) => s.name)).toEqual(["boot", "node", "data", "app"]);
  });

  it("rejects a dependency on a step that does not exist", () => {
    expect(() => orderSteps([spec("app", ["nope"])])).toThrow("step app depends on unknown step nope");
  });

  it("builds a failure as pulumi-command prints it, and refuses one that holds a secret", () => {
    const text = providerErrorText("cmd 'x'", 2, "out\n", "pw is hunter2hunter2\n");
    expect(text).toBe('Process exited with status 2: running "cmd \'x\'":\nout\npw is hunter2hunter2\n');
    expect(() => assertNoSecret("s", text, ["hunter2hunter2"])).toThrow(/holds a secret on 1 line\(s\)[^]*pw is \*\*\*/);
    expect(() => assertNoSecret("s", text, ["not-there"])).not.toThrow();
  });

  it("takes a secret config object (appSecrets) value by value", () => {
    expect(secretLeaves(JSON.stringify({ A: "sk_live_1234", B: { C: "nested-secret" } }))).toEqual(
      [JSON.stringify({ A: "sk_live_1234", B: { C: "nested-secret" } }), "sk_live_1234", "nested-secret"]);
    expect(secretLeaves("plain-secret-text")).toEqual(["plain-secret-text"]);
    expect(secretLeaves(JSON.stringify({ K: "first line of it\nsecond line too\nx" }))).toEqual(
      [JSON.stringify({ K: "first line of it\nsecond line too\nx" }), "first line of it\nsecond line too\nx", "first line of it", "second line too"]);
  });
  it("masks every secret, the longer first, and leaves short values alone", () => {
    expect(maskSecrets("pw=hunter2hunter2 key=hunter2 id=abc", ["hunter2", "hunter2hunter2", "abc"])).toBe("pw=*** key=*** id=abc");
  });

  it("prunes run dirs older than three days and keeps the recent ones", () => {
    const runs = mkdtempSync(join(tmpdir(), "nodehost-runs-"));
    const old = join(runs, "provision-1");
    const recent = join(runs, "provision-2");
    mkdirSync(old);
    mkdirSync(recent);
    const fourDaysAgo = new Date(Date.now() - 4 * 24 * 3600_000);
    utimesSync(old, fourDaysAgo, fourDaysAgo);
    expect(pruneOldRuns(runs)).toEqual([old]);
    expect(existsSync(old)).toBe(false);
    expect(existsSync(recent)).toBe(true);
  });
});

describe.skipIf(!cap.ok)("VM test host (Debian 13 under QEMU)", () => {
  let world: World;
  let host: Host;

  beforeAll(async () => {
    world = await startWorld({ dir: newRunDir("test") });
    host = await bootHost(world, { name: "e2e-fresh" });
    process.stderr.write(`VM ${host.vm.name}: ${host.vm.accel}, boot to SSH ${(host.bootMs / 1000).toFixed(0)} s\n`);
  });

  afterAll(async () => {
    await host?.destroy();
    await world?.stop();
  });

  it("boots the stack's cloud-init user-data: deploy user with sudo, unique host keys, the volume by id", async () => {
    const out = await sshOk(host.target, `id -un; sudo -n id -un; ls ${DATA_DEVICE}; sudo -n cat /etc/machine-id; sudo -n ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub`);
    const [user, root, device, machineId, fingerprint] = out.trim().split("\n");
    expect([user, root, device]).toEqual([DEPLOY_USER, "root", DATA_DEVICE]);
    expect(machineId).toMatch(/^[0-9a-f]{32}$/);
    expect(fingerprint).toContain("ED25519");
  });

  describe("replay with a stub program (what the harness does, independent of the real steps)", () => {
    const secret = "stub-Secret-Value-9000";
    /** A third step after the two that always pass. */
    type LastStep = { name: string; script: string };
    const stub = (last?: LastStep): Program => () => {
      const step = (name: string, script: string, dependsOn: string[]) => {
        const stdin = `# nodehost step: ${name}\nexport TOKEN='${secret}'\nset -euo pipefail\n${script}\n`;
        return {
          stepName: name,
          dependsOnSteps: dependsOn,
          spec: pulumi.output({ name, create: stepWrapper(1), stdin, triggers: [createHash("sha256").update(stdin).digest("hex")], logging: "none", dependsOn, inputs: createHash("sha256").update(stdin).digest("hex") }),
        };
      };
      return {
        outputs: {},
        steps: [
          step("second", 'echo "second as $(id -un)" >> /root/stub.log', ["first"]),
          step("first", 'echo "first as $(id -un)" >> /root/stub.log', []),
          ...(last ? [step(last.name, last.script, ["second"])] : []),
        ],
      };
    };
    const run = (last?: LastStep) =>
      replay({ config: { "nodehost:token": secret }, secretKeys: ["nodehost:token"], target: host.target, statePath: `${host.vm.dir}/stub-state.json`, program: stub(last) });
    const failure = async (last: LastStep): Promise<StepFailedError> => {
      const err = await run(last).then(() => undefined, (e: unknown) => e);
      expect(err).toBeInstanceOf(StepFailedError);
      return err as StepFailedError;
    };
    const boom: LastStep = { name: "boom", script: 'echo "about to fail" >&2; exit 3' };
    const leaky: LastStep = { name: "leaky", script: 'echo "about to fail with $TOKEN" >&2; exit 3' };
    // Outlives the wrapper's 1 min limit: timeout TERMs the script's whole process group.
    const stuck: LastStep = { name: "stuck", script: 'sleep 600 & echo "child $!" > /root/stuck.pid; wait' };
    // Kills the sshd-session serving this step, as a network drop would end it.
    const cut: LastStep = { name: "cut", script: 'p=$PPID; while [ "$p" -gt 1 ] && [ "$(ps -o comm= -p "$p")" != sshd-session ]; do p=$(ps -o ppid= -p "$p" | tr -d " "); done; echo "cutting $p" >&2; kill -9 "$p"; sleep 30' };

    it("runs steps in dependency order as root through the step wrapper, then none on a second run", async () => {
      const first = await run();
      expect(first.ran.map((s) => s.name)).toEqual(["first", "second"]);
      expect(await sshOk(host.target, "sudo -n cat /root/stub.log")).toBe("first as root\nsecond as root\n");
      const second = await run();
      expect(second.ran).toEqual([]);
      expect(second.unchanged).toEqual(["first", "second"]);
    });

    it("fails with the step's name and stderr, and the provider's error text", async () => {
      const e = await failure(boom);
      expect(e.step).toBe("boom");
      expect(e.exitCode).toBe(3);
      expect(e.message).toContain('host step "boom" failed (exit 3)');
      expect(e.message).toContain("about to fail");
      expect(e.providerText).toMatch(/^Process exited with status 3: running "sudo -n bash -c 'umask 077; .*timeout --kill-after=60 1m bash/);
      expect(e.providerText).toContain("about to fail\n");
    });

    it("refuses a failure whose text, as the provider prints it unmasked, holds a secret", async () => {
      const err = await run(leaky).then(() => undefined, (e: unknown) => e);
      expect(err).toBeInstanceOf(SecretInFailureError);
      expect((err as Error).message).toContain("about to fail with ***");
      expect((err as Error).message).not.toContain(secret);
    });

    it("stops a stuck step on the host at its limit, children included", async () => {
      const started = Date.now();
      const e = await failure(stuck);
      expect(e.exitCode).toBe(124);
      expect(e.message).toContain("step stopped after its 1 min limit");
      expect(Date.now() - started).toBeLessThan(4 * 60_000);
      const child = (await sshOk(host.target, "sudo -n cat /root/stuck.pid")).trim().split(" ")[1];
      expect((await ssh(host.target, `kill -0 ${child}`)).code).not.toBe(0);
    });

    it("tells a lost connection from a failed script, and whether a new connection gets in", async () => {
      const e = await failure(cut);
      expect(e.step).toBe("cut");
      expect(e.exitCode).toBe(255);
      expect(e.message).toContain('host step "cut" failed (ssh lost the connection (exit 255))');
      expect(e.message).toContain("a new SSH connection got in");
    });
  });

  describe("the stack's own steps", () => {
    it("runs wait-for-boot and base green on the fresh VM", async () => {
      const r = await host.replay({ only: ["base"] });
      process.stderr.write(`steps: ${r.ran.map((s) => `${s.name} ${(s.ms / 1000).toFixed(0)} s`).join(", ")}\n`);
      expect(r.ran.map((s) => s.name)).toEqual(["wait-for-boot", "base"]);
      const out = await sshOk(host.target, "sudo -n ufw status | head -1; findmnt -n -o TARGET --source $(readlink -f " + DATA_DEVICE + ")");
      expect(out).toContain("Status: active");
    });

    it("runs no step on a second replay with the same config", async () => {
      const r = await host.replay({ only: ["base"] });
      expect(r.ran).toEqual([]);
      expect(r.unchanged).toEqual(["wait-for-boot", "base"]);
    });

    it("fails a step broken by config with its name and stderr, and no secret in the message", async () => {
      const bogus = "/dev/disk/by-id/virtio-no-such-volume";
      const existingHost = { address: "127.0.0.1", port: host.vm.ports.ssh, user: DEPLOY_USER, dataDevice: bogus };
      const err = await host.replay({ only: ["base"], overrides: { existingHost } }).then(() => undefined, (e: unknown) => e);
      expect(err).toBeInstanceOf(StepFailedError);
      const e = err as StepFailedError;
      expect(e.step).toBe("base");
      expect(e.message).toContain("no-such-volume");
      const { secrets } = await host.replay({ only: ["wait-for-boot"] });
      expect(secrets.length).toBeGreaterThan(3);
      for (const s of secrets) expect(e.message).not.toContain(s);
    });

    it("re-runs only the failed step once the config is fixed", async () => {
      const r = await host.replay({ only: ["base"] });
      expect(r.ran.map((s) => s.name)).toEqual(["base"]);
    });

    it("checks the host key the stack pins: a step against another key fails before anything runs", async () => {
      const other = (await generateKey(mkdtempSync(join(tmpdir(), "nodehost-other-key-")))).publicKey;
      const existingHost = { address: "127.0.0.1", port: host.vm.ports.ssh, user: DEPLOY_USER, dataDevice: DATA_DEVICE, hostKey: other };
      const err = await host.replay({ only: ["wait-for-boot"], overrides: { existingHost } }).then(() => undefined, (e: unknown) => e);
      expect(err).toBeInstanceOf(StepFailedError);
      expect((err as StepFailedError).exitCode).toBe(255);
      expect((err as StepFailedError).stderrTail).toContain("Host key verification failed");
      // The VM's own key (what the harness pins) lets it run again.
      expect((await host.replay({ only: ["wait-for-boot"] })).ran.map((r) => r.name)).toEqual(["wait-for-boot"]);
    });

    it("narrows SSH in UFW to ssh.allowFrom and back; sshd lets in only the allowed users, no forwarding", async () => {
      // QEMU's user network hands the guest every forwarded connection from 10.0.2.2.
      const ssh0 = { publicKeys: [world.key.publicKey] };
      const rules = async () => (await sshOk(host.target, "sudo -n ufw status")).split("\n").filter((l) => /^22\/tcp/.test(l)).map((l) => l.replace(/\s+/g, " ").trim());
      // A user with the deploy user's key who is not in AllowUsers: one refused login each time
      // (fail2ban's sshd jail bans 10.0.2.2, this whole test's address, after 5).
      await sshOk(host.target, "sudo -n sh -c 'id outsider >/dev/null 2>&1 || useradd -m -s /bin/bash outsider; install -d -m 700 -o outsider -g outsider /home/outsider/.ssh; install -m 600 -o outsider -g outsider /home/deploy/.ssh/authorized_keys /home/outsider/.ssh/authorized_keys'");
      const outsider = { ...host.target, user: "outsider" };

      const narrow = await host.replay({ only: ["base"], overrides: { ssh: { ...ssh0, allowFrom: ["10.0.2.2/32"], extraUsers: ["outsider"] } } });
      expect(narrow.ran.map((r) => r.name)).toEqual(["base"]);
      expect(await rules()).toEqual(["22/tcp ALLOW 10.0.2.2"]);
      expect((await ssh(outsider, "id -un")).stdout.trim()).toBe("outsider");
      const sshd = await sshOk(host.target, "sudo -n sshd -T");
      for (const line of ["allowusers deploy", "allowusers outsider", "maxauthtries 3", "x11forwarding no", "allowtcpforwarding no", "allowagentforwarding no", "permittunnel no"]) {
        expect(sshd).toContain(`\n${line}\n`);
      }
      // A source added: the kept one stays as it is (ufw shows 10.0.2.2/32 as 10.0.2.2).
      const more = await host.replay({ only: ["base"], overrides: { ssh: { ...ssh0, allowFrom: ["10.0.2.2/32", "192.0.2.0/24"], extraUsers: ["outsider"] } } });
      expect(more.ran.map((r) => r.name)).toEqual(["base"]);
      expect(await rules()).toEqual(["22/tcp ALLOW 10.0.2.2", "22/tcp ALLOW 192.0.2.0/24"]);

      const back = await host.replay({ only: ["base"] });
      expect(back.ran.map((r) => r.name)).toEqual(["base"]);
      expect(await rules()).toEqual(["22/tcp ALLOW Anywhere", "22/tcp (v6) ALLOW Anywhere (v6)"]);
      const refused = await ssh(outsider, "id -un");
      expect(refused.code).toBe(255);
      expect(await sshOk(host.target, "sudo -n journalctl -u ssh --no-pager -n 50")).toContain("User outsider from 10.0.2.2 not allowed because not listed in AllowUsers");
    });
  });

  it("apt in a step waits for a package lock held elsewhere (apt-daily, a step beside it), where plain apt-get fails at once", async () => {
    const lib = readFileSync(join(repoRoot, "scripts", "lib.sh"), "utf8");
    // Holds apt's lists lock for 60 s the way `apt-get update` (apt-daily) does: an fcntl lock.
    const hold = `nohup python3 -c 'import fcntl,time; f=open("/var/lib/apt/lists/lock","a"); fcntl.lockf(f,fcntl.LOCK_EX); open("/run/nodehost-held","w").close(); time.sleep(60)' </dev/null >/dev/null 2>&1 &
until [ -e /run/nodehost-held ]; do sleep 0.2; done; rm -f /run/nodehost-held`;
    await sshOk(host.target, `sudo -n bash -c ${shellQuote(hold)}`);
    const plain = await ssh(host.target, "sudo -n apt-get -q -o DPkg::Lock::Timeout=60 update");
    expect(plain.code).not.toBe(0);
    expect(plain.stderr).toContain("Could not get lock /var/lib/apt/lists/lock");
    // Two steps' apt at once while the lock is still held: both wait, queue and succeed.
    const both = await Promise.all([1, 2].map(() => ssh(host.target, "sudo -n bash -s", { input: `${lib}\napt_get update\n`, timeoutMs: 15 * 60_000 })));
    for (const r of both) expect(r.code, r.stderr).toBe(0);
    expect(both.map((r) => r.stdout).join("")).toContain("a package lock is held by another process; retrying in 5 s");
  });

  it("takes the base image from the cache once built", async () => {
    const again = await ensureBaseImage();
    expect(again.cached).toBe(true);
    expect(again.hash).toBe(world.image.hash);
    process.stderr.write(`base image ${world.image.hash}: ${world.image.cached ? "from cache" : `built in ${(world.image.buildMs / 1000).toFixed(0)} s`}\n`);
  });
});
