// The base of every host step: one idempotent script in scripts/ run over SSH by remote.Command.
import * as crypto from "crypto";
import * as fs from "fs";
import * as path from "path";
import * as pulumi from "@pulumi/pulumi";
import * as remote from "@pulumi/command/remote";

/**
 * Where the step scripts are read from: the checkout's scripts/, or NODEHOST_SCRIPTS_DIR (a
 * patched copy, to try a script change without editing the checkout; the VM suite uses it).
 */
export function scriptsDir(): string {
  return process.env.NODEHOST_SCRIPTS_DIR || path.join(__dirname, "..", "..", "scripts");
}

/**
 * The remote command of every step: sudo starts a root shell at once; the script arrives on its
 * stdin, lands in a 0600 temp file that root made (in sticky /tmp, so no other user can replace
 * or edit it: root never runs a file another user can change) and runs in / (not the deploy
 * user's home, which the app user cannot enter) with no stdin of its own,
 * so a child that reads stdin cannot eat the script and no parameter ever appears on a command
 * line.
 *
 * The time limit is enforced on the host: pulumi-command 1.2.1 runs the command with
 * `session.Run`, which ignores the context's deadline (provider/pkg/provider/remote/
 * commandOutputs.go, `run`), so `customTimeouts` alone would let a stuck `npm ci` hang `pulumi up`.
 * GNU timeout puts the script in its own process group and signals the whole group: TERM at the
 * limit (exit 124), KILL a minute later if that did not end it.
 */
export function stepWrapper(limit: number, unit: "m" | "s" = "m"): string {
  // The stack's steps take minutes (their customTimeouts); seconds are for the VM suite's stub step
  // that proves the limit, so it waits seconds for it, not a minute.
  if (!Number.isInteger(limit) || limit < 1) throw new Error(`bad step timeout ${limit}`);
  const said = unit === "m" ? `${limit} min` : `${limit} s`;
  const asRoot = `umask 077; cd / || exit 1; f=$(mktemp) || exit 1; trap 'rm -f "$f"' EXIT; cat > "$f" || exit 1; ` +
    `timeout --kill-after=60 ${limit}${unit} bash "$f" </dev/null; rc=$?; ` +
    `if [ $rc -eq 124 ]; then echo "error: step stopped after its ${said} limit" >&2; fi; exit $rc`;
  return `sudo -n bash -c ${shellQuote(asRoot)}`;
}

/**
 * A file a step needs on the host before it runs, sent by remote.CopyToRemote over SFTP as the
 * connection's user (a relative remotePath lands under that user's home).
 */
export interface Upload {
  localPath: string;
  remotePath: string;
  /** sha256 of the file: the provider copies again only when it changes (copyController.go:148 at v1.2.1). */
  sha256: string;
}

/** What the VM test host replays: exactly what remote.Command (and its CopyToRemote) receive. */
export interface StepSpec {
  name: string;
  /** Copied first, each by its own CopyToRemote that the command depends on. */
  uploads?: Upload[];
  create: string;
  stdin: string;
  triggers: string[];
  logging: string;
  dependsOn: string[];
  /** The connection's hostKey, when the stack pins one. */
  hostKey?: string;
  /**
   * sha256 over every input remote.Command diffs (create, stdin, triggers, logging, connection):
   * the engine re-runs a step when any of them changes (pulumi-go-provider's infer diff; the
   * provider's Update runs `create` again, commandController.go:62-80 at v1.2.1).
   */
  inputs: string;
}

/** The SSH connection every step uses (the `deploy` user, key auth). */
export interface HostConnection {
  host: pulumi.Input<string>;
  port: pulumi.Input<number>;
  user: pulumi.Input<string>;
  privateKey: pulumi.Input<string>;
  /**
   * The server's public key line: pulumi-command 1.2.1 then accepts that key only
   * (ssh.FixedHostKey, provider/pkg/provider/remote/connection.go:86-98); unset (or resolving to
   * undefined), it accepts any.
   */
  hostKey?: pulumi.Input<string | undefined>;
}

/** Args every step takes besides its own. */
export interface HostStepArgs {
  connection: HostConnection;
  /** Changes when the host is replaced (droplet id), so a new host re-runs every step. */
  hostId: pulumi.Input<string>;
  /** Steps that must have run first; their fingerprints are part of this step's triggers. */
  after: HostStep[];
  /**
   * Steps that must have run first whose re-run does not call for this one's: the engine orders
   * this step after them (dependsOn), but their fingerprints stay out of its triggers. A release
   * (app) needs no new nginx site or certificate, and a new PostgreSQL image or backup setup needs no
   * new release: the health gate, which takes every step's fingerprint, checks the site after each.
   */
  orderAfter?: HostStep[];
  /** Cloud resources that must exist first (not in the triggers: a change there is not a re-run). */
  waitFor?: pulumi.Resource[];
}

export type StepParams = Record<string, pulumi.Input<string | number | boolean>>;

export function shellQuote(value: string): string {
  return `'${value.replace(/'/g, `'\\''`)}'`;
}

export function sha256(data: string | Buffer): string {
  return crypto.createHash("sha256").update(data).digest("hex");
}

export function readScript(file: string): string {
  return fs.readFileSync(path.join(scriptsDir(), file), "utf8");
}

/** A shipped operator tool, as the base64 a step installs with `install_b64`. */
export function toolB64(file: string): string {
  return Buffer.from(readScript(path.join("tools", file))).toString("base64");
}

/** The scripts a step sends: lib.sh then scripts/<step>.sh, read when the step is declared. */
export function stepScript(step: string): string {
  return [readScript("lib.sh"), readScript(`${step}.sh`)].join("\n");
}

/**
 * The stdin of a step: header, one shell variable per parameter (sorted), then the script text.
 * Variables, not exports: the step's own shell reads them, and no child (apt and dpkg's
 * maintainer scripts, docker, curl, certbot, node) gets the passwords and keys in its environment;
 * a script hands a child what it needs explicitly. (Exported, a large app.env would also have
 * made every child fail with E2BIG: Linux caps one environment string at 128 KiB.)
 */
export function renderStdin(step: string, params: Record<string, string>, script: string): string {
  const vars = Object.keys(params)
    .sort()
    .map((k) => {
      if (!/^[A-Z][A-Z0-9_]*$/.test(k)) throw new Error(`step ${step}: bad parameter name ${k}`);
      return `${k}=${shellQuote(params[k])}`;
    });
  return [`# nodehost step: ${step}`, ...vars, script].join("\n");
}

export abstract class HostStep extends pulumi.ComponentResource {
  /** The script's name in scripts/ without .sh; also the step's name in docs and tests. */
  public readonly stepName: string;
  public readonly dependsOnSteps: string[];
  /** sha256 over this step's triggers: what later steps put in theirs. */
  public fingerprint!: pulumi.Output<string>;
  public spec!: pulumi.Output<StepSpec>;
  public command!: remote.Command;

  protected constructor(
    type: string,
    name: string,
    stepName: string,
    args: HostStepArgs,
    opts?: pulumi.ComponentResourceOptions,
  ) {
    super(type, name, {}, opts);
    this.stepName = stepName;
    this.dependsOnSteps = [...args.after, ...(args.orderAfter ?? [])].map((s) => s.stepName);
  }

  /**
   * Declares the remote command. `secret` marks a step whose parameters hold a secret: its stdin
   * is a Pulumi secret and its output is not logged.
   */
  protected run(
    name: string,
    args: HostStepArgs,
    params: StepParams,
    options: { secret: boolean; timeoutMinutes: number; dialErrorLimit?: number; deletedWith?: pulumi.Resource; uploads?: Upload[] },
  ): void {
    const script = stepScript(this.stepName);
    const stdin = pulumi
      .all(Object.entries(params).map(([k, v]) => pulumi.output(v).apply((x) => [k, String(x)] as const)))
      .apply((pairs) => renderStdin(this.stepName, Object.fromEntries(pairs), script));
    const triggers = pulumi
      .all([stdin, args.hostId, ...args.after.map((s) => s.fingerprint)])
      .apply(([text, hostId, ...upstream]) => [sha256(text), String(hostId), ...upstream]);
    const logging = options.secret ? "none" : "stdoutAndStderr";
    const c = args.connection;
    const create = stepWrapper(options.timeoutMinutes);
    const dialErrorLimit = options.dialErrorLimit ?? 10;
    const connection = {
      host: c.host,
      port: c.port,
      user: c.user,
      privateKey: c.privateKey,
      dialErrorLimit,
      perDialTimeout: 30,
      // An Output that resolves to undefined leaves the property out, as if never set.
      ...(c.hostKey ? { hostKey: c.hostKey as pulumi.Input<string> } : {}),
    };
    const after: pulumi.Resource[] = [...[...args.after, ...(args.orderAfter ?? [])].map((s) => s.command), ...(args.waitFor ?? [])];
    const uploads = options.uploads ?? [];
    // A FileAsset keeps only the file's hash and path in state, never its bytes, and two assets
    // are equal when their hashes are (pulumi sdk/go/common/resource/asset/asset.go:146-181 at
    // 1b5949891b, Equals and Serialize). A new host (hostId) gets the file again: triggers
    // replace the copy.
    const copies = uploads.map((u, i) => new remote.CopyToRemote(`${name}-upload${uploads.length > 1 ? `-${i}` : ""}`, {
      connection,
      source: new pulumi.asset.FileAsset(u.localPath),
      remotePath: u.remotePath,
      triggers: [args.hostId],
    }, {
      parent: this,
      dependsOn: after,
      deletedWith: options.deletedWith,
    }));

    this.command = new remote.Command(
      `${name}-run`,
      {
        connection,
        create,
        stdin: options.secret ? pulumi.secret(stdin) : stdin,
        triggers,
        logging,
      },
      {
        parent: this,
        dependsOn: [...after, ...copies],
        customTimeouts: { create: `${options.timeoutMinutes}m`, update: `${options.timeoutMinutes}m` },
        deletedWith: options.deletedWith,
      },
    );
    this.fingerprint = triggers.apply((t) => sha256(JSON.stringify(t)));
    const specConnection = pulumi.all([c.host, c.port, c.user, c.privateKey, c.hostKey])
      .apply(([host, port, user, key, hostKey]) => ({ host, port, user, privateKey: sha256(key), dialErrorLimit, perDialTimeout: 30, hostKey }));
    this.spec = pulumi.all([stdin, triggers, specConnection]).apply(([text, t, conn]) => ({
      name: this.stepName,
      uploads,
      create,
      stdin: text,
      triggers: t,
      logging,
      dependsOn: this.dependsOnSteps,
      ...(conn.hostKey ? { hostKey: conn.hostKey } : {}),
      inputs: sha256(JSON.stringify({ create, stdin: sha256(text), triggers: t, logging, connection: conn })),
    }));
  }
}
