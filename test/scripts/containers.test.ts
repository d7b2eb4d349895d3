// nodehost-containers' switch (`ensure`) against a docker CLI stand-in (fixtures/containers-docker)
// that keeps containers as files and logs every call: which container is stopped, with what
// timeout, set aside, proven and removed. The real daemon, images and health checks are the VM
// suite's (the PostgreSQL image switch, the managed client's container).
import * as fs from "fs";
import * as path from "path";
import { beforeEach, describe, expect, it } from "vitest";
import { run, SCRIPTS, tmpDir } from "./helpers";

const TOOL = path.join(SCRIPTS, "tools", "nodehost-containers");
const FIXTURE = path.join(__dirname, "fixtures", "containers-docker");
const OLD = `sha256:${"a".repeat(64)}`;
const NEXT = `sha256:${"b".repeat(64)}`;
const NAME = "nodehost-pg-client";

describe("nodehost-containers ensure", () => {
  let root: string;
  let env: NodeJS.ProcessEnv;
  const settings = () => path.join(root, "settings", NAME);
  /** The container's settings as the docker-data step writes them: run options, "--", the command. */
  const configure = (opts: { runArgs: string[]; extra?: string; health?: number }) => {
    fs.mkdirSync(settings(), { recursive: true });
    fs.writeFileSync(path.join(settings(), "ref"), "postgres:17\n");
    fs.writeFileSync(path.join(settings(), "health"), `${opts.health ?? 30}\n`);
    fs.writeFileSync(path.join(settings(), "extra"), `${opts.extra ?? ""}\n`);
    fs.writeFileSync(path.join(settings(), "args"), [...opts.runArgs, "--", "infinity"].map((a) => `${a}\0`).join(""));
  };
  const ensure = (image: string) => run(TOOL, ["ensure", NAME, image], { env, timeoutMs: 60_000 });
  const calls = () => fs.readFileSync(path.join(root, "docker", "calls"), "utf8").trim().split("\n");
  const containers = () => fs.readdirSync(path.join(root, "docker", "containers")).sort();
  const file = (container: string, f: string) => fs.readFileSync(path.join(root, "docker", "containers", container, f), "utf8").trim();

  beforeEach(() => {
    root = tmpDir("nodehost-containers-");
    const bin = path.join(root, "bin");
    fs.mkdirSync(bin);
    fs.symlinkSync(FIXTURE, path.join(bin, "docker"));
    fs.mkdirSync(path.join(root, "docker"));
    fs.writeFileSync(path.join(root, "docker", "images"), `${OLD}\n${NEXT}\n`);
    fs.writeFileSync(path.join(root, "docker", "calls"), "");
    env = {
      PATH: `${bin}:${process.env.PATH}`,
      FAKE_DOCKER_DIR: path.join(root, "docker"),
      NODEHOST_CONTAINERS: path.join(root, "settings"),
      NODEHOST_STATUS: path.join(root, "status"),
      NODEHOST_LOCK: path.join(root, "lock", "backup.lock"),
    };
  });

  it("stops the container it replaces with that container's own stop timeout, 60 s when it has none, and removes it once the new one is healthy", () => {
    // The managed PostgreSQL's idle client: `sleep` ignores SIGTERM, so its 5 s are all a stop waits.
    configure({ runArgs: ["--network", "host", "--stop-timeout", "5"] });
    const first = ensure(OLD);
    expect(first.status, first.stderr).toBe(0);
    expect(first.stdout).toContain(`changed: container ${NAME} (re)created on postgres:17 (${OLD})`);
    expect(calls().filter((c) => c.startsWith("stop "))).toEqual([]);
    expect(file(NAME, "stop-timeout")).toBe("5");

    // Unchanged: nothing stopped, nothing made.
    const same = ensure(OLD);
    expect(same.stdout).toContain(`unchanged: ${NAME}`);
    expect(calls().filter((c) => /^(stop|run|rm) /.test(c))).toEqual([expect.stringMatching(/^run -d --name nodehost-pg-client /)]);

    // A new spec (a new cluster host, say), and this time made without --stop-timeout.
    configure({ runArgs: ["--network", "host"], extra: "new cluster" });
    const switched = ensure(NEXT);
    expect(switched.status, switched.stderr).toBe(0);
    expect(switched.stdout).toContain(`changed: container ${NAME} healthy on its new spec; the previous one removed`);
    expect(calls().filter((c) => c.startsWith("stop "))).toEqual([`stop -t 5 ${NAME}`]);
    expect(containers()).toEqual([NAME]);
    expect(file(NAME, "image")).toBe(NEXT);

    // Replacing the one made without a stop timeout: docker's inspect says <nil>, the tool waits 60 s.
    configure({ runArgs: ["--network", "host", "--stop-timeout", "5"], extra: "again" });
    const again = ensure(OLD);
    expect(again.status, again.stderr).toBe(0);
    expect(calls().filter((c) => c.startsWith("stop "))).toEqual([`stop -t 5 ${NAME}`, `stop -t 60 ${NAME}`]);
    expect(containers()).toEqual([NAME]);
    expect(file(NAME, "image")).toBe(OLD);
  });

  it("gives way to the container it replaced when the new one does not turn healthy, and fails saying so", () => {
    configure({ runArgs: ["--stop-timeout", "30"], health: 4 });
    expect(ensure(OLD).status).toBe(0);
    fs.writeFileSync(path.join(root, "docker", "unhealthy"), `${NEXT}\n`);
    configure({ runArgs: ["--stop-timeout", "30"], extra: "broken", health: 4 });
    const failed = ensure(NEXT);
    expect(failed.status).toBe(1);
    expect(failed.stderr).toContain("is not healthy; the previous container serves again");
    expect(failed.stdout).toContain(`changed: container ${NAME}: the previous one started again`);
    expect(calls().filter((c) => c.startsWith("stop "))).toEqual([`stop -t 30 ${NAME}`]);
    expect(containers()).toEqual([NAME]);
    expect([file(NAME, "image"), file(NAME, "status")]).toEqual([OLD, "running"]);
  });
});
