// The GitHub workflows, read as YAML: every stack is previewed on pull requests with one edited comment,
// the guard runs, and production is updated only by a manual, environment-gated run from main.
// Each check also runs on a copy broken in memory, to show it would catch the break.
// Not proven here: GitHub's own behaviour (environment reviewers, comment editing); see docs/runbooks/ci.md.
import { describe, expect, test } from "vitest";
import {
  deployProblems,
  Doc,
  evaluateIf,
  guardProblems,
  jobsRunning,
  listedStacks,
  load,
  matrixProblems,
  previewProblems,
  secretScopeProblems,
  stackFiles,
} from "./checks";

const preview = load("preview.yml");
const deploy = load("deploy.yml");
const copy = (d: Doc): Doc => structuredClone(d);
const REPO_STACK_FILES = stackFiles().map((s) => `Pulumi.${s}.yaml`);

describe("preview.yml", () => {
  test("the repository has the staging and production stack files", () => {
    expect(stackFiles()).toEqual(["production", "staging"]);
  });

  test("every Pulumi.<stack>.yaml is in the preview matrix", () => {
    expect(matrixProblems(preview, ["Pulumi.yaml", ...REPO_STACK_FILES])).toEqual([]);
  });

  test("a new stack file joins the matrix with no workflow edit; Pulumi.yaml is not a stack", () => {
    expect(listedStacks(preview, ["Pulumi.yaml", ...REPO_STACK_FILES, "Pulumi.qa.yaml"])).toEqual([
      "production", "qa", "staging",
    ]);
  });

  test("broken: a static matrix that misses a stack file is caught", () => {
    const broken = copy(preview);
    broken.jobs.preview.strategy.matrix.stack = ["staging"];
    expect(matrixProblems(broken, REPO_STACK_FILES)).toEqual(["Pulumi.production.yaml is not in the preview matrix"]);
  });

  test("broken: a listing step that drops a stack is caught", () => {
    const broken = copy(preview);
    const list = broken.jobs.stacks.steps.find((s: Doc) => s.id === "list");
    list.run = list.run.replace("ls Pulumi.*.yaml", "ls Pulumi.*.yaml | grep -v production");
    expect(matrixProblems(broken, REPO_STACK_FILES)).toEqual(["Pulumi.production.yaml is not in the preview matrix"]);
  });

  test("runs on pull_request with the official action: preview, refresh, diff, policy pack, one edited comment per stack", () => {
    expect(previewProblems(preview)).toEqual([]);
  });

  test.each([
    ["pull_request trigger removed", (d: Doc) => { d.on = { push: { branches: ["main"] } }; }, "preview does not run on pull_request"],
    ["edit-pr-comment off", (d: Doc) => { d.jobs.preview.steps.find((s: Doc) => s.uses?.startsWith("pulumi/")).with["edit-pr-comment"] = false; },
      "pulumi/actions edit-pr-comment is false, want true"],
    ["comment-on-pr missing", (d: Doc) => { delete d.jobs.preview.steps.find((s: Doc) => s.uses?.startsWith("pulumi/")).with["comment-on-pr"]; },
      "pulumi/actions comment-on-pr is undefined, want true"],
    ["policy pack under the wrong input name", (d: Doc) => {
      const w = d.jobs.preview.steps.find((s: Doc) => s.uses?.startsWith("pulumi/")).with;
      w["policy-packs"] = w.policyPacks;
      delete w.policyPacks;
    }, 'pulumi/actions policyPacks is undefined, want "policy"'],
    ["write-all permissions", (d: Doc) => { d.permissions = "write-all"; }, 'permissions are not exactly contents: read, pull-requests: write: "write-all"'],
    ["one concurrency group for all stacks", (d: Doc) => { d.jobs.preview.concurrency.group = "preview-${{ github.event.pull_request.number }}"; },
      "preview concurrency group is not per pull request and stack"],
  ])("broken: %s is caught", (_, breakIt, problem) => {
    const broken = copy(preview);
    breakIt(broken);
    expect(previewProblems(broken)).toContain(problem);
  });

  test("the guard previews the matrix stack as JSON after the commented preview", () => {
    expect(guardProblems(preview.jobs.preview, "${{ matrix.stack }}")).toEqual([]);
  });

  test("broken: no guard step is caught", () => {
    const broken = copy(preview);
    broken.jobs.preview.steps = broken.jobs.preview.steps.filter((s: Doc) => !String(s.run ?? "").includes("guard-preview"));
    expect(guardProblems(broken.jobs.preview, "${{ matrix.stack }}")).toEqual(["no step runs .github/scripts/guard-preview.mjs"]);
  });
});

describe("secrets: a pull request reaches only its stack's preview environment, production's behind a reviewer", () => {
  const PREVIEW = { preview: "preview-${{ matrix.stack }}" };
  const DEPLOY = { staging: "staging", production: "production" };

  test("preview.yml: the per-stack job reads secrets only from preview-<stack>; the listing job reads none", () => {
    expect(secretScopeProblems(preview, PREVIEW)).toEqual([]);
    expect(preview.jobs.stacks.environment).toBeUndefined();
    expect(JSON.stringify(preview.jobs.stacks)).not.toContain("secrets.");
  });

  test("deploy.yml: each up job reads secrets only from its own stack's environment", () => {
    expect(secretScopeProblems(deploy, DEPLOY)).toEqual([]);
  });

  test("the production preview runs in preview-production, the gated environment, never in a deploy environment", () => {
    const env = String(preview.jobs.preview.environment).replace("${{ matrix.stack }}", "production");
    expect(env).toBe("preview-production");
    expect(["staging", "production"]).not.toContain(env);
  });

  test.each([
    ["the preview job drops its environment", (d: Doc) => { delete d.jobs.preview.environment; },
      "job preview reads secrets (DIGITALOCEAN_TOKEN, PULUMI_CONFIG_PASSPHRASE, SPACES_ACCESS_KEY_ID, SPACES_SECRET_ACCESS_KEY, " +
        "STATE_ACCESS_KEY_ID, STATE_SECRET_ACCESS_KEY) without an environment"],
    ["the preview job uses the production deploy environment", (d: Doc) => { d.jobs.preview.environment = "production"; },
      'job preview takes its secrets from "production", want "preview-${{ matrix.stack }}"'],
    ["one preview environment for every stack", (d: Doc) => { d.jobs.preview.environment = "preview"; },
      'job preview takes its secrets from "preview", want "preview-${{ matrix.stack }}"'],
    ["secrets at the workflow level", (d: Doc) => { d.env = { TOKEN: "${{ secrets.DIGITALOCEAN_TOKEN }}" }; },
      "workflow-level env reads secrets (DIGITALOCEAN_TOKEN): every job would get them"],
    ["pull_request_target", (d: Doc) => { d.on = { pull_request_target: { branches: ["main"] } }; },
      "runs on pull_request_target: a pull request's code would run with the base repository's secrets"],
  ])("broken: %s is caught", (_, breakIt, problem) => {
    const broken = copy(preview);
    breakIt(broken);
    expect(secretScopeProblems(broken, PREVIEW)).toContain(problem);
  });
});

describe("deploy.yml", () => {
  test("production only by workflow_dispatch from main in environment production; push updates staging; ups serialised", () => {
    expect(deployProblems(deploy)).toEqual([]);
  });

  test("which jobs run for which event", () => {
    expect(jobsRunning(deploy, "push")).toEqual(["test", "staging"]);
    expect(jobsRunning(deploy, "workflow_dispatch staging")).toEqual(["test", "staging"]);
    expect(jobsRunning(deploy, "workflow_dispatch production")).toEqual(["test", "production"]);
    expect(jobsRunning(deploy, "workflow_dispatch production from a branch")).toEqual(["test"]);
  });

  test("every up job runs the guard on its own stack before pulumi up", () => {
    expect(guardProblems(deploy.jobs.staging, "staging")).toEqual([]);
    expect(guardProblems(deploy.jobs.production, "production")).toEqual([]);
  });

  test.each([
    ["the production job runs on push", (d: Doc) => { d.jobs.production.if = "github.event_name == 'push' || inputs.stack == 'production'"; },
      "job production touches production on push"],
    ["the production job has no if at all", (d: Doc) => { delete d.jobs.production.if; }, "job production touches production on push"],
    ["the production environment is dropped", (d: Doc) => { delete d.jobs.production.environment; },
      "job production touches production without environment: production"],
    ["the staging job also updates production", (d: Doc) => {
      d.jobs.staging.steps.push({ uses: "pulumi/actions@v6", with: { command: "up", "stack-name": "production" } });
    }, "job staging touches production on push"],
    ["a run step pushes production", (d: Doc) => { d.jobs.staging.steps.push({ run: "npx pulumi up --yes --stack production" }); },
      "job staging touches production on push"],
    ["production from any branch", (d: Doc) => { d.jobs.production.if = "github.event_name == 'workflow_dispatch' && inputs.stack == 'production'"; },
      "job production updates production from a branch other than main"],
    ["production ups may cancel each other", (d: Doc) => { d.jobs.production.concurrency["cancel-in-progress"] = true; },
      "job production: concurrency does not serialise production updates without cancelling one"],
    ["no manual input", (d: Doc) => { delete d.on.workflow_dispatch; }, "no workflow_dispatch input that can choose production"],
  ])("broken: %s is caught", (_, breakIt, problem) => {
    const broken = copy(deploy);
    breakIt(broken);
    expect(deployProblems(broken)).toContain(problem);
  });
});

describe("the if-expression evaluator the deploy checks rely on", () => {
  const ctx = { "github.event_name": "push", "inputs.stack": "", "github.ref": "refs/heads/main" };
  test.each([
    [undefined, true],
    ["github.event_name == 'push'", true],
    ["github.event_name == 'PUSH'", true],
    ["github.event_name != 'push'", false],
    ["github.event_name == 'workflow_dispatch' && inputs.stack == 'production'", false],
    ["github.event_name == 'push' || inputs.stack == 'staging'", true],
    ["${{ !(github.event_name == 'push') }}", false],
    ["inputs.stack", false],
  ])("%s is %s on push", (expr, want) => {
    expect(evaluateIf(expr, ctx)).toBe(want);
  });

  test("an unknown context is an error, not a guess", () => {
    expect(() => evaluateIf("github.actor == 'me'", ctx)).toThrow("unknown context github.actor");
  });
});
