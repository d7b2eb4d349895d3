// `npm run local`: the whole stack on a local VM, for trying it without a cloud account.
// `npm run local -- --stack <name>` runs the app as that stack's file configures it (its app and
// site keys; lib/local-config.ts). `npm run local -- --down` stops it and deletes its state.
// `npm run local -- --audit` runs a whole lynis audit on the running VM (about 16 min under TCG)
// and prints its hardening index and what it found that docs/host-steps.md does not explain.
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { checkCapability, skipBanner } from "./lib/capability";
import { findDaemon } from "./lib/daemon";
import { BASIC_AUTH_PASSWORD, BASIC_AUTH_USER, bootHost, DEPLOY_USER, E2E_APP_AND_SITE, e2eConfig, SITE_NAMES, startWorld, type Host } from "./lib/harness";
import { localStack } from "./lib/local-config";
import { LYNIS_MIN_INDEX, lynisAudit, undocumentedFindings } from "./lib/lynis";
import { repoRoot } from "./lib/paths";
import { cachePath } from "./lib/paths";
import { replay, StepFailedError } from "./lib/replay";
import { sshCommandLine, sshOk } from "./lib/ssh";
import { freePort, loadVm, pidAlive } from "./lib/vm";

const dir = cachePath("local");
const worldFile = join(dir, "world.json");
const vmDir = join(dir, "vm");

async function down(): Promise<void> {
  if (existsSync(join(vmDir, "vm.json"))) {
    const vm = loadVm(vmDir);
    if (vm.alive()) {
      await vm.stop();
      console.log(`stopped VM (QEMU pid ${vm.pid})`);
    }
  }
  for (const [sub, name] of [["pebble", "pebble"], ["pebble", "challtestsrv"], ["s3", "s3rver"]]) {
    const d = findDaemon(join(dir, sub), name);
    if (d) {
      await d.stop();
      console.log(`stopped ${name} (pid ${d.pid})`);
    }
  }
  rmSync(dir, { recursive: true, force: true });
  console.log(`removed ${dir}`);
}

async function up(stack: string | undefined): Promise<void> {
  // Read first: a wrong stack name or file fails before anything starts.
  const local = stack
    ? localStack(repoRoot, stack, E2E_APP_AND_SITE)
    : { overrides: {}, notes: [] };
  for (const n of local.notes) console.log(n);
  const o = local.overrides as { app?: { healthPath?: string }; nginx?: { basicAuthUser?: string } };
  const access = { healthPath: o.app?.healthPath ?? "/api/health", user: o.nginx?.basicAuthUser ?? BASIC_AUTH_USER };
  const cap = checkCapability();
  if (!cap.ok) {
    console.error(skipBanner(cap));
    process.exit(2);
  }
  // Pebble validates on the host port forwarded to the guest's 80: fixed for this local stack.
  const saved = existsSync(worldFile) ? (JSON.parse(readFileSync(worldFile, "utf8")) as { httpPort: number }) : undefined;
  const httpPort = saved?.httpPort ?? (await freePort());
  mkdirSync(dir, { recursive: true });
  writeFileSync(worldFile, JSON.stringify({ httpPort }));
  const world = await startWorld({ dir, detached: true, httpPort, log: (s) => console.log(s) });

  let host: Pick<Host, "vm" | "target" | "statePath" | "hostKey">;
  const running = existsSync(join(vmDir, "vm.json")) ? loadVm(vmDir) : undefined;
  if (running && pidAlive(running.pid)) {
    console.log(`VM already running (QEMU pid ${running.pid}); replaying changed steps only`);
    const target = running.ssh(DEPLOY_USER, world.key.privateKeyFile);
    const hostKey = (await sshOk(target, "cat /etc/ssh/ssh_host_ed25519_key.pub")).trim();
    host = { vm: running, target, hostKey, statePath: join(vmDir, "replay-state.json") };
  } else {
    rmSync(vmDir, { recursive: true, force: true });
    console.log("booting a fresh VM (about 45 s under emulation)");
    const h = await bootHost(world, { name: "nodehost-local", dir: vmDir, keepOnExit: true, dataDisk: join(dir, "volume.raw"), dataDiskGiB: 10 });
    console.log(`VM up in ${(h.bootMs / 1000).toFixed(0)} s (${h.vm.accel})`);
    host = h;
  }
  const { raw, secretKeys } = e2eConfig(world, host.vm, local.overrides, host.hostKey);
  try {
    const r = await replay({ config: raw, secretKeys, target: host.target, statePath: host.statePath, logFile: join(vmDir, "steps.log"), log: (s) => console.log(s) });
    console.log(r.ran.length ? `provisioned in ${(r.totalMs / 1000).toFixed(0)} s` : "nothing changed");
  } catch (e) {
    console.error(e instanceof StepFailedError ? e.message : e);
    console.error(`step output: ${join(vmDir, "steps.log")}; the VM is still running (SSH below).`);
    printAccess(host, world.pebble.issuerRootPem, access);
    process.exit(1);
  }
  printAccess(host, world.pebble.issuerRootPem, access);
}

function printAccess(host: Pick<Host, "vm" | "target">, rootPem: string, access: { healthPath: string; user: string }): void {
  const ca = join(dir, "pebble-root.pem");
  writeFileSync(ca, rootPem);
  const p = host.vm.ports;
  const site = SITE_NAMES[0];
  console.log(`
The stack runs on a local VM (its certificate comes from a local Pebble CA).
  URL:        https://${site}:${p.https}/
  try:        curl --cacert ${ca} --resolve ${site}:${p.https}:127.0.0.1 https://${site}:${p.https}${access.healthPath}
  or add:     127.0.0.1 ${SITE_NAMES.join(" ")}   (to /etc/hosts; the browser will not trust the test CA)
  UI login:   ${access.user} / ${BASIC_AUTH_PASSWORD}
  SSH:        ${sshCommandLine(host.target)}
  HTTP:       http://127.0.0.1:${p.http}/ (redirects to HTTPS)
  stop:       npm run local -- --down   (stops the VM, Pebble and the S3 server, deletes ${dir})
`);
}

async function audit(): Promise<void> {
  const vm = existsSync(join(vmDir, "vm.json")) ? loadVm(vmDir) : undefined;
  if (!vm?.alive()) throw new Error("no local VM is running: `npm run local` first");
  console.log("lynis audit system (about 16 min under emulation)");
  const a = await lynisAudit(vm.ssh(DEPLOY_USER, join(dir, "id_ed25519")));
  console.log(`lynis ${a.version}: hardening index ${a.index} in ${a.seconds.toFixed(0)} s; ${a.suggestions.size} suggestions, ${a.warnings.size} warnings`);
  for (const [id, text] of [...a.warnings, ...a.suggestions]) console.log(`  ${id}: ${text}`);
  const unexplained = undocumentedFindings(a);
  console.log(unexplained.length ? `not in docs/host-steps.md:\n  ${unexplained.join("\n  ")}` : "every finding is in docs/host-steps.md");
  if (unexplained.length || a.index < LYNIS_MIN_INDEX) process.exit(1);
}

const stackAt = process.argv.indexOf("--stack");
(process.argv.includes("--down") ? down() : process.argv.includes("--audit") ? audit() : up(stackAt > 0 ? process.argv[stackAt + 1] ?? "" : undefined)).catch((e) => {
  console.error(e);
  process.exit(1);
});
