// A step's output with the time each line arrived: where a step's minutes go, command by command
// (issue 9 asks for the fresh provision's time per step and per command). Times are taken here,
// as the bytes arrive over SSH, not on the host: the scripts' output stays as the provider reads it.
//
// A line's time is when its newline arrived. A program writing to a pipe buffers its output
// (apt, dpkg), so its lines may arrive together when it flushes or exits; the wait before the
// first of them is still that program's time. The scripts' own `changed:`/`unchanged:` lines are
// written by bash as each action ends, so the gap before one is that action's time.

export interface TimedLine {
  /** Milliseconds from the start of the command to this line's newline. */
  atMs: number;
  /** Milliseconds since the line before it (or the start). */
  gapMs: number;
  stream: "stdout" | "stderr";
  text: string;
}

export class Transcript {
  private readonly lines: TimedLine[] = [];
  private readonly partial = { stdout: "", stderr: "" };
  private lastMs = 0;

  constructor(private readonly startedMs: number) {}

  /** Takes a chunk as it arrives; `nowMs` is its arrival time (Date.now()). */
  add(stream: "stdout" | "stderr", chunk: string, nowMs: number): void {
    const parts = (this.partial[stream] + chunk).split("\n");
    this.partial[stream] = parts.pop()!;
    for (const text of parts) this.push(stream, text, nowMs);
  }

  /** Ends the command: a last line without a newline counts at `nowMs`. */
  end(nowMs: number): void {
    for (const stream of ["stdout", "stderr"] as const) {
      if (this.partial[stream] !== "") this.push(stream, this.partial[stream], nowMs);
      this.partial[stream] = "";
    }
  }

  all(): TimedLine[] {
    return [...this.lines];
  }

  /** `[+  12.3 s]`-prefixed lines, both streams in the order they arrived (stderr marked `!`). */
  text(): string {
    return this.lines.map((l) => `[+${(l.atMs / 1000).toFixed(1).padStart(6)} s]${l.stream === "stderr" ? "!" : " "} ${l.text}`).join("\n");
  }

  /** The `n` lines that waited longest for the line before them, longest first. */
  slowest(n: number): TimedLine[] {
    return [...this.lines].sort((a, b) => b.gapMs - a.gapMs || a.atMs - b.atMs).slice(0, n);
  }

  private push(stream: "stdout" | "stderr", text: string, nowMs: number): void {
    const atMs = Math.max(0, nowMs - this.startedMs);
    this.lines.push({ atMs, gapMs: atMs - this.lastMs, stream, text });
    this.lastMs = atMs;
  }
}
