// Says loudly, once per run, when the VM suite cannot run here, and stops any VM a run left behind.
// When it can run, builds what every worker's VMs need (the base image, the accelerator choice, the
// service images) before the workers start: two workers building the same image at once would
// do the work twice on a cold cache.
import { checkCapability, skipBanner } from "./lib/capability";
import { ensureBaseImage } from "./lib/image";
import { stopOrphans, stopRegistered } from "./lib/registry";
import { ensureServiceImages } from "./lib/service-images";
import { detectAccel } from "./lib/vm";

export default async function setup(): Promise<() => Promise<void>> {
  // This run's registry: its workers (forked after this) inherit the variable.
  process.env.NODEHOST_E2E_RUN = String(process.pid);
  await stopOrphans();
  const c = checkCapability();
  if (!c.ok) process.stderr.write(`\n${skipBanner(c)}\n\n`);
  else {
    const image = await ensureBaseImage();
    await detectAccel(image);
    await ensureServiceImages();
  }
  return async () => {
    await stopRegistered();
    if (!c.ok) process.stderr.write(`\n${skipBanner(c)}\n\n`);
  };
}
