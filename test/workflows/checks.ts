// Checks on the parsed workflow files; each returns the problems it finds ([] = the property holds),
// so a test can run it on the real file and on a copy broken in memory.
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { parse } from "yaml";

export const ROOT = path.join(__dirname, "..", "..");
export const WORKFLOWS = path.join(ROOT, ".github", "workflows");

export type Doc = Record<string, any>;
export type Step = Record<string, any>;

export function load(file: string): Doc {
  return parse(fs.readFileSync(path.join(WORKFLOWS, file), "utf8"));
}

/** Stacks that have a Pulumi.<stack>.yaml in `dir`. */
export function stackFiles(dir = ROOT): string[] {
  return fs
    .readdirSync(dir)
    .map((f) => /^Pulumi\.(.+)\.yaml$/.exec(f)?.[1])
    .filter((s): s is string => s !== undefined)
    .sort();
}

const isPulumiAction = (s: Step) => typeof s.uses === "string" && /^pulumi\/actions@v\d+$/.test(s.uses);
const triggers = (doc: Doc): string[] => {
  const on = doc.on ?? doc[true as unknown as string]; // YAML 1.1 readers turn `on` into true
  return typeof on === "string" ? [on] : Array.isArray(on) ? on : Object.keys(on ?? {});
};

/**
 * Runs the `stacks` job's listing step (the real shell, from the workflow) in a directory holding
 * `files`, and returns the JSON list it writes to $GITHUB_OUTPUT.
 */
export function listedStacks(doc: Doc, files: string[]): string[] {
  const step = (doc.jobs?.stacks?.steps ?? []).find((s: Step) => s.id === "list");
  if (!step?.run) throw new Error("preview.yml: job stacks has no step with id list");
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "stacks-"));
  try {
    for (const f of files) fs.writeFileSync(path.join(dir, f), "config: {}\n");
    const out = path.join(dir, "github-output");
    const r = spawnSync("bash", ["-eo", "pipefail", "-c", step.run], {
      cwd: dir,
      env: { PATH: process.env.PATH, GITHUB_OUTPUT: out },
      encoding: "utf8",
    });
    if (r.status !== 0) throw new Error(`listing step failed: ${r.stderr}`);
    const line = fs.readFileSync(out, "utf8").split("\n").find((l) => l.startsWith("stacks="));
    return JSON.parse(line!.slice("stacks=".length)).sort();
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** Every stack file is in the preview matrix (a static list, or the listing job's output). */
export function matrixProblems(doc: Doc, files: string[]): string[] {
  const matrix = doc.jobs?.preview?.strategy?.matrix?.stack;
  const expected = files
    .map((f) => /^Pulumi\.(.+)\.yaml$/.exec(f)?.[1])
    .filter((s): s is string => s !== undefined)
    .sort();
  let listed: string[];
  if (Array.isArray(matrix)) {
    listed = [...matrix].sort();
  } else if (matrix === "${{ fromJSON(needs.stacks.outputs.stacks) }}") {
    if (doc.jobs.stacks?.outputs?.stacks !== "${{ steps.list.outputs.stacks }}") {
      return ["the stacks job does not output its listing step's result"];
    }
    listed = listedStacks(doc, files);
  } else {
    return [`preview matrix.stack is neither a list nor the stacks job's output: ${JSON.stringify(matrix)}`];
  }
  return expected.filter((s) => !listed.includes(s)).map((s) => `Pulumi.${s}.yaml is not in the preview matrix`);
}

/** The preview job: PR-triggered, the official action with refresh, diff, policy and one edited comment per stack. */
export function previewProblems(doc: Doc): string[] {
  const problems: string[] = [];
  const on = triggers(doc);
  if (!on.includes("pull_request")) problems.push("preview does not run on pull_request");
  if (on.includes("push")) problems.push("preview runs on push");
  const perms = doc.permissions ?? {};
  if (JSON.stringify(perms) !== JSON.stringify({ contents: "read", "pull-requests": "write" })) {
    problems.push(`permissions are not exactly contents: read, pull-requests: write: ${JSON.stringify(perms)}`);
  }
  const job = doc.jobs?.preview ?? {};
  const group = String(job.concurrency?.group ?? "");
  if (!group.includes("github.event.pull_request.number") || !group.includes("matrix.stack")) {
    problems.push("preview concurrency group is not per pull request and stack");
  }
  const steps: Step[] = job.steps ?? [];
  const action = steps.find(isPulumiAction);
  if (!action) return [...problems, "preview job does not use pulumi/actions@v<major>"];
  const w = action.with ?? {};
  const want: Record<string, unknown> = {
    command: "preview",
    "stack-name": "${{ matrix.stack }}",
    refresh: true,
    diff: true,
    "comment-on-pr": true,
    "edit-pr-comment": true,
    // The action's input is spelt policyPacks; `policy-packs` would be silently ignored.
    policyPacks: "policy",
  };
  for (const [k, v] of Object.entries(want)) {
    if (w[k] !== v) problems.push(`pulumi/actions ${k} is ${JSON.stringify(w[k])}, want ${JSON.stringify(v)}`);
  }
  if (!String(w["cloud-url"] ?? "").includes("PULUMI_BACKEND_URL")) problems.push("pulumi/actions cloud-url is not the shared backend");
  const policyInstall = steps.findIndex((s) => /npm ci --prefix policy/.test(s.run ?? ""));
  if (policyInstall < 0 || policyInstall > steps.indexOf(action)) problems.push("policy/ is not installed before the preview");
  return problems;
}

/** A job's guard: after nothing destructive, it previews the job's stack as JSON and feeds the guard script. */
export function guardProblems(job: Doc, stackExpr: string): string[] {
  const steps: Step[] = job?.steps ?? [];
  const i = steps.findIndex((s) => /node \.github\/scripts\/guard-preview\.mjs /.test(s.run ?? ""));
  if (i < 0) return ["no step runs .github/scripts/guard-preview.mjs"];
  const run: string = steps[i].run;
  const problems: string[] = [];
  if (!/pulumi preview --stack "\$STACK" [^\n]*--json/.test(run)) problems.push("the guard does not read `pulumi preview --stack \"$STACK\" --json`");
  if (job.env?.STACK !== stackExpr) problems.push(`the guard's STACK is ${JSON.stringify(job.env?.STACK)}, want ${stackExpr}`);
  const up = steps.findIndex((s) => isPulumiAction(s) && s.with?.command === "up");
  if (up >= 0 && up < i) problems.push("pulumi up runs before the guard");
  return problems;
}

/** A tiny evaluator for the `if:` expressions these workflows use (==, !=, &&, ||, !, parentheses). */
export function evaluateIf(expr: string | undefined, ctx: Record<string, string>): boolean {
  if (expr === undefined) return true;
  const src = expr.replace(/^\$\{\{|\}\}$/g, "");
  const tokens = src.match(/'[^']*'|==|!=|&&|\|\||!|\(|\)|[A-Za-z_][\w.-]*/g) ?? [];
  let i = 0;
  const peek = () => tokens[i];
  const value = (): string | boolean => {
    const t = tokens[i++];
    if (t === "(") {
      const v = or();
      i++;
      return v;
    }
    if (t === "!") return !truthy(value());
    if (t.startsWith("'")) return t.slice(1, -1).toLowerCase();
    if (t === "true" || t === "false") return t === "true";
    if (!(t in ctx)) throw new Error(`if: unknown context ${t} in ${expr}`);
    return ctx[t].toLowerCase();
  };
  const truthy = (v: string | boolean) => v !== false && v !== "";
  const cmp = (): string | boolean => {
    const l = value();
    if (peek() === "==" || peek() === "!=") {
      const op = tokens[i++];
      const r = value();
      return op === "==" ? l === r : l !== r;
    }
    return l;
  };
  const and = (): string | boolean => {
    let v = cmp();
    while (peek() === "&&") {
      i++;
      const r = cmp();
      v = truthy(v) && truthy(r);
    }
    return v;
  };
  const or = (): string | boolean => {
    let v = and();
    while (peek() === "||") {
      i++;
      const r = and();
      v = truthy(v) || truthy(r);
    }
    return v;
  };
  return truthy(or());
}

/** The stacks a job updates or previews: pulumi/actions stack-name, and $STACK / --stack in run steps. */
export function stacksTouched(job: Doc): string[] {
  const found = new Set<string>();
  for (const s of (job.steps ?? []) as Step[]) {
    if (isPulumiAction(s) && s.with?.["stack-name"]) found.add(String(s.with["stack-name"]));
    for (const m of String(s.run ?? "").matchAll(/--stack[ =]("?)([^\s"]+)\1/g)) {
      found.add(m[2] === "$STACK" ? String(job.env?.STACK) : m[2]);
    }
  }
  return [...found];
}

const EVENTS: Record<string, Record<string, string>> = {
  push: { "github.event_name": "push", "github.ref": "refs/heads/main", "inputs.stack": "" },
  "workflow_dispatch staging": { "github.event_name": "workflow_dispatch", "github.ref": "refs/heads/main", "inputs.stack": "staging" },
  "workflow_dispatch production": { "github.event_name": "workflow_dispatch", "github.ref": "refs/heads/main", "inputs.stack": "production" },
  "workflow_dispatch production from a branch": {
    "github.event_name": "workflow_dispatch", "github.ref": "refs/heads/feature", "inputs.stack": "production",
  },
};

/** Jobs that would run for an event, following `needs` (a job runs only when all it needs run). */
export function jobsRunning(doc: Doc, event: string): string[] {
  const ctx = EVENTS[event];
  const name = ctx["github.event_name"];
  if (!triggers(doc).includes(name)) return [];
  const runs = (id: string, seen: string[] = []): boolean => {
    const job = doc.jobs[id];
    if (!job || seen.includes(id)) return false;
    const needs: string[] = [job.needs ?? []].flat();
    return needs.every((n) => runs(n, [...seen, id])) && evaluateIf(job.if, ctx);
  };
  return Object.keys(doc.jobs ?? {}).filter((id) => runs(id));
}

/** Production is updated only by a manual run from main, in a job with the production environment. */
export function deployProblems(doc: Doc): string[] {
  const problems: string[] = [];
  const on = triggers(doc);
  const input = doc.on?.workflow_dispatch?.inputs?.stack;
  if (!on.includes("workflow_dispatch") || !input?.options?.includes("production")) {
    problems.push("no workflow_dispatch input that can choose production");
  }
  const jobs: Record<string, Doc> = doc.jobs ?? {};
  const touching = (stack: string) => Object.keys(jobs).filter((id) => stacksTouched(jobs[id]).includes(stack));
  const prod = touching("production");
  if (prod.length === 0) problems.push("no job updates production");
  for (const id of prod) {
    const env = jobs[id].environment;
    if ((typeof env === "string" ? env : env?.name) !== "production") problems.push(`job ${id} touches production without environment: production`);
    const c = jobs[id].concurrency ?? {};
    if (!String(c.group ?? "").includes("production") || c["cancel-in-progress"] !== false) {
      problems.push(`job ${id}: concurrency does not serialise production updates without cancelling one`);
    }
  }
  for (const id of jobsRunning(doc, "push")) {
    if (stacksTouched(jobs[id]).includes("production")) problems.push(`job ${id} touches production on push`);
  }
  for (const id of jobsRunning(doc, "workflow_dispatch production from a branch")) {
    if (stacksTouched(jobs[id]).includes("production")) problems.push(`job ${id} updates production from a branch other than main`);
  }
  const manual = jobsRunning(doc, "workflow_dispatch production");
  if (!prod.some((id) => manual.includes(id))) problems.push("a manual run with stack production updates nothing");
  const pushed = jobsRunning(doc, "push");
  const staging = touching("staging");
  if (!staging.some((id) => pushed.includes(id))) problems.push("a push to main does not update staging");
  for (const id of staging) {
    const c = jobs[id].concurrency ?? {};
    if (!String(c.group ?? "").includes("staging") || c["cancel-in-progress"] !== false) {
      problems.push(`job ${id}: concurrency does not serialise staging updates without cancelling one`);
    }
    const env = jobs[id].environment;
    if ((typeof env === "string" ? env : env?.name) !== "staging") problems.push(`job ${id} updates staging without environment: staging`);
  }
  return problems;
}

/** The `secrets.NAME` a piece of workflow reads, GITHUB_TOKEN aside (GitHub gives every job one). */
export function secretsRead(part: unknown): string[] {
  const names = [...JSON.stringify(part ?? null).matchAll(/secrets\.([A-Za-z_][A-Za-z0-9_]*)/g)].map((m) => m[1]);
  return [...new Set(names)].filter((n) => n !== "GITHUB_TOKEN").sort();
}

const environmentOf = (job: Doc): string | undefined =>
  typeof job.environment === "string" ? job.environment : job.environment?.name;

/**
 * Where each job's secrets come from. A pull request runs its own copy of the workflow, so only
 * environment secrets are out of its reach without a reviewer: every job that reads a secret must
 * name an environment, `want` says which, and nothing reads secrets at the workflow level.
 */
export function secretScopeProblems(doc: Doc, want: Record<string, string>): string[] {
  const problems: string[] = [];
  if (triggers(doc).includes("pull_request_target")) {
    problems.push("runs on pull_request_target: a pull request's code would run with the base repository's secrets");
  }
  const top = secretsRead({ env: doc.env, defaults: doc.defaults });
  if (top.length > 0) problems.push(`workflow-level env reads secrets (${top.join(", ")}): every job would get them`);
  for (const [name, job] of Object.entries<Doc>(doc.jobs ?? {})) {
    const read = secretsRead(job);
    const env = environmentOf(job);
    if (read.length > 0 && env === undefined) problems.push(`job ${name} reads secrets (${read.join(", ")}) without an environment`);
    if (name in want && env !== want[name]) problems.push(`job ${name} takes its secrets from ${JSON.stringify(env)}, want ${JSON.stringify(want[name])}`);
  }
  return problems;
}
