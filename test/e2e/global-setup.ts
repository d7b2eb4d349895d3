// Says loudly, once per run, when the VM suite cannot run here, and stops any VM a run left behind.
import { checkCapability, skipBanner } from "./lib/capability";
import { stopRegistered } from "./lib/registry";

export default function setup(): () => Promise<void> {
  const c = checkCapability();
  if (!c.ok) process.stderr.write(`\n${skipBanner(c)}\n\n`);
  return async () => {
    await stopRegistered();
    if (!c.ok) process.stderr.write(`\n${skipBanner(c)}\n\n`);
  };
}
