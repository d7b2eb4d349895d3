// Times the program's evaluation per stack under the fake DigitalOcean account (what a
// `pulumi preview` spends in the program itself, without the engine and providers), against a
// floor measured in the same run: the mock runtime registering as many empty resources.
// Usage: npm run bench:preview [-- --runs N]
import { performance } from "perf_hooks";
import * as pulumi from "@pulumi/pulumi";
import { FakeAccount } from "../unit/fake-do";
import { runProgram, upStack } from "../unit/harness";

class Empty extends pulumi.CustomResource {
  constructor(name: string) {
    super("bench:index:Empty", name, {});
  }
}

const runs = Number(process.argv[process.argv.indexOf("--runs") + 1]) || 7;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function time(fn: () => Promise<{ error?: unknown }>): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    const r = await fn();
    out.push(performance.now() - t0);
    if (r.error) throw r.error;
  }
  return out;
}

async function main() {
  const firstT0 = performance.now();
  const first = await upStack(new FakeAccount(), "production");
  if (first.error) throw first.error;
  const firstMs = performance.now() - firstT0;
  const count = first.resources.length;
  const floor = await time(() => runProgram("floor", async () => {
    for (let i = 0; i < count; i++) new Empty(`r${i}`);
  }));
  const production = await time(() => upStack(new FakeAccount(), "production"));
  const staging = await time(async () => {
    const account = new FakeAccount();
    account.addDomain("example.com");
    return upStack(account, "staging");
  });
  const f = median(floor);
  const rows = [
    [`${count} empty resources (floor)`, f],
    ["production", median(production)],
    ["staging", median(staging)],
  ] as const;
  console.log(`program evaluation under mocks, median of ${runs} runs (first production run, with module warm-up: ${firstMs.toFixed(0)} ms)`);
  for (const [name, ms] of rows) console.log(`  ${name.padEnd(28)} ${ms.toFixed(0).padStart(6)} ms  ${(ms / f).toFixed(1).padStart(6)}x floor`);
  console.log(JSON.stringify({ runs, firstMs: Math.round(firstMs), resources: count, floorMs: Math.round(f), productionMs: Math.round(median(production)), stagingMs: Math.round(median(staging)) }));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
