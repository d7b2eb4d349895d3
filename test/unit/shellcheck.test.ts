// The shell that runs on hosts passes shellcheck (warnings and style included).
import { execFileSync } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { expect, test } from "vitest";
import { ROOT } from "./harness";

test("scripts/, scripts/tools/, the VM test host's shell and .ci/run are shellcheck clean", () => {
  const files = [
    ...fs.readdirSync(path.join(ROOT, "scripts")).filter((f) => f.endsWith(".sh")).map((f) => `scripts/${f}`),
    // (nodehost-ecosystem.js is node: the test suite runs it.)
    ...fs.readdirSync(path.join(ROOT, "scripts", "tools")).filter((f) => !f.endsWith(".js")).map((f) => `scripts/tools/${f}`),
    ...["lib", "images"].flatMap((d) =>
      fs.readdirSync(path.join(ROOT, "test", "e2e", d)).filter((f) => f.endsWith(".sh")).map((f) => `test/e2e/${d}/${f}`)),
    ".ci/run",
  ];
  expect(files.length).toBeGreaterThan(10);
  let out = "";
  try {
    out = execFileSync("shellcheck", ["-x", "-S", "style", "-s", "bash", ...files], { cwd: ROOT, encoding: "utf8" });
  } catch (e) {
    out = String((e as { stdout?: string }).stdout ?? e);
  }
  expect(out).toBe("");
});
