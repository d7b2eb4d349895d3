// What the VM suite's files ask of a provisioned host alike: its site over HTTPS with the test CA,
// the health wait, and the host checks that a reboot must keep (the metadata guard, the kernel
// settings).
import { expect } from "vitest";
import { SITE_NAMES, type Host, type World } from "./harness";
import { ssh, sshOk } from "./ssh";
import { webUntil, type WebRequest } from "./web";

export const SITE = SITE_NAMES[0];

/** A request to `path` on the host's site, over HTTPS, trusting the world's test CA. */
export const siteRequest = (world: World, host: Host, path: string, extra: Partial<WebRequest> = {}): WebRequest =>
  ({ name: SITE, port: host.vm.ports.https, path, https: true, ca: world.pebble.issuerRootPem, ...extra });

/** Waits until the site's /api/health answers 200. */
export const waitHealthy = (world: World, host: Host, timeoutMs: number) =>
  webUntil(siteRequest(world, host, "/api/health"), (r) => r.status === 200, timeoutMs);

/**
 * The metadata service (whose user-data holds the droplet's SSH host key) refuses the app user in
 * the guest's own kernel. The rule is checked first: without it the request would leave the VM
 * for a real 169.254.169.254, and tests send nothing off this machine.
 */
export async function expectMetadataClosedToApp(host: Host): Promise<void> {
  const uid = (await sshOk(host.target, "id -u nodeapp")).trim();
  expect(await sshOk(host.target, "sudo -n nft list table inet nodehost_metadata_guard")).toMatch(new RegExp(`ip daddr 169\\.254\\.169\\.254 meta skuid ${uid} reject`));
  const r = await ssh(host.target, "sudo -n -u nodeapp curl -sS -m 10 http://169.254.169.254/metadata/v1/user-data");
  // curl's wording moved from "Couldn't" to "Could not" (8.x); either is the refusal.
  expect([r.code, r.stderr]).toEqual([7, expect.stringMatching(/Could(n't| not) connect to server/)]);
}

/** base.sh's kernel settings, as lynis' scan profile (KRNL-6000) wants them; written out here so a dropped line fails. */
export const HARDENED_SYSCTL: Record<string, string> = {
  "fs.suid_dumpable": "0", "kernel.core_pattern": "|/bin/false", "kernel.core_uses_pid": "1",
  "fs.protected_fifos": "2", "fs.protected_regular": "2", "kernel.kptr_restrict": "2", "kernel.sysrq": "0",
  "kernel.yama.ptrace_scope": "1", "kernel.unprivileged_bpf_disabled": "1", "net.core.bpf_jit_harden": "2",
  "dev.tty.ldisc_autoload": "0", "net.ipv4.conf.all.send_redirects": "0", "net.ipv4.conf.all.accept_redirects": "0",
  "net.ipv6.conf.all.accept_redirects": "0", "net.ipv4.conf.default.accept_source_route": "0",
};

/** The live values of HARDENED_SYSCTL's keys. */
export const liveSysctl = async (host: Host) =>
  Object.fromEntries((await sshOk(host.target, `sudo -n sysctl ${Object.keys(HARDENED_SYSCTL).join(" ")}`)).trim().split("\n").map((l) => l.split(" = ")));
