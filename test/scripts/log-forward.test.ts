// The rsyslog config base.sh writes for logs.forward, run by a real rsyslogd (Debian's package on
// this machine) against the VM suite's receiver: what it sends, and what it refuses to send to.
// The VM suite proves the same file on the host (trixie's rsyslog, the real journal and nginx);
// here the cases a VM run cannot afford: a receiver with another name or CA, and one that is away.
import { spawn, type ChildProcess } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { LOG_PEER_NAME, startLogReceiver, type LogReceiver } from "../e2e/lib/log-receiver";
import { freePort, missing, run, SCRIPTS, tmpDir } from "./helpers";

const need = missing("rsyslogd", "logger");
if (need.length) console.warn(`log forwarding tests SKIPPED: missing ${need.join(", ")} (apt-get install rsyslog rsyslog-gnutls bsdutils)`);

/** The text base.sh writes to /etc/rsyslog.d/60-nodehost-forward.conf, rendered as bash would. */
function forwardConf(vars: { LOG_HOST: string; LOG_PORT: number; LOG_PEER: string; log_ca: string; LOG_FRAMING: string }): string {
  const script = fs.readFileSync(path.join(SCRIPTS, "base.sh"), "utf8");
  const m = /write_file "\$LOG_CONF" 0644 root:root <<CONF\n([\s\S]*?)\nCONF\n/.exec(script);
  if (!m) throw new Error("base.sh: no heredoc for $LOG_CONF");
  const r = run("bash", ["-c", `cat <<CONF\n${m[1]}\nCONF`], { env: { PATH: process.env.PATH, ...Object.fromEntries(Object.entries(vars).map(([k, v]) => [k, String(v)])) } });
  if (r.status !== 0) throw new Error(r.stderr);
  return r.stdout;
}

describe.skipIf(need.length > 0)("logs.forward: base.sh's rsyslog config with a real rsyslogd", () => {
  const dirs: string[] = [];
  const daemons: ChildProcess[] = [];
  const receivers: LogReceiver[] = [];
  afterEach(async () => {
    for (const d of daemons.splice(0)) d.kill("SIGKILL");
    for (const r of receivers.splice(0)) await r.stop();
  });
  afterAll(() => {
    for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
  });

  const receiver = async (dir: string, port?: number) => {
    const r = await startLogReceiver(dir, { port });
    receivers.push(r);
    return r;
  };

  /**
   * rsyslogd in the foreground with base.sh's file, its own work directory and syslog socket
   * (the host's journal hands messages to /run/systemd/journal/syslog), nginx's logs under `dir`.
   */
  const rsyslogd = (dir: string, vars: Parameters<typeof forwardConf>[0]) => {
    const conf = forwardConf(vars).replaceAll("/var/log/nginx/", `${dir}/nginx/`);
    fs.mkdirSync(path.join(dir, "spool"), { recursive: true });
    fs.writeFileSync(path.join(dir, "rsyslog.conf"), [
      `global(workDirectory="${dir}/spool")`,
      `module(load="imuxsock" SysSock.Use="off")`,
      `input(type="imuxsock" Socket="${dir}/log.sock")`,
      conf,
    ].join("\n"));
    const check = run("rsyslogd", ["-N1", "-f", path.join(dir, "rsyslog.conf")]);
    expect(check.status, check.stderr).toBe(0);
    const d = spawn("rsyslogd", ["-n", "-f", path.join(dir, "rsyslog.conf"), "-i", path.join(dir, "rsyslogd.pid")], { stdio: ["ignore", "pipe", "pipe"] });
    daemons.push(d);
    let out = "";
    d.stdout!.on("data", (b) => (out += b));
    d.stderr!.on("data", (b) => (out += b));
    return { output: () => out };
  };
  const logger = async (dir: string, text: string) => {
    for (let i = 0; i < 50 && !fs.existsSync(path.join(dir, "log.sock")); i++) await new Promise((r) => setTimeout(r, 100));
    const r = run("logger", ["-u", path.join(dir, "log.sock"), "-t", "nodehost-test", "-p", "auth.warning", text]);
    expect(r.status, r.stderr).toBe(0);
  };
  const newDir = () => {
    const d = tmpDir("nodehost-logfwd-");
    dirs.push(d);
    return d;
  };

  it("sends syslog lines and nginx's access log (its directory made after the start) octet-counted over TLS", async () => {
    const dir = newDir();
    const r = await receiver(path.join(dir, "receiver"));
    fs.writeFileSync(path.join(dir, "ca.pem"), r.caPem);
    rsyslogd(dir, { LOG_HOST: "127.0.0.1", LOG_PORT: r.port, LOG_PEER: LOG_PEER_NAME, log_ca: path.join(dir, "ca.pem"), LOG_FRAMING: "octet-counted" });
    await logger(dir, "mark-syslog");
    const line = await r.waitFor((m) => m.app === "nodehost-test", 20_000);
    expect([line.msg.trim(), line.pri]).toEqual(["mark-syslog", 4 * 8 + 4]);
    // nginx is installed after base: imfile finds its directory and file when they appear.
    fs.mkdirSync(path.join(dir, "nginx"));
    fs.appendFileSync(path.join(dir, "nginx", "access.log"), '10.0.2.2 - - [06/Dec/2026:23:00:00 +0000] "GET /mark-nginx HTTP/1.1" 401 172 "-" "curl"\n');
    const access = await r.waitFor((m) => m.app === "nginx-access", 20_000);
    expect(access.msg).toContain('"GET /mark-nginx HTTP/1.1" 401');
    expect(access.pri).toBe(23 * 8 + 6); // local7.info
    expect(r.errors).toEqual([]);
  });

  it.each([
    ["a receiver whose certificate names another host", { peer: "logs.other.test", ownCa: true }],
    ["a receiver whose certificate another CA issued", { peer: LOG_PEER_NAME, ownCa: false }],
  ])("sends nothing to %s", async (_name, c) => {
    const dir = newDir();
    const r = await receiver(path.join(dir, "receiver"));
    const other = await receiver(path.join(dir, "other-ca"));
    fs.writeFileSync(path.join(dir, "ca.pem"), c.ownCa ? r.caPem : other.caPem);
    const d = rsyslogd(dir, { LOG_HOST: "127.0.0.1", LOG_PORT: r.port, LOG_PEER: c.peer, log_ca: path.join(dir, "ca.pem"), LOG_FRAMING: "octet-counted" });
    await logger(dir, "must-not-arrive");
    // rsyslog connects, checks the certificate and drops the connection: nothing is sent.
    await expect(r.waitFor(() => true, 5_000)).rejects.toThrow(/0 received/);
    // rsyslog's own reason (gtls, x509/name): the name, or the signer.
    expect(d.output()).toMatch(c.ownCa ? /peer name not authorized/ : /certificate invalid: signer not found/);
  });

  it("keeps what it could not send while the receiver is away, across its own restart, and sends it once the receiver is back", async () => {
    const dir = newDir();
    const port = await freePort();
    // The receiver's certificate is made first, so the host has its CA.
    const first = await receiver(path.join(dir, "receiver"));
    fs.writeFileSync(path.join(dir, "ca.pem"), first.caPem);
    await first.stop();
    receivers.splice(0);
    const vars = { LOG_HOST: "127.0.0.1", LOG_PORT: port, LOG_PEER: LOG_PEER_NAME, log_ca: path.join(dir, "ca.pem"), LOG_FRAMING: "octet-counted" };
    rsyslogd(dir, vars);
    await logger(dir, "while-away");
    await new Promise((res) => setTimeout(res, 2_000));
    // A restart (an update, a reboot) while the receiver is still away: the queue is saved to
    // the work directory (queue.saveOnShutdown) and read back by the next rsyslogd.
    const stopping = daemons.splice(0)[0];
    const exited = new Promise((res) => stopping.once("exit", res));
    stopping.kill("SIGTERM");
    await exited;
    expect(fs.readdirSync(path.join(dir, "spool")).some((f) => f.startsWith("nodehost-forward"))).toBe(true);
    fs.rmSync(path.join(dir, "log.sock"), { force: true });
    rsyslogd(dir, vars);
    const back = await receiver(path.join(dir, "receiver"), port);
    // action.resumeInterval 10 s: the action tries again within it.
    const got = await back.waitFor((m) => m.msg.trim() === "while-away", 40_000);
    expect(got.app).toBe("nodehost-test");
    expect(back.errors).toEqual([]);
  });
});
