// Replay: run the Pulumi program under mocks, collect its host steps, and run exactly those over
// SSH the way remote.Command would, re-running on a later replay only steps whose triggers changed.
import { randomBytes } from "node:crypto";
import { appendFileSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import * as pulumi from "@pulumi/pulumi";
import { sftpPut, ssh, waitForSsh, type SshTarget } from "./ssh";
import { tail } from "./exec";
import { Transcript } from "./transcript";
import { parseConfig } from "../../../components/config";
import { createStack, type ManagedEngines } from "../../../components/stack";
import type { StepSpec } from "../../../components/host/step";

/** What remote.Command receives for one step. */
export type { StepSpec } from "../../../components/host/step";

export interface ProgramStep {
  stepName: string;
  dependsOnSteps: string[];
  spec: pulumi.Output<StepSpec>;
}

export interface ProgramResult {
  steps: ProgramStep[];
  outputs: Record<string, pulumi.Output<unknown>>;
}

/** Builds the stack from a flat config map, as index.ts does from `pulumi config`. */
export type Program = (raw: Record<string, string>, secretKeys: string[]) => ProgramResult;

/** The real program: components/config.ts + components/stack.ts, as index.ts wires them. */
export const stackProgram: Program = (raw, secretKeys) => stackProgramWith({})(raw, secretKeys);

/** The real program with managed engines standing in for the clusters a DigitalOcean stack would make (createStack's `engines`). */
export const stackProgramWith = (engines: ManagedEngines): Program => (raw, secretKeys) =>
  createStack(parseConfig(raw, secretKeys, { project: "nodehost", stack: "e2e" }), engines) as unknown as ProgramResult;

interface ReplayState {
  steps: Record<string, { triggers: string[]; inputs: string; ms: number; at: string; startedMs?: number }>;
  /** Random resources' results, kept like Pulumi state so passwords survive between replays. */
  random: Record<string, Record<string, unknown>>;
  /** CopyToRemote resources: remotePath -> the sha256 last copied there. */
  uploads?: Record<string, string>;
}

export interface ReplayOptions {
  config: Record<string, string>;
  secretKeys: string[];
  target: SshTarget;
  /** Per-VM state file (step -> inputs), the stand-in for the Pulumi stack's state of its commands. */
  statePath: string;
  /**
   * Where the random resources' results live (default: statePath). In Pulumi they belong to the
   * stack, not to the droplet: a rebuilt host gets the same passwords and backup passphrase, so
   * the harness keeps them per world (one stack) rather than per VM.
   */
  randomStatePath?: string;
  program?: Program;
  /** Run only these steps (and the steps they depend on). */
  only?: string[];
  /** The first step dials until SSH answers, bounded like dialErrorLimit. */
  firstDialTimeoutMs?: number;
  stepTimeoutMs?: number;
  /** A file each step's (masked) output is appended to. */
  logFile?: string;
  log?: (line: string) => void;
}

export interface StepRun {
  name: string;
  ms: number;
  /** When the step started and ended, in ms since the replay started. */
  startedMs: number;
  endedMs: number;
  /** The lines of its output that waited longest for the line before them (masked): where its time went. */
  slowest: { seconds: number; line: string }[];
}

export interface ReplayResult {
  ran: StepRun[];
  unchanged: string[];
  totalMs: number;
  /** Stack outputs, resolved (secrets in clear: the caller decides what to print). */
  outputs: Record<string, unknown>;
  /** Every secret value the replay knows of (config secrets, generated passwords). */
  secrets: string[];
}

export class StepFailedError extends Error {
  constructor(
    public readonly step: string,
    public readonly exitCode: number | null,
    public readonly stderrTail: string,
    /** The error text as pulumi-command 1.2.1 builds it: unmasked, every line of output. */
    public readonly providerText: string,
  ) {
    // 255 is ssh's own status: the connection was lost or refused, not the script's exit code.
    const why = exitCode === 255 ? "ssh lost the connection (exit 255)" : `exit ${exitCode}`;
    super(`host step "${step}" failed (${why}):\n${stderrTail}`);
    this.name = "StepFailedError";
  }
}

/**
 * What `pulumi up` prints when a step fails, whatever the step's `logging` says:
 * `fmt.Errorf("%w: running %q:\n%s", err, cmd, stdouterrbuf)` (pulumi-command v1.2.1,
 * provider/pkg/provider/remote/commandOutputs.go:95-102), where err is x/crypto/ssh's ExitError
 * ("Process exited with status N"). The engine masks only config secrets in it; generated
 * passwords and keys are not masked, so a step must never print one. The real buffer interleaves
 * stdout and stderr as written; here stdout comes first, then stderr.
 */
export function providerErrorText(create: string, exitCode: number | null, stdout: string, stderr: string): string {
  return `Process exited with status ${exitCode ?? "(signal)"}: running ${JSON.stringify(create)}:\n${stdout}${stderr}`;
}

/**
 * Throws SecretInFailureError when a step's failure text holds any secret the replay knows of.
 * Stricter than the engine, which masks config secrets in what it prints (not generated ones):
 * a step that prints a secret at all is a defect.
 */
export function assertNoSecret(step: string, text: string, secrets: string[]): void {
  const leaked = text.split("\n").filter((line) => maskSecrets(line, secrets) !== line);
  if (leaked.length > 0) throw new SecretInFailureError(step, leaked.map((l) => maskSecrets(l, secrets)));
}

export class SecretInFailureError extends Error {
  constructor(public readonly step: string, public readonly lines: string[]) {
    super(`host step "${step}" failed and its failure text, as the provider would print it, holds a secret on ${lines.length} line(s) (shown masked):\n${lines.join("\n")}`);
    this.name = "SecretInFailureError";
  }
}

/** Replaces every secret value (longest first) with ***. */
export function maskSecrets(text: string, secrets: string[]): string {
  let out = text;
  for (const s of [...new Set(secrets)].filter((x) => x.length >= 4).sort((a, b) => b.length - a.length)) {
    out = out.split(s).join("***");
  }
  return out;
}

function loadState(path: string): ReplayState {
  if (!existsSync(path)) return { steps: {}, random: {} };
  return JSON.parse(readFileSync(path, "utf8")) as ReplayState;
}

function saveState(path: string, state: ReplayState): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(`${path}.tmp`, JSON.stringify(state, null, 2));
  renameSync(`${path}.tmp`, path);
}

function resolveOutput<T>(o: pulumi.Input<T>): Promise<T> {
  return new Promise((res) => pulumi.output(o).apply((v) => { res(v as T); return v; }));
}

/** Runs the program under mocks and resolves every step's spec and the stack outputs. */
/**
 * A config secret's value and, when it is a JSON object or array, every string or number inside
 * it; a value over several lines also line by line (failure text is checked a line at a time).
 */
export function secretLeaves(value: string): string[] {
  const out: string[] = [];
  const add = (s: string) => out.push(s, ...(s.includes("\n") ? s.split("\n").filter((l) => l.trim().length >= 8) : []));
  add(value);
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch {
    return out;
  }
  const walk = (v: unknown) => {
    if (typeof v === "string" || typeof v === "number") add(String(v));
    else if (v !== null && typeof v === "object") Object.values(v).forEach(walk);
  };
  if (parsed !== null && typeof parsed === "object") walk(parsed);
  return out;
}

export async function collectSteps(opts: Pick<ReplayOptions, "config" | "secretKeys" | "statePath" | "randomStatePath" | "program">): Promise<{
  specs: StepSpec[];
  outputs: Record<string, unknown>;
  secrets: string[];
}> {
  const state = loadState(opts.statePath);
  if (opts.randomStatePath) state.random = loadState(opts.randomStatePath).random;
  // A secret key holding an object (appSecrets) is secret leaf by leaf: each value, not only the JSON.
  const secrets = opts.secretKeys.map((k) => opts.config[k]).filter((v): v is string => typeof v === "string").flatMap(secretLeaves);
  pulumi.runtime.setMocks(
    {
      newResource: (args: pulumi.runtime.MockResourceArgs) => {
        let extra: Record<string, unknown> = {};
        if (args.type === "random:index/randomPassword:RandomPassword") {
          const length = Number(args.inputs.length ?? 32);
          state.random[args.name] ??= { result: randomBytes(length * 2).toString("base64").replace(/[^A-Za-z0-9]/g, "").slice(0, length) };
          extra = state.random[args.name];
          secrets.push(String(extra.result));
        } else if (args.type.startsWith("random:")) {
          state.random[args.name] ??= { hex: randomBytes(8).toString("hex"), b64Url: randomBytes(8).toString("base64url") };
          extra = state.random[args.name];
        }
        return { id: `${args.name}-id`, state: { ...args.inputs, ...extra } };
      },
      call: (args: pulumi.runtime.MockCallArgs) => args.inputs,
    },
    "nodehost",
    "e2e",
    false,
  );
  let program: ProgramResult | undefined;
  let failure: unknown;
  await pulumi.runtime.runInPulumiStack(async () => {
    try {
      program = (opts.program ?? stackProgram)(opts.config, opts.secretKeys);
    } catch (e) {
      failure = e;
    }
    return {};
  });
  if (failure) throw failure;
  const specs = await Promise.all(program!.steps.map((s) => resolveOutput(s.spec)));
  const outputs: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(program!.outputs)) outputs[k] = await resolveOutput(v);
  await (pulumi.runtime as unknown as { waitForRPCs: () => Promise<void> }).waitForRPCs();
  saveState(opts.statePath, state);
  if (opts.randomStatePath) saveState(opts.randomStatePath, { steps: {}, random: state.random });
  return { specs, outputs, secrets };
}

/** Orders steps so each comes after every step it depends on; ties keep the program's order. */
export function orderSteps(specs: StepSpec[]): StepSpec[] {
  const byName = new Map(specs.map((s) => [s.name, s]));
  const done = new Set<string>();
  const visiting = new Set<string>();
  const out: StepSpec[] = [];
  const visit = (s: StepSpec) => {
    if (done.has(s.name)) return;
    if (visiting.has(s.name)) throw new Error(`dependency cycle through step ${s.name}`);
    visiting.add(s.name);
    for (const d of s.dependsOn) {
      const dep = byName.get(d);
      if (!dep) throw new Error(`step ${s.name} depends on unknown step ${d}`);
      visit(dep);
    }
    visiting.delete(s.name);
    done.add(s.name);
    out.push(s);
  };
  specs.forEach(visit);
  return out;
}

function withDependencies(specs: StepSpec[], only: string[]): Set<string> {
  const byName = new Map(specs.map((s) => [s.name, s]));
  const keep = new Set<string>();
  const add = (n: string) => {
    const s = byName.get(n);
    if (!s) throw new Error(`no step named ${n} (steps: ${[...byName.keys()].join(", ")})`);
    if (keep.has(n)) return;
    keep.add(n);
    s.dependsOn.forEach(add);
  };
  only.forEach(add);
  return keep;
}

/**
 * After ssh lost a step's connection: whether a new one gets in, and what the host says (its
 * journal and kernel log go to the step log), so a lost connection can be told from a dead host.
 * The step wrapper runs scripts as `bash /tmp/tmp.*`; `tm[p]` keeps pgrep from matching this probe.
 */
async function afterLostConnection(target: SshTarget, secrets: string[], logFile?: string): Promise<string> {
  const probe = await ssh(target, "sudo -n sh -c 'uptime; echo; pgrep -af \"bash /tm[p]/tmp\" || echo \"no step script running\"; echo; ufw status verbose 2>&1; echo; dmesg | tail -n 40; echo; journalctl -b --no-pager -n 150'", { timeoutMs: 2 * 60_000 });
  if (logFile) appendFileSync(logFile, maskSecrets(`\n===== after the lost connection (probe exit ${probe.code})\n${probe.stdout}\n${probe.stderr}\n`, secrets));
  if (probe.code !== 0) return `a new SSH connection failed too (exit ${probe.code}): ${tail(probe.stderr, 5)}`;
  return `a new SSH connection got in; the host's state is in ${logFile ?? "(no step log)"}:\n${probe.stdout.split("\n").slice(0, 4).join("\n")}`;
}

/**
 * Runs the steps the way the engine does: every step whose dependencies are done starts at once
 * (docker-data and node-pm2 run together after base); a step is skipped when none of the inputs
 * remote.Command diffs changed (`spec.inputs`); after a failure no new step starts, the running
 * ones finish, and the first failure is thrown. Both as the CLI documents them: `--parallel`
 * "Defaults to unbounded" (pulumi up --help), and on an error Pulumi lets "already in-flight
 * operations complete, but not starting any new operations" unless --continue-on-error.
 */
export async function replay(opts: ReplayOptions): Promise<ReplayResult> {
  const started = Date.now();
  const log = opts.log ?? ((s: string) => process.stderr.write(s + "\n"));
  const { specs, outputs, secrets } = await collectSteps(opts);
  const keep = opts.only ? withDependencies(specs, opts.only) : undefined;
  const ordered = orderSteps(specs).filter((s) => !keep || keep.has(s.name));
  const state = loadState(opts.statePath);
  const ran: StepRun[] = [];
  const unchanged: string[] = [];
  let dialing: Promise<unknown> | undefined;
  let failure: unknown;

  const runStep = async (spec: StepSpec): Promise<void> => {
    if (state.steps[spec.name]?.inputs === spec.inputs) {
      unchanged.push(spec.name);
      return;
    }
    if (failure) throw new Error(`step ${spec.name} not started: an earlier step failed`);
    try {
      dialing ??= waitForSsh(opts.target, { timeoutMs: opts.firstDialTimeoutMs ?? 10 * 60_000 });
      await dialing;
      log(`step ${spec.name}: running`);
      const t0 = Date.now();
      // The step's own connection checks the host key the stack pins, as the provider would.
      const target = spec.hostKey ? { ...opts.target, hostKey: spec.hostKey } : opts.target;
      // Its files first, each as its CopyToRemote sends it: SFTP as the connection's user, a
      // relative path under that user's home, parents made; again only when the file's hash
      // changed (copyController.go:148 at v1.2.1) or the host is new (its state file is).
      for (const u of spec.uploads ?? []) {
        state.uploads ??= {};
        if (state.uploads[u.remotePath] === u.sha256) continue;
        const u0 = Date.now();
        await sftpPut(target, u.localPath, u.remotePath);
        state.uploads[u.remotePath] = u.sha256;
        saveState(opts.statePath, state);
        log(`step ${spec.name}: copied ${u.remotePath} in ${((Date.now() - u0) / 1000).toFixed(1)} s`);
      }
      const transcript = new Transcript(Date.now());
      const r = await ssh(target, spec.create, { input: spec.stdin, timeoutMs: opts.stepTimeoutMs ?? 40 * 60_000, transcript });
      const ms = Date.now() - t0;
      if (opts.logFile) {
        appendFileSync(opts.logFile, maskSecrets(`\n===== ${spec.name} exit ${r.code} in ${ms} ms (${new Date(t0).toISOString()} .. ${new Date().toISOString()})\n`
          + `--- output, each line with the seconds since the command started when it arrived (! marks stderr)\n${transcript.text()}\n`, secrets));
      }
      if (r.code !== 0) {
        // Like a failed create: the step is not in state, so the next replay runs it again.
        delete state.steps[spec.name];
        saveState(opts.statePath, state);
        const providerText = providerErrorText(spec.create, r.code, r.stdout, r.stderr);
        assertNoSecret(spec.name, providerText, secrets);
        let detail = tail(r.stderr || r.stdout, 40);
        if (r.code === 255) detail += `\n${await afterLostConnection(opts.target, secrets, opts.logFile)}`;
        throw new StepFailedError(spec.name, r.code, detail, providerText);
      }
      state.steps[spec.name] = { triggers: spec.triggers, inputs: spec.inputs, ms, at: new Date().toISOString(), startedMs: t0 - started };
      saveState(opts.statePath, state);
      const slowest = transcript.slowest(3).map((l) => ({ seconds: Math.round(l.gapMs / 100) / 10, line: maskSecrets(l.text, secrets).slice(0, 160) }));
      ran.push({ name: spec.name, ms, startedMs: t0 - started, endedMs: t0 - started + ms, slowest });
      log(`step ${spec.name}: done in ${(ms / 1000).toFixed(1)} s`);
    } catch (e) {
      failure ??= e;
      throw e;
    }
  };

  const done = new Map<string, Promise<void>>();
  for (const spec of ordered) {
    const deps = spec.dependsOn.filter((d) => done.has(d)).map((d) => done.get(d)!);
    done.set(spec.name, Promise.all(deps).then(() => runStep(spec)));
  }
  await Promise.allSettled(done.values());
  if (failure) throw failure;
  return { ran, unchanged, totalMs: Date.now() - started, outputs, secrets };
}

/**
 * Edits a copy of scripts/ (withEditedScripts's `dir`) so that the step running `file` dies right
 * after `marker` (a whole line of it): the step's whole process group (the wrapper's timeout, the
 * script and its children) gets SIGKILL there, as a lost connection, a timeout or a reboot would
 * stop it. Throws when the marker is gone, so a test never kills at a point that no longer exists.
 */
export function killStepAfter(dir: string, file: string, marker: string): void {
  const path = `${dir}/${file}`;
  const text = readFileSync(path, "utf8");
  if (!text.includes(marker)) throw new Error(`${file} no longer has the line this test kills its step after: ${JSON.stringify(marker)}`);
  const indent = /^\s*/.exec(marker)![0];
  // A function replacer: in a replacement string "$$" would be read as a single "$".
  writeFileSync(path, text.replace(marker, () => `${marker}${indent}kill -9 -- "-$(ps -o pgid= -p $$ | tr -d ' ')"\n`));
}
