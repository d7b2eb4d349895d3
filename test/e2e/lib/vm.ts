// QEMU VMs that play the droplet: a copy-on-write overlay of the base image, a volume disk,
// a NoCloud seed, and host-loopback port forwards to the guest's 22/80/443.
import { randomUUID } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync, rmSync } from "node:fs";
import { connect } from "node:net";
import { join, resolve } from "node:path";
import { pidAlive, run, runOk, sleep } from "./exec";
import type { BaseImage } from "./image";
import { freePort } from "./ports";
import { cachePath } from "./paths";
import { waitForSsh, type SshTarget } from "./ssh";
import { register } from "./registry";

export type Accel = "kvm" | "tcg";

export interface Ports {
  ssh: number;
  http: number;
  https: number;
}

export interface VmOptions {
  name: string;
  image: BaseImage;
  userData: string;
  /** Raw file playing the DigitalOcean volume; reused when it exists, created blank otherwise. */
  dataDisk?: string;
  dataDiskGiB?: number;
  /** A qcow2 to boot from instead of the base image (a snapshot of a provisioned host). */
  fromDisk?: string;
  /** Fixed host ports (e.g. HTTP, which Pebble must know before the VM exists); others are free ports. */
  ports?: Partial<Ports>;
  memoryMiB?: number;
  cpus?: number;
  /** Where this VM's files live; default a new directory under the cache's vms/. */
  dir?: string;
  accel?: Accel;
  /** Leave QEMU running when this process exits (npm run local); default: stop it. */
  keepOnExit?: boolean;
  /** Runs once the VM's directory exists, before its disks are made (e.g. to place a volume copy). */
  beforeStart?: (dir: string) => Promise<void>;
}

export interface Vm {
  name: string;
  dir: string;
  instanceId: string;
  accel: Accel;
  ports: Ports;
  rootDisk: string;
  dataDisk: string;
  serialLog: string;
  pid: number;
  alive(): boolean;
  /** Throws with the serial console tail when QEMU is gone. */
  assertAlive(): void;
  ssh(user: string, keyFile: string): SshTarget;
  /** Stops QEMU (flushing its disks); the guest sees a power cut. */
  stop(): Promise<void>;
  serialTail(lines?: number): string;
}

const QEMU = "qemu-system-x86_64";

const liveVms = new Set<number>();
let exitHookSet = false;
/** A script that dies half-way (bench, a try) must not leave VMs holding ports behind. */
function stopOnExit(pid: number): void {
  liveVms.add(pid);
  if (exitHookSet) return;
  exitHookSet = true;
  process.on("exit", () => {
    for (const p of liveVms) if (pidAlive(p)) process.kill(p, "SIGTERM");
  });
  if (!process.env.VITEST) {
    for (const sig of ["SIGINT", "SIGTERM"] as const) process.once(sig, () => process.exit(130));
  }
}

export { freePort };

export { pidAlive };

function bootId(): string {
  return readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim();
}

/**
 * KVM or TCG, decided by booting the base kernel both ways to a serial marker with a short
 * bound: /dev/kvm can be a nested device on which the kernel aborts or crawls. Cached per host
 * boot and image; NODEHOST_E2E_ACCEL=kvm|tcg overrides.
 */
export async function detectAccel(image: BaseImage, log: (s: string) => void = (s) => process.stderr.write(s + "\n")): Promise<Accel> {
  const forced = process.env.NODEHOST_E2E_ACCEL;
  if (forced === "kvm" || forced === "tcg") return forced;
  const memo = cachePath("accel.json");
  const key = `${bootId()} ${image.hash}`;
  if (existsSync(memo)) {
    const m = JSON.parse(readFileSync(memo, "utf8")) as { key: string; accel: Accel };
    if (m.key === key) return m.accel;
  }
  let accel: Accel = "tcg";
  let why = "/dev/kvm absent";
  if (existsSync("/dev/kvm")) {
    const kvm = await timeToInit(image, "kvm", 20_000);
    if (kvm === null) {
      why = "KVM did not reach the initrd within 20 s";
    } else {
      const tcg = await timeToInit(image, "tcg", 60_000);
      accel = tcg === null || kvm < tcg ? "kvm" : "tcg";
      why = `kernel to initrd: kvm ${kvm} ms, tcg ${tcg ?? "n/a"} ms`;
    }
  }
  log(`accelerator: ${accel} (${why})`);
  writeFileSync(memo, JSON.stringify({ key, accel, why }));
  return accel;
}

/**
 * The CPU model under TCG: x86-64-v2 (SSE4.2, POPCNT, CX16), not `max`. With `max`, QEMU 7.2's TCG
 * offers AVX and AVX2, which the guest's libraries then use, and TCG emulates them slower than
 * the SSE code they replace. Measured on the warm disk, two vCPUs, one run each (2026-12-06, the
 * same commands over SSH): `docker load` of the PostgreSQL archive 43.7 s and 43.4 s with `max`,
 * 33.5 s and 33.0 s with this model; `sha256sum` of 256 MB 11.7-11.8 s against 5.4-6.7 s; the
 * image archives copied in over SSH 38 s against 26-27 s; Node.js, Python and perl start-up and
 * fork/exec within a run's noise (node -e 1 five times 5.7 s against 6.3 s); `max` without AVX
 * loaded the archive in 40.6 s. NODEHOST_E2E_CPU overrides it (to measure another model).
 */
const TCG_CPU = process.env.NODEHOST_E2E_CPU ?? "qemu64,+ssse3,+sse4.1,+sse4.2,+popcnt,+cx16";

function accelArgs(accel: Accel): string[] {
  return accel === "kvm" ? ["-accel", "kvm", "-cpu", "host"] : ["-accel", "tcg,thread=multi", "-cpu", TCG_CPU];
}

async function timeToInit(image: BaseImage, accel: Accel, timeoutMs: number): Promise<number | null> {
  const started = Date.now();
  const r = await new Promise<boolean>((res) => {
    const { spawn } = require("node:child_process") as typeof import("node:child_process");
    const child = spawn(QEMU, [
      ...accelArgs(accel), "-m", "512", "-display", "none", "-no-reboot", "-serial", "stdio", "-monitor", "none",
      "-kernel", image.kernel, "-initrd", image.initrd, "-append", "console=ttyS0 panic=-1",
    ], { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    const done = (ok: boolean) => {
      clearTimeout(timer);
      child.kill("SIGKILL");
      res(ok);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    child.stdout.on("data", (d: Buffer) => {
      out += d.toString();
      if (out.includes("Run /init as init process")) done(true);
    });
    child.on("exit", () => done(out.includes("Run /init as init process")));
  });
  return r ? Date.now() - started : null;
}

async function makeSeed(dir: string, userData: string, instanceId: string, hostname: string): Promise<string> {
  const seedDir = join(dir, "seed");
  mkdirSync(seedDir, { recursive: true });
  writeFileSync(join(seedDir, "user-data"), userData);
  writeFileSync(join(seedDir, "meta-data"), `instance-id: ${instanceId}\nlocal-hostname: ${hostname}\n`);
  const iso = join(dir, "seed.iso");
  await runOk("genisoimage", ["-quiet", "-output", iso, "-volid", "cidata", "-joliet", "-rock",
    join(seedDir, "user-data"), join(seedDir, "meta-data")]);
  return iso;
}

/** Creates a blank raw volume (sparse) unless the file already exists. */
export async function ensureDataDisk(path: string, gib = 4): Promise<string> {
  if (!existsSync(path)) {
    mkdirSync(resolve(path, ".."), { recursive: true });
    await runOk("qemu-img", ["create", "-q", "-f", "raw", path, `${gib}G`]);
  }
  return path;
}

export async function bootVm(opts: VmOptions): Promise<Vm> {
  const instanceId = `i-${randomUUID().slice(0, 13)}`;
  const dir = opts.dir ?? cachePath("vms", `${opts.name}-${instanceId}`);
  mkdirSync(dir, { recursive: true });
  await opts.beforeStart?.(dir);
  const accel = opts.accel ?? (await detectAccel(opts.image));
  const rootDisk = join(dir, "root.qcow2");
  const backing = resolve(opts.fromDisk ?? opts.image.disk);
  await runOk("qemu-img", ["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", backing, rootDisk]);
  const dataDisk = await ensureDataDisk(resolve(opts.dataDisk ?? join(dir, "data.raw")), opts.dataDiskGiB);
  const seed = await makeSeed(dir, opts.userData, instanceId, opts.name);
  const serialLog = join(dir, "serial.log");
  const pidFile = join(dir, "qemu.pid");
  rmSync(pidFile, { force: true });

  // A free port can be taken between the probe and QEMU's bind; QEMU then says so and exits,
  // and only that cause is retried, with new ports.
  for (let attempt = 1; ; attempt++) {
    const ports: Ports = {
      ssh: opts.ports?.ssh ?? (await freePort()),
      http: opts.ports?.http ?? (await freePort()),
      https: opts.ports?.https ?? (await freePort()),
    };
    const fwd = (host: number, guest: number) => `hostfwd=tcp:127.0.0.1:${host}-:${guest}`;
    const args = [
      "-name", opts.name,
      "-machine", "q35", "-nodefaults", ...accelArgs(accel),
      "-smp", String(opts.cpus ?? 2), "-m", String(opts.memoryMiB ?? 3072),
      "-kernel", opts.image.kernel, "-initrd", opts.image.initrd,
      "-append", "root=LABEL=nodehost-root ro console=ttyS0,115200 net.ifnames=0 panic=-1",
      "-drive", `file=${rootDisk},if=virtio,format=qcow2,cache=unsafe,discard=unmap`,
      "-drive", `file=${dataDisk},if=none,id=data,format=raw,cache=unsafe`,
      "-device", "virtio-blk-pci,drive=data,serial=nodehost-data",
      "-drive", `file=${seed},if=virtio,format=raw,readonly=on`,
      "-netdev", `user,id=n0,${fwd(ports.ssh, 22)},${fwd(ports.http, 80)},${fwd(ports.https, 443)}`,
      "-device", "virtio-net-pci,netdev=n0",
      "-device", "virtio-rng-pci",
      "-display", "none", "-serial", `file:${serialLog}`, "-monitor", "none",
      "-qmp", `unix:${join(dir, "qmp.sock")},server=on,wait=off`,
      "-pidfile", pidFile, "-daemonize",
    ];
    writeFileSync(join(dir, "qemu.args.json"), JSON.stringify(args));
    const r = await run(QEMU, args, { timeoutMs: 60_000 });
    if (r.code === 0) {
      const pid = Number(readFileSync(pidFile, "utf8").trim());
      register(pid, dir);
      if (!opts.keepOnExit) stopOnExit(pid);
      const vm = makeVm({ name: opts.name, dir, instanceId, accel, ports, rootDisk, dataDisk, serialLog, pid });
      writeFileSync(join(dir, "vm.json"), JSON.stringify({ name: opts.name, instanceId, accel, ports, rootDisk, dataDisk, serialLog, pid }, null, 2));
      return vm;
    }
    if (/host forwarding|Could not set up/i.test(r.stderr) && attempt < 3 && !opts.ports) continue;
    throw new Error(`QEMU failed to start: ${r.stderr.trim()}`);
  }
}

/** Re-attaches to a VM started by an earlier process (npm run local). */
export function loadVm(dir: string): Vm {
  const j = JSON.parse(readFileSync(join(dir, "vm.json"), "utf8"));
  return makeVm({ ...j, dir });
}

function makeVm(v: { name: string; dir: string; instanceId: string; accel: Accel; ports: Ports; rootDisk: string; dataDisk: string; serialLog: string; pid: number }): Vm {
  const serialTail = (lines = 40) =>
    existsSync(v.serialLog) ? readFileSync(v.serialLog, "utf8").replace(/\r/g, "").trimEnd().split("\n").slice(-lines).join("\n") : "";
  const alive = () => pidAlive(v.pid);
  return {
    ...v,
    alive,
    serialTail,
    assertAlive() {
      if (!alive()) throw new Error(`VM ${v.name} (QEMU pid ${v.pid}) is gone; serial console tail:\n${serialTail()}`);
    },
    ssh: (user, keyFile) => ({ host: "127.0.0.1", port: v.ports.ssh, user, keyFile }),
    async stop() {
      liveVms.delete(v.pid);
      if (!alive()) return;
      await qmpQuit(join(v.dir, "qmp.sock")).catch(() => process.kill(v.pid, "SIGTERM"));
      for (let i = 0; i < 100 && alive(); i++) await sleep(100);
      if (alive()) process.kill(v.pid, "SIGKILL");
    },
  };
}

function qmpQuit(sock: string): Promise<void> {
  return new Promise((res, rej) => {
    const c = connect(sock);
    c.on("error", rej);
    c.on("connect", () => {
      c.write('{"execute":"qmp_capabilities"}\n{"execute":"quit"}\n');
    });
    c.on("close", () => res());
    setTimeout(() => { c.destroy(); res(); }, 5000);
  });
}

/** Boots and waits for SSH as `user`, failing early (with the console tail) if QEMU dies. */
export async function bootToSsh(opts: VmOptions & { user: string; keyFile: string; timeoutMs?: number }): Promise<{ vm: Vm; target: SshTarget; bootMs: number }> {
  const started = Date.now();
  const vm = await bootVm(opts);
  const target = vm.ssh(opts.user, opts.keyFile);
  try {
    await waitForSsh(target, { timeoutMs: opts.timeoutMs ?? 6 * 60_000, check: () => vm.assertAlive() });
  } catch (e) {
    const tail = vm.serialTail(30);
    await vm.stop();
    throw new Error(`${(e as Error).message}\nserial console tail:\n${tail}`);
  }
  return { vm, target, bootMs: Date.now() - started };
}

/**
 * Powers the guest off cleanly and returns its root disk, to be booted again with `fromDisk`
 * (each boot gets its own overlay, so the snapshot itself never changes).
 */
export async function snapshot(vm: Vm, target: SshTarget, timeoutMs = 5 * 60_000): Promise<string> {
  const { ssh } = await import("./ssh");
  await ssh(target, "sudo -n systemctl poweroff", { timeoutMs: 60_000 });
  const deadline = Date.now() + timeoutMs;
  while (vm.alive() && Date.now() < deadline) await sleep(500);
  if (vm.alive()) throw new Error(`VM ${vm.name} did not power off within ${timeoutMs} ms`);
  return vm.rootDisk;
}
