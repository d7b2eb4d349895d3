// app.gitFollow: a branch deployed on purpose. The program asks the repository which commit the
// branch names, at every preview and up, from the machine running Pulumi, with the same rules as
// the host's fetch (scripts/tools/nodehost-git-fetch: the deploy key only, no agent, the pinned
// server keys only). The commit becomes the release the host fetches, so a moved branch shows in
// the preview as a changed app step and a changed `appRelease` output.
import { execFileSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";

export interface GitRemote {
  url: string;
  ref: string;
  /** An SSH URL's deploy key (OpenSSH private key) and the server's "type base64" key lines. */
  deployKey?: string;
  hostKeys: string[];
}

/** A server key line as ssh's known_hosts takes it: "type base64", without the comment. */
export function hostKeyLine(k: string): string {
  return k.split(" ").slice(0, 2).join(" ");
}

/** The commit `ref` (a branch or tag) names at `url` now; a 40-hex ref is returned as it is. */
export function resolveGitRef(remote: GitRemote, timeoutMs = 60_000): string {
  if (/^[0-9a-f]{40}$/.test(remote.ref)) return remote.ref;
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    GIT_CONFIG_NOSYSTEM: "1",
    GIT_CONFIG_GLOBAL: "/dev/null",
    GIT_TERMINAL_PROMPT: "0",
    GIT_ASKPASS: "/bin/false",
  };
  const work = fs.mkdtempSync(path.join(os.tmpdir(), "nodehost-git-"));
  try {
    if (!remote.url.startsWith("https://")) {
      if (!remote.deployKey) throw new Error("an SSH app.gitUrl needs appGitDeployKey");
      const key = path.join(work, "key");
      const known = path.join(work, "known_hosts");
      fs.writeFileSync(key, remote.deployKey.endsWith("\n") ? remote.deployKey : `${remote.deployKey}\n`, { mode: 0o600 });
      fs.writeFileSync(known, remote.hostKeys.map((k) => `* ${hostKeyLine(k)}\n`).join(""), { mode: 0o600 });
      env.GIT_SSH_COMMAND = `ssh -F /dev/null -i ${key} -o IdentitiesOnly=yes -o IdentityAgent=none -o BatchMode=yes ` +
        `-o StrictHostKeyChecking=yes -o UserKnownHostsFile=${known} -o GlobalKnownHostsFile=/dev/null -o ConnectTimeout=30`;
    }
    let out: string;
    try {
      // `--` ends the options: the config has refused a URL or ref that starts with '-' as well.
      out = execFileSync("git", ["ls-remote", "--", remote.url, `refs/heads/${remote.ref}`, `refs/tags/${remote.ref}^{}`, `refs/tags/${remote.ref}`], {
        env, encoding: "utf8", timeout: timeoutMs, stdio: ["ignore", "pipe", "pipe"],
      });
    } catch (e) {
      const err = e as { stderr?: string; message: string };
      // The lines that say why (ssh's host key banner is a dozen lines of @ before its verdict).
      const lines = (err.stderr || err.message).split("\n").map((l) => l.trim()).filter(Boolean);
      const why = lines.filter((l) => /verification failed|Permission denied|fatal:|Could not|refused|timed out|not found/i.test(l));
      throw new Error(`nodehost:app.gitRef: cannot ask ${remote.url} which commit '${remote.ref}' is: ${(why.length ? why : lines.slice(-3)).join(" ")}`);
    }
    const lines = out.trim().split("\n").filter(Boolean).map((l) => l.split("\t"));
    // A branch first; for an annotated tag, the commit it points at (^{}), not the tag object.
    const pick = lines.find(([, r]) => r === `refs/heads/${remote.ref}`) ??
      lines.find(([, r]) => r === `refs/tags/${remote.ref}^{}`) ?? lines.find(([, r]) => r === `refs/tags/${remote.ref}`);
    if (!pick || !/^[0-9a-f]{40}$/.test(pick[0])) throw new Error(`nodehost:app.gitRef: no branch or tag '${remote.ref}' at ${remote.url}`);
    return pick[0];
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}
