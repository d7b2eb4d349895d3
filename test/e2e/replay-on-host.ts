// The replay's own behaviour (issues 3 and 9) on a provisioned host: a stub program, the stack's
// steps broken and mended by config, the pinned host key, SSH narrowed and widened, apt's locks.
// None of this needs a fresh VM, so it runs on provision.test.ts's host (a fresh VM and its base
// step cost about 4 min of the suite); the fresh provision there proves wait-for-boot and base
// on a fresh VM.
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import * as pulumi from "@pulumi/pulumi";
import { stepWrapper } from "../../components/host/step";
import { BASIC_AUTH_USER, DATA_DEVICE, DEPLOY_USER, SITE_NAMES, type Host, type World } from "./lib/harness";
import { web } from "./lib/web";
import { run } from "./lib/exec";
import { repoRoot } from "./lib/paths";
import { killStepAfter, replay, SecretInFailureError, StepFailedError, type Program } from "./lib/replay";
import { withEditedScripts } from "../unit/harness";
import { generateKey, shellQuote, ssh, sshOk } from "./lib/ssh";

export function replayOnHost(ctx: () => { world: World; host: Host }): void {
  it("boots the stack's cloud-init user-data: deploy user with sudo, the stack's own host key, the volume by id", async () => {
    const out = await sshOk(ctx().host.target, `id -un; sudo -n id -un; ls ${DATA_DEVICE}; sudo -n cat /etc/machine-id; sudo -n stat -c '%a %U' /etc/ssh/ssh_host_ed25519_key; cut -d' ' -f1,2 /etc/ssh/ssh_host_ed25519_key.pub`);
    const [user, root, device, machineId, mode, hostKey] = out.trim().split("\n");
    expect([user, root, device]).toEqual([DEPLOY_USER, "root", DATA_DEVICE]);
    expect(machineId).toMatch(/^[0-9a-f]{32}$/);
    // cloud-init wrote the key the stack made (world.hostKey, as tls.PrivateKey is for a droplet)
    // in place of the image's, root-only; sshd serves it (the steps pin it and pass).
    expect([mode, hostKey]).toEqual(["600 root", ctx().world.hostKey.publicKey.split(" ").slice(0, 2).join(" ")]);
    const served = await run("ssh-keyscan", ["-t", "ed25519", "-p", String(ctx().host.vm.ports.ssh), "127.0.0.1"]);
    expect(served.stdout.trim().split(/\s+/).slice(1, 3).join(" ")).toBe(hostKey);
  });

  describe("replay with a stub program (what the harness does, independent of the real steps)", () => {
    const secret = "stub-Secret-Value-9000";
    /** A third step after the two that always pass. */
    type LastStep = { name: string; script: string; limitSeconds?: number };
    const stub = (last?: LastStep): Program => () => {
      const step = (name: string, script: string, dependsOn: string[], limitSeconds?: number) => {
        const stdin = `# nodehost step: ${name}\nexport TOKEN='${secret}'\nset -euo pipefail\n${script}\n`;
        return {
          stepName: name,
          dependsOnSteps: dependsOn,
          spec: pulumi.output({ name, create: limitSeconds ? stepWrapper(limitSeconds, "s") : stepWrapper(1), stdin, triggers: [createHash("sha256").update(stdin).digest("hex")], logging: "none", dependsOn, inputs: createHash("sha256").update(stdin).digest("hex") }),
        };
      };
      return {
        outputs: {},
        steps: [
          step("second", 'echo "second as $(id -un)" >> /root/stub.log', ["first"]),
          step("first", 'echo "first as $(id -un)" >> /root/stub.log', []),
          ...(last ? [step(last.name, last.script, ["second"], last.limitSeconds)] : []),
        ],
      };
    };
    const run = (last?: LastStep) =>
      replay({ config: { "nodehost:token": secret }, secretKeys: ["nodehost:token"], target: ctx().host.target, statePath: `${ctx().host.vm.dir}/stub-state.json`, program: stub(last) });
    const failure = async (last: LastStep): Promise<StepFailedError> => {
      const err = await run(last).then(() => undefined, (e: unknown) => e);
      expect(err).toBeInstanceOf(StepFailedError);
      return err as StepFailedError;
    };
    const boom: LastStep = { name: "boom", script: 'echo "about to fail" >&2; exit 3' };
    const leaky: LastStep = { name: "leaky", script: 'echo "about to fail with $TOKEN" >&2; exit 3' };
    // Outlives the wrapper's limit (20 s here, the same wrapper as the stack's minutes): timeout
    // TERMs the script's whole process group.
    const stuck: LastStep = { name: "stuck", script: 'sleep 600 & echo "child $!" > /root/stuck.pid; wait', limitSeconds: 20 };
    // Kills the sshd-session serving this step, as a network drop would end it.
    const cut: LastStep = { name: "cut", script: 'p=$PPID; while [ "$p" -gt 1 ] && [ "$(ps -o comm= -p "$p")" != sshd-session ]; do p=$(ps -o ppid= -p "$p" | tr -d " "); done; echo "cutting $p" >&2; kill -9 "$p"; sleep 30' };

    it("runs steps in dependency order as root through the step wrapper, then none on a second run", async () => {
      const first = await run();
      expect(first.ran.map((s) => s.name)).toEqual(["first", "second"]);
      expect(await sshOk(ctx().host.target, "sudo -n cat /root/stub.log")).toBe("first as root\nsecond as root\n");
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
      expect(e.message).toContain("step stopped after its 20 s limit");
      expect(Date.now() - started).toBeLessThan(4 * 60_000);
      const child = (await sshOk(ctx().host.target, "sudo -n cat /root/stuck.pid")).trim().split(" ")[1];
      expect((await ssh(ctx().host.target, `kill -0 ${child}`)).code).not.toBe(0);
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
    it("runs no step on a second replay with the same config", async () => {
      const r = await ctx().host.replay({ only: ["base"] });
      expect(r.ran).toEqual([]);
      expect(r.unchanged).toEqual(["wait-for-boot", "base"]);
    });

    it("fails a step broken by config with its name and stderr, and no secret in the message", async () => {
      // A dataDevice naming another disk that has a filesystem (the VM's cloud-init seed, as a
      // wrong volume id would): refused before fstab points the next boot at it, or anything is
      // formatted. (A path that never appears fails the same way after base's 120 s wait for it.)
      const wrong = "/dev/disk/by-label/cidata";
      const fstab = async () => sshOk(ctx().host.target, "cat /etc/fstab");
      const before = await fstab();
      const existingHost = { address: "127.0.0.1", port: ctx().host.vm.ports.ssh, user: DEPLOY_USER, dataDevice: wrong };
      const err = await ctx().host.replay({ only: ["base"], overrides: { existingHost } }).then(() => undefined, (e: unknown) => e);
      expect(err).toBeInstanceOf(StepFailedError);
      const e = err as StepFailedError;
      expect(e.step).toBe("base");
      expect(e.message).toMatch(new RegExp(`/mnt/data is mounted from /dev/vd[a-z]+, not ${wrong} \\(/dev/vd[a-z]+\\)`));
      expect(await fstab()).toBe(before);
      const { secrets } = await ctx().host.replay({ only: ["wait-for-boot"] });
      expect(secrets.length).toBeGreaterThan(3);
      for (const s of secrets) expect(e.message).not.toContain(s);
    });

    it("re-runs only the failed step once the config is fixed", async () => {
      const r = await ctx().host.replay({ only: ["base"] });
      expect(r.ran.map((s) => s.name)).toEqual(["base"]);
    });

    it("checks the host key the stack pins: a step against another key fails before anything runs", async () => {
      const other = (await generateKey(mkdtempSync(join(tmpdir(), "nodehost-other-key-")))).publicKey;
      const existingHost = { address: "127.0.0.1", port: ctx().host.vm.ports.ssh, user: DEPLOY_USER, dataDevice: DATA_DEVICE, hostKey: other };
      const err = await ctx().host.replay({ only: ["wait-for-boot"], overrides: { existingHost } }).then(() => undefined, (e: unknown) => e);
      expect(err).toBeInstanceOf(StepFailedError);
      expect((err as StepFailedError).exitCode).toBe(255);
      expect((err as StepFailedError).stderrTail).toContain("Host key verification failed");
      // The VM's own key (what the harness pins) lets it run again.
      expect((await ctx().host.replay({ only: ["wait-for-boot"] })).ran.map((r) => r.name)).toEqual(["wait-for-boot"]);
    });

    it("narrows SSH in UFW to ssh.allowFrom and back; sshd lets in only the allowed users, no forwarding", async () => {
      // QEMU's user network hands the guest every forwarded connection from 10.0.2.2.
      const ssh0 = { publicKeys: [ctx().world.key.publicKey] };
      const rules = async () => (await sshOk(ctx().host.target, "sudo -n ufw status")).split("\n").filter((l) => /^22\/tcp/.test(l)).map((l) => l.replace(/\s+/g, " ").trim());
      // A user with the deploy user's key who is not in AllowUsers: one refused login each time
      // (fail2ban's sshd jail bans 10.0.2.2, this whole test's address, after 5).
      await sshOk(ctx().host.target, "sudo -n sh -c 'id outsider >/dev/null 2>&1 || useradd -m -s /bin/bash outsider; install -d -m 700 -o outsider -g outsider /home/outsider/.ssh; install -m 600 -o outsider -g outsider /home/deploy/.ssh/authorized_keys /home/outsider/.ssh/authorized_keys'");
      const outsider = { ...ctx().host.target, user: "outsider" };

      const narrow = await ctx().host.replay({ only: ["base"], overrides: { ssh: { ...ssh0, allowFrom: ["10.0.2.2/32"], extraUsers: ["outsider"] } } });
      expect(narrow.ran.map((r) => r.name)).toEqual(["base"]);
      expect(await rules()).toEqual(["22/tcp ALLOW 10.0.2.2"]);
      expect((await ssh(outsider, "id -un")).stdout.trim()).toBe("outsider");
      const sshd = await sshOk(ctx().host.target, "sudo -n sshd -T");
      for (const line of ["allowusers deploy", "allowusers outsider", "maxauthtries 3", "x11forwarding no", "allowtcpforwarding no", "allowagentforwarding no", "permittunnel no"]) {
        expect(sshd).toContain(`\n${line}\n`);
      }
      // A source added: the kept one stays as it is (ufw shows 10.0.2.2/32 as 10.0.2.2).
      const more = await ctx().host.replay({ only: ["base"], overrides: { ssh: { ...ssh0, allowFrom: ["10.0.2.2/32", "192.0.2.0/24"], extraUsers: ["outsider"] } } });
      expect(more.ran.map((r) => r.name)).toEqual(["base"]);
      expect(await rules()).toEqual(["22/tcp ALLOW 10.0.2.2", "22/tcp ALLOW 192.0.2.0/24"]);

      const back = await ctx().host.replay({ only: ["base"] });
      expect(back.ran.map((r) => r.name)).toEqual(["base"]);
      expect(await rules()).toEqual(["22/tcp ALLOW Anywhere", "22/tcp (v6) ALLOW Anywhere (v6)"]);
      const refused = await ssh(outsider, "id -un");
      expect(refused.code).toBe(255);
      expect(await sshOk(ctx().host.target, "sudo -n journalctl -u ssh --no-pager -n 50")).toContain("User outsider from 10.0.2.2 not allowed because not listed in AllowUsers");
    });
  });

  it("apt in a step waits for a package lock held elsewhere (apt-daily, a step beside it), where plain apt-get fails at once", async () => {
    const lib = readFileSync(join(repoRoot, "scripts", "lib.sh"), "utf8");
    // Holds apt's lists lock for 30 s the way `apt-get update` (apt-daily) does: an fcntl lock
    // (long enough for the plain apt-get to fail and both steps to start waiting).
    const hold = `nohup python3 -c 'import fcntl,time; f=open("/var/lib/apt/lists/lock","a"); fcntl.lockf(f,fcntl.LOCK_EX); open("/run/nodehost-held","w").close(); time.sleep(30)' </dev/null >/dev/null 2>&1 &
until [ -e /run/nodehost-held ]; do sleep 0.2; done; rm -f /run/nodehost-held`;
    await sshOk(ctx().host.target, `sudo -n bash -c ${shellQuote(hold)}`);
    const plain = await ssh(ctx().host.target, "sudo -n apt-get -q -o DPkg::Lock::Timeout=60 update");
    expect(plain.code).not.toBe(0);
    expect(plain.stderr).toContain("Could not get lock /var/lib/apt/lists/lock");
    // Two steps' apt at once while the lock is still held: both wait, queue and succeed.
    const both = await Promise.all([1, 2].map(() => ssh(ctx().host.target, "sudo -n bash -s", { input: `${lib}\napt_get update\n`, timeoutMs: 15 * 60_000 })));
    for (const r of both) expect(r.code, r.stderr).toBe(0);
    expect(both.map((r) => r.stdout).join("")).toContain("a package lock is held by another process; retrying in 5 s");
  });

  // Issue 9: each step converges from the points it can be killed at. Here base and docker-data;
  // the app step inside dpkg and between switch and reload is in provision.test.ts's release tests.
  describe("a step killed at a chosen point converges on the next run", () => {
    const killed = async (file: string, marker: string, run: () => Promise<unknown>): Promise<StepFailedError> => {
      const err = await withEditedScripts((d) => killStepAfter(d, file, marker), run).then(() => undefined, (e: unknown) => e);
      expect(err).toBeInstanceOf(StepFailedError);
      expect((err as StepFailedError).exitCode).toBe(137);
      return err as StepFailedError;
    };

    it("base, resizing the swap, killed between fallocate and mkswap: the swap in use stays whole, the next run resizes it", async () => {
      const swap = async () => (await sshOk(ctx().host.target, "sudo -n swapon --show=NAME --noheadings; sudo -n stat -c '%n %s' /swapfile /swapfile.new 2>/dev/null; true")).trim().split("\n");
      const droplet = { swapMb: 1024 };
      const e = await killed("base.sh", '      dd if=/dev/zero of="$swapfile.new" bs=1M count="$SWAP_MB" status=none\n',
        () => ctx().host.replay({ only: ["base"], overrides: { droplet } }));
      expect(e.step).toBe("base");
      // The old 2 GiB swap is still on; the new file lies beside it, allocated and never formatted.
      expect(await swap()).toEqual(["/swapfile", `/swapfile ${2048 * 1024 * 1024}`, `/swapfile.new ${1024 * 1024 * 1024}`]);
      const again = await ctx().host.replay({ only: ["base"], overrides: { droplet } });
      expect(again.ran.map((r) => r.name)).toEqual(["base"]);
      expect(await swap()).toEqual(["/swapfile", `/swapfile ${1024 * 1024 * 1024}`]);
      // Back to the stack's size for the tests after this one.
      expect((await ctx().host.replay({ only: ["base"] })).ran.map((r) => r.name)).toEqual(["base"]);
      expect(await swap()).toEqual(["/swapfile", `/swapfile ${2048 * 1024 * 1024}`]);
    });

    it("nginx, adding a route, killed once the new site is written and before nginx reloads: the next run reloads it", async () => {
      // Without auth, /extra/ is the UI's (basic auth, 401) until the route is loaded, then the app's (its own 404).
      const extra = async () => (await web({ name: SITE_NAMES[0], port: ctx().host.vm.ports.https, path: "/extra/x", https: true, ca: ctx().world.pebble.issuerRootPem })).status;
      const overrides = { nginx: { basicAuthUser: BASIC_AUTH_USER, routes: [{ path: "/extra/" }] } };
      expect(await extra()).toBe(401);
      const e = await killed("tools/nodehost-nginx-render", 'install -m 0644 "$new" "$site"\n', () => ctx().host.replay({ overrides }));
      expect(e.step).toBe("nginx");
      // The new site is on disk, and nginx still serves the old one.
      expect(await sshOk(ctx().host.target, "sudo -n grep -c 'location ^~ /extra/' /etc/nginx/sites-available/nodehost-app.conf")).toBe("1\n");
      expect(await extra()).toBe(401);
      const again = await ctx().host.replay({ overrides });
      expect(again.ran.map((r) => r.name)).toEqual(["nginx", "tls", "health-gate"]);
      expect(await extra()).toBe(404);
      expect((await ctx().host.replay()).ran.map((r) => r.name)).toEqual(["nginx", "tls", "health-gate"]);
      expect(await extra()).toBe(401);
    });

    it("docker-data, rotating the PostgreSQL password, killed once the new password file is written: the next run sets it, and the app logs in with it", async () => {
      // `pulumi up --replace` on the RandomPassword: the replay keeps it in the world's random state.
      const randomFile = join(ctx().world.dir, "stack-random.json");
      const name = "nodehost-e2e-postgres-password";
      const random = JSON.parse(readFileSync(randomFile, "utf8")) as { random: Record<string, { result: string }> };
      const old = random.random[name].result;
      delete random.random[name];
      writeFileSync(randomFile, JSON.stringify(random, null, 2));
      const e = await killed("docker-data.sh", 'write_file "$ETC/postgres/password" 0400 "$pg_ids" <<<"$POSTGRES_PASSWORD"\n',
        () => ctx().host.replay({ only: ["docker-data"] }));
      expect(e.step).toBe("docker-data");
      const rotated = (JSON.parse(readFileSync(randomFile, "utf8")) as typeof random).random[name].result;
      expect(rotated).not.toBe(old);
      const sha = (s: string) => createHash("sha256").update(`${s}\n`).digest("hex");
      // The file has the new password; the database still takes only the old one.
      expect((await sshOk(ctx().host.target, "sudo -n sha256sum /etc/nodehost/postgres/password")).split(" ")[0]).toBe(sha(rotated));
      // As docker-data's own check does: over TCP to the container's address, the password on stdin.
      const logsIn = async (password: string) => (await ssh(ctx().host.target, "sudo -n bash -s", {
        input: `docker exec -i nodehost-postgres sh -c 'IFS= read -r PGPASSWORD; export PGPASSWORD; psql -qtA -w -h "$(hostname -i | cut -d" " -f1)" -U "$POSTGRES_USER" -d "$POSTGRES_DB" -c "select 1"' >/dev/null <<'PW'\n${password}\nPW\n`,
      })).code === 0;
      expect([await logsIn(old), await logsIn(rotated)]).toEqual([true, false]);

      const again = await ctx().host.replay();
      const ran = again.ran.map((r) => r.name);
      expect(ran).toContain("docker-data");
      expect(ran).toContain("app");
      expect(ran).not.toContain("base");
      expect([await logsIn(old), await logsIn(rotated)]).toEqual([false, true]);
      // The app's own check of PostgreSQL and Redis, through nginx, from the release the up
      // restarted with the new DATABASE_URL (new processes, so new connections).
      const health = await web({ name: SITE_NAMES[0], port: ctx().host.vm.ports.https, path: "/api/health", https: true, ca: ctx().world.pebble.issuerRootPem });
      expect([health.status, (JSON.parse(health.body) as { status?: string }).status]).toEqual([200, "ok"]);
    });
  });

}
