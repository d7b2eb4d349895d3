// Says loudly, once per run, when the VM suite cannot run here, and stops any VM a run left behind.
import { checkCapability, skipBanner } from "./lib/capability";
import { stopOrphans, stopRegistered } from "./lib/registry";

export default async function setup(): Promise<() => Promise<void>> {
  // This run's registry: its workers (forked after this) inherit the variable.
  process.env.NODEHOST_E2E_RUN = String(process.pid);
  await stopOrphans();
  const c = checkCapability();
  if (!c.ok) process.stderr.write(`\n${skipBanner(c)}\n\n`);
  return async () => {
    await stopRegistered();
    if (!c.ok) process.stderr.write(`\n${skipBanner(c)}\n\n`);
  };
}
