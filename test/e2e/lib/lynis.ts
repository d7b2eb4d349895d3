// A lynis audit of a provisioned host (issue 12): the hardening index and every suggestion and
// warning, read from lynis' own report file, each checked against the list of findings that
// docs/host-steps.md says stay and why. Under TCG a full audit takes about 16 minutes, so it runs
// on demand: `npm run local -- --audit` on the local stack, or the VM suite with
// NODEHOST_E2E_LYNIS=1 (test/e2e/README.md).
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { repoRoot } from "./paths";
import { sshOk, type SshTarget } from "./ssh";

/** Issue 12's bar for the hardening index. */
export const LYNIS_MIN_INDEX = 80;

export interface LynisAudit {
  index: number;
  version: string;
  /** Test ids (e.g. SSH-7408), each once, with the first text lynis gave for it. */
  suggestions: Map<string, string>;
  warnings: Map<string, string>;
  seconds: number;
}

/** `key=value` and `key[]=value` lines of /var/log/lynis-report.dat (lynis' report format). */
export function parseLynisReport(report: string): Omit<LynisAudit, "seconds"> {
  const suggestions = new Map<string, string>();
  const warnings = new Map<string, string>();
  let index = NaN;
  let version = "";
  for (const line of report.split("\n")) {
    const m = /^([a-z_]+)(\[\])?=(.*)$/.exec(line);
    if (!m) continue;
    const [, key, , value] = m;
    if (key === "hardening_index") index = Number(value);
    else if (key === "lynis_version") version = value;
    else if (key === "suggestion" || key === "warning") {
      const [id, text] = value.split("|");
      const into = key === "suggestion" ? suggestions : warnings;
      if (!into.has(id)) into.set(id, text);
    }
  }
  if (!Number.isFinite(index)) throw new Error("the lynis report has no hardening_index line");
  return { index, version, suggestions, warnings };
}

/** The lynis test ids docs/host-steps.md's "What lynis still reports" table lists, with its reasons. */
export function documentedLynisFindings(): Map<string, string> {
  const doc = readFileSync(join(repoRoot, "docs/host-steps.md"), "utf8");
  const section = doc.split(/^### What lynis still reports/m)[1]?.split(/^#/m)[0];
  if (!section) throw new Error("docs/host-steps.md has no 'What lynis still reports' section");
  const rows = new Map<string, string>();
  for (const m of section.matchAll(/^\| ([A-Z]+(?:-\d{4})?) \| (.+?) \|$/gm)) rows.set(m[1], m[2]);
  return rows;
}

/** Installs lynis from the host's Debian archive and runs the whole audit as root. */
export async function lynisAudit(t: SshTarget): Promise<LynisAudit> {
  await sshOk(t, "sudo -n env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq lynis >/dev/null", { timeoutMs: 15 * 60_000 });
  const started = Date.now();
  await sshOk(t, "sudo -n lynis audit system --quick --no-colors --report-file /var/tmp/nodehost-lynis.dat >/dev/null", { timeoutMs: 45 * 60_000 });
  const seconds = (Date.now() - started) / 1000;
  return { ...parseLynisReport(await sshOk(t, "sudo -n cat /var/tmp/nodehost-lynis.dat")), seconds };
}

/** What an audit found that the docs do not explain, for an assertion or a person to read. */
export function undocumentedFindings(a: LynisAudit): string[] {
  const known = documentedLynisFindings();
  return [...a.suggestions, ...a.warnings].filter(([id]) => !known.has(id)).map(([id, text]) => `${id}: ${text}`);
}
