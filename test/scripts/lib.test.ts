// scripts/lib.sh run for real in bash: parameter checks, idempotent writes, apt_install's skip path.
import * as fs from "fs";
import * as path from "path";
import { describe, expect, it } from "vitest";
import { run, SCRIPTS, tmpDir } from "./helpers";

const LIB = path.join(SCRIPTS, "lib.sh");
function bash(script: string, env: NodeJS.ProcessEnv = {}, input?: string) {
  return run("bash", ["-c", `. ${JSON.stringify(LIB)}\n${script}`], { env, input });
}

describe("require_vars", () => {
  it("names every missing parameter in one error and exits 1", () => {
    const r = bash("require_vars A B C D; echo reached", { B: "", D: "x" });
    expect(r.status).toBe(1);
    expect(r.stderr.trim()).toBe("error: missing parameters: A C");
    expect(r.stdout).not.toContain("reached");
  });
  it("require_nonempty also rejects empty values", () => {
    const r = bash("require_nonempty A B C", { A: "", C: "1" });
    expect(r.status).toBe(1);
    expect(r.stderr.trim()).toBe("error: empty or missing parameters: A B");
  });
});

describe("write_file", () => {
  it("writes once, then reports nothing while content, mode and owner stay the same", () => {
    const dir = tmpDir();
    const f = path.join(dir, "sub", "conf");
    const script = `write_file ${f} 0640 root:root <<<"hello"; echo "changed=$WRITE_CHANGED"; step_done demo`;
    const first = bash(script);
    expect(first.status).toBe(0);
    expect(first.stdout).toBe(`changed: ${f}\nchanged=1\ndone: demo (1 changed)\n`);
    expect(fs.readFileSync(f, "utf8")).toBe("hello\n");
    expect((fs.statSync(f).mode & 0o777).toString(8)).toBe("640");

    const second = bash(script);
    expect(second.stdout).toBe("changed=0\nunchanged: demo\n");
    expect(fs.readdirSync(path.dirname(f))).toEqual(["conf"]); // no temp file left behind
  });
  it("fixes a wrong mode without rewriting content, and rewrites changed content", () => {
    const dir = tmpDir();
    const f = path.join(dir, "conf");
    bash(`write_file ${f} 0600 root <<<"a"`);
    fs.chmodSync(f, 0o644);
    const mode = bash(`write_file ${f} 0600 root <<<"a"; echo "changed=$WRITE_CHANGED"`);
    expect(mode.stdout).toBe(`changed: ${f} (mode/owner)\nchanged=1\n`);
    expect((fs.statSync(f).mode & 0o777).toString(8)).toBe("600");
    const content = bash(`write_file ${f} 0600 root <<<"b"; echo "changed=$WRITE_CHANGED"`);
    expect(content.stdout).toBe(`changed: ${f}\nchanged=1\n`);
    expect(fs.readFileSync(f, "utf8")).toBe("b\n");
  });
  it("accepts numeric ids that exist only inside a container", () => {
    const f = path.join(tmpDir(), "redis.conf");
    const r = bash(`write_file ${f} 0600 999:999 <<<"x"; stat -c '%u:%g %a' ${f}`);
    expect(r.status).toBe(0);
    expect(r.stdout.trim().split("\n").pop()).toBe("999:999 600");
  });
});

describe("write_env", () => {
  it("gives every value back exactly when the file is sourced, and runs nothing, whatever it holds", () => {
    const dir = tmpDir();
    const f = path.join(dir, "tool.env");
    const mark = path.join(dir, "ran");
    const hostile = {
      A: `it's "quoted"`, B: `$(touch ${mark})`, C: "`touch " + mark + "`", D: "line1\nline2; touch " + mark,
      E: "../../etc/passwd", F: "", G: "back\\slash $HOME ${PATH}",
    };
    const w = bash(`write_env ${f} 0600 root:root A B C D E F G; echo "changed=$WRITE_CHANGED"`, hostile);
    expect(w.status).toBe(0);
    expect(w.stdout).toContain("changed=1");
    const names = Object.keys(hostile);
    const r = run("bash", ["-c", `set -eu; . ${JSON.stringify(f)}; for n in ${names.join(" ")}; do printf '%s\\0' "\${!n}"; done`], { env: {} });
    expect(r.status).toBe(0);
    expect(r.stdout.split("\0").slice(0, -1)).toEqual(Object.values(hostile));
    expect(fs.existsSync(mark)).toBe(false);
    expect(bash(`write_env ${f} 0600 root:root A B C D E F G; echo "changed=$WRITE_CHANGED"`, hostile).stdout).toBe("changed=0\n");
  });
  it("stops the step on an unset or bad name, and writes nothing", () => {
    const f = path.join(tmpDir(), "tool.env");
    const unset = bash(`write_env ${f} 0600 root:root A NOT_SET; echo reached`, { A: "x" });
    expect(unset.status).toBe(1);
    expect(unset.stderr).toContain("write_env: NOT_SET is not set");
    expect(unset.stdout).not.toContain("reached");
    expect(bash(`write_env ${f} 0600 root:root 'A;B'`, {}).stderr).toContain("write_env: bad name A;B");
    expect(fs.existsSync(f)).toBe(false);
  });
});

describe("install_b64", () => {
  it("decodes the shipped tool and installs it executable, idempotently", () => {
    const f = path.join(tmpDir(), "bin", "tool");
    const b64 = Buffer.from("#!/bin/sh\necho tool-ran\n").toString("base64");
    expect(bash(`install_b64 ${b64} ${f} 0755`).stdout).toBe(`changed: ${f}\n`);
    expect(run(f, []).stdout).toBe("tool-ran\n");
    expect(bash(`install_b64 ${b64} ${f} 0755; step_done t`).stdout).toBe("unchanged: t\n");
  });
});

describe("apt_install", () => {
  it("does nothing (no apt-get, no output) when every package is installed", () => {
    // apt-get is shadowed: reaching it would fail the test.
    const dir = tmpDir();
    fs.writeFileSync(path.join(dir, "apt-get"), "#!/bin/sh\necho apt-get-called >&2\nexit 9\n", { mode: 0o755 });
    const r = bash("apt_install bash coreutils; step_done apt", { PATH: `${dir}:${process.env.PATH}` });
    expect(r.stderr).toBe("");
    expect(r.stdout).toBe("unchanged: apt\n");
  });
  // A fake apt-get that logs its calls; `install` fails while the file `fail-install` exists
  // (and removes it: the archive answers once the lists are refreshed).
  const fakeApt = () => {
    const dir = tmpDir();
    const logf = path.join(dir, "calls");
    fs.writeFileSync(path.join(dir, "apt-get"), `#!/bin/sh
echo "$DEBIAN_FRONTEND $*" >> ${logf}
case "$*" in *" install "*) if [ -e ${dir}/fail-install ]; then rm ${dir}/fail-install; echo "E: Failed to fetch ... 404 Not Found" >&2; exit 100; fi;; esac
`, { mode: 0o755 });
    const stamp = path.join(dir, "state", "apt-lists-refreshed");
    const env = { PATH: `${dir}:${process.env.PATH}`, NODEHOST_APT_STAMP: stamp };
    const calls = () => (fs.existsSync(logf) ? fs.readFileSync(logf, "utf8").trim().split("\n").map((c) => c.replace(/^noninteractive -q -o DPkg::Lock::Timeout=600 /, "")) : []);
    return { dir, stamp, env, calls };
  };
  const INSTALL = /^-y .* install --no-install-recommends nodehost-no-such-package$/;

  it("installs only the missing ones, without recommends and with the lock timeout, after refreshing the lists", () => {
    const apt = fakeApt();
    const r = bash("apt_install bash nodehost-no-such-package", apt.env);
    expect(r.status).toBe(0);
    expect(apt.calls()).toEqual(["update", expect.stringMatching(INSTALL)]);
    expect(r.stdout).toBe("changed: installed nodehost-no-such-package\n");
    expect(fs.existsSync(apt.stamp)).toBe(true);
  });

  it("refreshes the lists once per up, not once per step: a later step uses lists under 30 min old", () => {
    const apt = fakeApt();
    expect(bash("apt_install nodehost-no-such-package", apt.env).status).toBe(0);
    // The next step (a new bash, as each step is) a moment later.
    expect(bash("apt_install nodehost-no-such-package", apt.env).status).toBe(0);
    expect(apt.calls().filter((c) => c === "update")).toHaveLength(1);
    // Lists refreshed by a step two hours ago (an earlier up) are refreshed again.
    fs.utimesSync(apt.stamp, new Date(Date.now() - 2 * 3600_000), new Date(Date.now() - 2 * 3600_000));
    expect(bash("apt_install nodehost-no-such-package", apt.env).status).toBe(0);
    expect(apt.calls().filter((c) => c === "update")).toHaveLength(2);
  });

  it("refreshes and tries again once when an install fails on lists an earlier step fetched", () => {
    const apt = fakeApt();
    expect(bash("apt_install nodehost-no-such-package", apt.env).status).toBe(0);
    fs.writeFileSync(path.join(apt.dir, "fail-install"), "");
    const r = bash("apt_install nodehost-no-such-package", apt.env);
    expect(r.status).toBe(0);
    expect(r.stdout).toContain("apt: install failed on lists from an earlier step; refreshing them and trying again");
    expect(apt.calls().slice(2)).toEqual([expect.stringMatching(INSTALL), "update", expect.stringMatching(INSTALL)]);
  });

  it("does not retry an install that failed on lists it has just refreshed", () => {
    const apt = fakeApt();
    fs.writeFileSync(path.join(apt.dir, "fail-install"), "");
    const r = bash("apt_install nodehost-no-such-package", apt.env);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain("error: apt-get install nodehost-no-such-package failed");
    expect(apt.calls()).toEqual(["update", expect.stringMatching(INSTALL)]);
  });
});

describe("apt_get", () => {
  // A stand-in apt-get that fails like `apt-get update` under a held lists lock for its first N calls.
  // waitS: apt_get measures its wait with bash's whole-second $SECONDS, so a 1 s wait can end
  // at the first failure when a second boundary falls just after the start; the tests that
  // must see retries give it far more than they need.
  const lockedApt = (failures: number, message = "E: Could not get lock /var/lib/apt/lists/lock. It is held by process 42 (apt-get)", waitS = 60) => {
    const dir = tmpDir();
    const count = path.join(dir, "count");
    fs.writeFileSync(path.join(dir, "apt-get"), `#!/bin/sh
n=$(cat ${count} 2>/dev/null || echo 0); echo $((n + 1)) > ${count}
if [ "$n" -lt ${failures} ]; then echo '${message}' >&2; exit 100; fi
echo "apt-get $*"
`, { mode: 0o755 });
    return { env: { PATH: `${dir}:${process.env.PATH}`, NODEHOST_APT_RETRY_S: "0.1", NODEHOST_APT_WAIT_S: String(waitS) }, calls: () => Number(fs.readFileSync(count, "utf8")) };
  };
  it("retries while another process holds a package lock, then succeeds", () => {
    const apt = lockedApt(2);
    const r = bash("apt_get update", apt.env);
    expect(r.status).toBe(0);
    expect(apt.calls()).toBe(3);
    expect(r.stdout).toContain("a package lock is held by another process; retrying");
    expect(r.stdout).toContain("apt-get -q -o DPkg::Lock::Timeout=600 update");
  });
  it("gives up with apt's own error once the wait is over", () => {
    const apt = lockedApt(1000, undefined, 1);
    const r = bash("apt_get update", apt.env);
    expect(r.status).toBe(100);
    expect(r.stderr).toContain("Could not get lock");
  });
  it("does not retry a failure that is not a lock", () => {
    const apt = lockedApt(5, "E: Unable to locate package nope");
    const r = bash("apt_get install nope", apt.env);
    expect(r.status).toBe(100);
    expect(apt.calls()).toBe(1);
  });
  // apt's own words (apt-pkg/deb/debsystem.cc) while dpkg's journal is unfinished; a stand-in
  // dpkg finishes it. The real thing, a step killed inside dpkg, is test/e2e's git release.
  const INTERRUPTED = "E: dpkg was interrupted, you must manually run 'dpkg --configure -a' to correct the problem.";
  const interruptedDpkg = (dpkgWorks: boolean) => {
    const bin = tmpDir();
    const dpkgLog = path.join(bin, "dpkg-calls");
    fs.writeFileSync(path.join(bin, "journal"), "");
    fs.writeFileSync(path.join(bin, "apt-get"), `#!/bin/sh
if [ -e ${bin}/journal ]; then echo "${INTERRUPTED}" >&2; exit 100; fi
echo "apt-get $*"
`, { mode: 0o755 });
    fs.writeFileSync(path.join(bin, "dpkg"), `#!/bin/sh
echo "$*" >> ${dpkgLog}
${dpkgWorks ? `rm -f ${bin}/journal` : "exit 2"}
`, { mode: 0o755 });
    return {
      env: { PATH: `${bin}:${process.env.PATH}`, NODEHOST_APT_RETRY_S: "0.1" },
      dpkgCalls: () => fs.readFileSync(dpkgLog, "utf8").trim().split("\n"),
    };
  };
  it("finishes an interrupted dpkg (dpkg --configure -a, old config kept), then runs the command", () => {
    const apt = interruptedDpkg(true);
    const r = bash("apt_get -y install git", apt.env);
    expect(r.status).toBe(0);
    expect(r.stdout).toContain("apt: dpkg was interrupted by an earlier run; finishing it with dpkg --configure -a");
    expect(r.stdout).toContain("apt-get -q -o DPkg::Lock::Timeout=600 -y install git");
    expect(apt.dpkgCalls()).toEqual(["--force-confdef --force-confold --configure -a"]);
  });
  it("gives up with apt's error when dpkg --configure -a cannot finish it, after three tries", () => {
    const apt = interruptedDpkg(false);
    const r = bash("apt_get -y install git", apt.env);
    expect(r.status).toBe(100);
    expect(r.stderr).toContain("dpkg was interrupted");
    expect(apt.dpkgCalls()).toHaveLength(3);
  });
});

describe("apt_queue", () => {
  // A stand-in systemctl that calls apt's own timer services active for its first N checks.
  const timersBusy = (checks: number) => {
    const dir = tmpDir();
    const count = path.join(dir, "count");
    fs.writeFileSync(path.join(dir, "systemctl"), `#!/bin/sh
n=$(cat ${count} 2>/dev/null || echo 0); echo $((n + 1)) > ${count}
[ "$n" -lt ${checks} ]
`, { mode: 0o755 });
    return { env: { PATH: `${dir}:${process.env.PATH}`, NODEHOST_APT_RETRY_S: "0.1" }, checks: () => Number(fs.readFileSync(count, "utf8")) };
  };
  it("runs the command once a run of apt's own timers has ended, with its exit status", () => {
    const t = timersBusy(3);
    const r = bash("apt_queue sh -c 'echo ran; exit 7'", t.env);
    expect(r.status).toBe(7);
    expect(r.stdout).toContain("ran");
    expect(t.checks()).toBe(4);
  });
  it("runs one command at a time: a second waits for the first to leave the queue", () => {
    const dir = tmpDir();
    const log = path.join(dir, "log");
    const one = (n: number) => `apt_queue sh -c 'echo start-${n} >> ${log}; sleep 0.5; echo end-${n} >> ${log}'`;
    const r = bash(`${one(1)} & sleep 0.1; ${one(2)}; wait`, { NODEHOST_APT_RETRY_S: "0.1" });
    expect(r.status).toBe(0);
    expect(fs.readFileSync(log, "utf8").trim().split("\n")).toEqual(["start-1", "end-1", "start-2", "end-2"]);
  });
});

describe("pending_begin / pending_due / pending_end", () => {
  // The apply (a restart) is logged; `die-before-apply` stops the run between the write and it.
  const step = (dir: string, content: string, dieBeforeApply = false) => bash(`
pending_begin svc
write_file ${dir}/svc.conf 0644 "$(id -u)" <<<${JSON.stringify(content)}
${dieBeforeApply ? "exit 137" : ""}
if pending_due svc; then echo applied >> ${dir}/applies; fi
pending_end svc`, { NODEHOST_PENDING_DIR: path.join(dir, "pending") });
  const applies = (dir: string) => (fs.existsSync(path.join(dir, "applies")) ? fs.readFileSync(path.join(dir, "applies"), "utf8").trim().split("\n").length : 0);

  it("applies a change once, and nothing when nothing changed", () => {
    const dir = tmpDir();
    expect(step(dir, "a").status).toBe(0);
    expect(applies(dir)).toBe(1);
    expect(step(dir, "a").status).toBe(0);
    expect(applies(dir)).toBe(1);
    expect(step(dir, "b").status).toBe(0);
    expect(applies(dir)).toBe(2);
  });
  it("a run stopped between the write and the apply: the next run, finding the file already new, applies it", () => {
    const dir = tmpDir();
    expect(step(dir, "a").status).toBe(0);
    expect(step(dir, "b", true).status).toBe(137);
    expect([fs.readFileSync(path.join(dir, "svc.conf"), "utf8"), applies(dir)]).toEqual(["b\n", 1]);
    expect(step(dir, "b").status).toBe(0);
    expect(applies(dir)).toBe(2);
    expect(step(dir, "b").status).toBe(0);
    expect(applies(dir)).toBe(2);
  });
});

describe("daemon_reload_for", () => {
  const shim = (need: string) => {
    const dir = tmpDir();
    fs.writeFileSync(path.join(dir, "systemctl"), `#!/bin/sh\ncase "$1" in show) echo ${need};; *) echo "$*" >> ${dir}/calls;; esac\n`, { mode: 0o755 });
    return { env: { PATH: `${dir}:${process.env.PATH}` }, calls: () => (fs.existsSync(path.join(dir, "calls")) ? fs.readFileSync(path.join(dir, "calls"), "utf8") : "") };
  };
  it("reloads systemd only when it holds an older version of the unit than the disk", () => {
    const stale = shim("yes");
    expect(bash("daemon_reload_for docker", stale.env).status).toBe(0);
    expect(stale.calls()).toBe("daemon-reload\n");
    const fresh = shim("no");
    expect(bash("daemon_reload_for docker", fresh.env).status).toBe(0);
    expect(fresh.calls()).toBe("");
  });
});
