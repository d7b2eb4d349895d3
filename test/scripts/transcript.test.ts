// test/e2e/lib/transcript.ts natively: the per-line times the VM suite writes into steps.log and
// the bench prints (the slowest lines of each step of the fresh provision).
import { describe, expect, it } from "vitest";
import { run } from "../e2e/lib/exec";
import { Transcript } from "../e2e/lib/transcript";

describe("Transcript", () => {
  it("times each line by when its newline arrived, across chunks and both streams", () => {
    const t = new Transcript(1000);
    t.add("stdout", "changed: a\nchan", 1200);
    t.add("stdout", "ged: b\n", 4200); // the line split over two chunks ends with the second
    t.add("stderr", "warning\n", 4300);
    t.add("stdout", "done: x", 4500); // no newline: counted when the command ends
    t.end(5000);
    expect(t.all()).toEqual([
      { atMs: 200, gapMs: 200, stream: "stdout", text: "changed: a" },
      { atMs: 3200, gapMs: 3000, stream: "stdout", text: "changed: b" },
      { atMs: 3300, gapMs: 100, stream: "stderr", text: "warning" },
      { atMs: 4000, gapMs: 700, stream: "stdout", text: "done: x" },
    ]);
    expect(t.text().split("\n")).toEqual([
      "[+   0.2 s]  changed: a",
      "[+   3.2 s]  changed: b",
      "[+   3.3 s]! warning",
      "[+   4.0 s]  done: x",
    ]);
    expect(t.slowest(2).map((l) => l.text)).toEqual(["changed: b", "done: x"]);
  });

  it("keeps blank lines and an empty command's output empty", () => {
    const t = new Transcript(0);
    t.add("stdout", "\n\nx\n", 10);
    t.end(20);
    expect(t.all().map((l) => l.text)).toEqual(["", "", "x"]);
    const empty = new Transcript(0);
    empty.end(5);
    expect(empty.text()).toBe("");
    expect(empty.slowest(3)).toEqual([]);
  });

  it("takes a real child's output as run() streams it: the line after a sleep waited for it", async () => {
    const t = new Transcript(Date.now());
    const r = await run("bash", ["-c", "echo first; sleep 1.2; echo second; echo oops >&2; printf last"], { transcript: t, timeoutMs: 30_000 });
    expect(r.code).toBe(0);
    const lines = t.all();
    // Each stream in its own order (two pipes: which one is read first when both are ready is the
    // event loop's choice).
    expect(lines.filter((l) => l.stream === "stdout").map((l) => l.text)).toEqual(["first", "second", "last"]);
    expect(lines.filter((l) => l.stream === "stderr").map((l) => l.text)).toEqual(["oops"]);
    // Lower bounds only: a loaded machine makes every gap longer, never shorter than the sleep.
    const second = lines.find((l) => l.text === "second")!;
    expect(second.gapMs).toBeGreaterThanOrEqual(1100);
    expect(second.atMs).toBeGreaterThanOrEqual(1100);
    expect(r.stdout).toBe("first\nsecond\nlast");
  });
});
