// scripts/tools/nodehost-git-fetch against a real OpenSSH server on loopback serving a private
// repository: only the deploy key gets in, only the pinned server key is accepted, and a branch, a
// tag or a commit comes out as a tree without .git and its commit id.
import * as fs from "fs";
import * as path from "path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { resolveGitRef } from "../../components/host/git-ref";
import { git, keygen, SSHD, startGitServer, type GitServer } from "../e2e/lib/git-server";
import { missing, run, SCRIPTS, tmpDir } from "./helpers";

const TOOL = path.join(SCRIPTS, "tools", "nodehost-git-fetch");
const need = [...missing("git", "ssh", "ssh-keygen", SSHD), ...(process.getuid?.() === 0 ? [] : ["root (sshd)"])];
if (need.length) console.warn(`git fetch tests SKIPPED: missing ${need.join(", ")} (apt-get install openssh-server git)`);

describe.skipIf(need.length > 0)("nodehost-git-fetch: a private repository over SSH", () => {
  const dir = tmpDir("nodehost-git-");
  let server: GitServer;
  let url = "";
  let work = "";
  let repo = "";
  let hostKey = "";
  let otherKey = "";
  const commits: Record<string, string> = {};
  const files = (name: string, body: string) => {
    const f = path.join(dir, name);
    fs.writeFileSync(f, body, { mode: 0o600 });
    return f;
  };
  const fetch = (ref: string, env: Record<string, string> = {}, u = url) => {
    const dest = path.join(tmpDir("nodehost-git-dest-"), "src");
    const r = run(TOOL, [u, ref, dest], {
      env: { NODEHOST_GIT_KEY_FILE: server.deployKeyFile, NODEHOST_GIT_HOST_KEYS_FILE: files("pinned", `${hostKey}\n`), ...env },
      timeoutMs: 60_000,
    });
    return { ...r, dest };
  };

  beforeAll(async () => {
    server = await startGitServer(path.join(dir, "server"));
    hostKey = server.hostKey;
    otherKey = keygen(path.join(dir, "other-host"));
    keygen(path.join(dir, "stranger"));
    // The repository: main (two commits), a tag on the first, a branch with a slash.
    repo = server.repo;
    work = path.join(dir, "work");
    git(dir, "init", "-q", "-b", "main", work);
    fs.writeFileSync(path.join(work, "package.json"), '{"name":"private-app"}\n');
    git(work, "add", "-A");
    git(work, "commit", "-q", "-m", "one");
    commits.v1 = git(work, "rev-parse", "HEAD");
    git(work, "tag", "v1.0.0");
    git(work, "tag", "-a", "-m", "annotated", "v1.0.1");
    fs.writeFileSync(path.join(work, "server.js"), "// two\n");
    git(work, "add", "-A");
    git(work, "commit", "-q", "-m", "two");
    commits.main = git(work, "rev-parse", "HEAD");
    git(work, "checkout", "-q", "-b", "release/2026-12");
    fs.writeFileSync(path.join(work, "RELEASE"), "r\n");
    git(work, "add", "-A");
    git(work, "commit", "-q", "-m", "release");
    commits.release = git(work, "rev-parse", "HEAD");
    git(work, "push", "-q", repo, "main", "release/2026-12", "v1.0.0", "v1.0.1");
    url = server.url("127.0.0.1");
  }, 60_000);

  afterAll(() => {
    server?.stop();
  });

  it("checks out a branch, a branch with a slash, a tag and a commit, without .git, and prints the commit", () => {
    for (const [ref, want, hasServer] of [
      ["main", commits.main, true], ["release/2026-12", commits.release, true], ["v1.0.0", commits.v1, false], [commits.v1, commits.v1, false],
    ] as const) {
      const r = fetch(ref);
      expect(r.status, `${ref}: ${r.stderr}`).toBe(0);
      expect(r.stdout.trim()).toBe(want);
      expect(fs.existsSync(path.join(r.dest, "package.json"))).toBe(true);
      expect(fs.existsSync(path.join(r.dest, "server.js"))).toBe(hasServer);
      expect(fs.existsSync(path.join(r.dest, ".git"))).toBe(false);
    }
  });

  it("accepts no server key but the pinned one, and no key but the deploy key (nor an agent's)", () => {
    const wrongHost = fetch("main", { NODEHOST_GIT_HOST_KEYS_FILE: files("pinned-other", `${otherKey}\n`) });
    expect(wrongHost.status).not.toBe(0);
    expect(wrongHost.stderr).toMatch(/Host key verification failed/);
    expect(fs.readdirSync(wrongHost.dest).filter((f) => f !== ".git")).toEqual([]);
    const stranger = fetch("main", { NODEHOST_GIT_KEY_FILE: path.join(dir, "stranger"), SSH_AUTH_SOCK: "/nonexistent/agent" });
    expect(stranger.status).not.toBe(0);
    expect(stranger.stderr).toMatch(/Permission denied/);
    expect(fetch("main", { NODEHOST_GIT_KEY_FILE: "" }).stderr).toMatch(/needs the deploy key \(appGitDeployKey\)/);
    expect(fetch("main", { NODEHOST_GIT_HOST_KEYS_FILE: "" }).stderr).toMatch(/needs the git server's keys \(app\.gitHostKeys\)/);
  });

  it("app.gitFollow: the program learns the commit a branch or tag names now, with the same keys, and the host fetches exactly it", () => {
    const remote = (ref: string, hostKeys = [hostKey]) =>
      ({ url, ref, deployKey: fs.readFileSync(server.deployKeyFile, "utf8"), hostKeys });
    expect(resolveGitRef(remote("main"))).toBe(commits.main);
    expect(resolveGitRef(remote("release/2026-12"))).toBe(commits.release);
    // An annotated tag: the commit it points at, not the tag object.
    expect(resolveGitRef(remote("v1.0.1"))).toBe(commits.v1);
    expect(() => resolveGitRef(remote("gone"))).toThrow(/nodehost:app\.gitRef: no branch or tag 'gone'/);
    expect(() => resolveGitRef(remote("main", [otherKey]))).toThrow(/nodehost:app\.gitRef: cannot ask .* which commit 'main' is: .*Host key verification failed/);
    // The branch moves: the next preview deploys the new commit, which the host fetches by its id.
    git(work, "checkout", "-q", "main");
    fs.writeFileSync(path.join(work, "three.js"), "// three\n");
    git(work, "add", "-A");
    git(work, "commit", "-q", "-m", "three");
    git(work, "push", "-q", repo, "main");
    const moved = resolveGitRef(remote("main"));
    expect(moved).toBe(git(work, "rev-parse", "HEAD"));
    expect(moved).not.toBe(commits.main);
    const r = fetch(moved);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe(moved);
    expect(fs.existsSync(path.join(r.dest, "three.js"))).toBe(true);
  });

  it("says which ref is missing, and refuses hostile refs and URLs before git runs", () => {
    const none = fetch("no-such-branch");
    expect(none.status).not.toBe(0);
    expect(none.stderr).toMatch(/no branch, tag or commit 'no-such-branch'/);
    for (const ref of ["--upload-pack=touch /tmp/p", "main..evil", "x;reboot", "release.lock", "a/"]) {
      const r = fetch(ref);
      expect([ref, r.status, r.stderr.trim()]).toEqual([ref, 1, `nodehost-git-fetch: bad ref '${ref}'`]);
    }
    for (const u of ["ext::sh -c touch% /tmp/p", "ssh://-oProxyCommand=touch%20p/x.git", "file:///etc", "http://example.com/x.git", `${url}$(id)`]) {
      const r = fetch("main", {}, u);
      expect([u, r.status, r.stderr]).toEqual([u, 1, expect.stringMatching(/^nodehost-git-fetch: bad URL/)]);
    }
  });
});
