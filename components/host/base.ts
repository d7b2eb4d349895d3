// Step 2: security updates, fail2ban, UFW, SSH hardening, swap, time sync, the data volume.
import * as pulumi from "@pulumi/pulumi";
import { HostStep, HostStepArgs } from "./step";

export interface BaseArgs extends HostStepArgs {
  deployUser: string;
  swapMb: number;
  /** /dev/disk/by-id path of the data volume; formatted only when it holds no filesystem. */
  dataDevice: pulumi.Input<string>;
  dataMount: string;
  /**
   * The volume's size as configured (0 where the program does not manage it): not read by the
   * script, it is there so a grown volume re-runs the step, which grows the filesystem to it.
   */
  dataSizeGb: number;
  /** sshd's AllowUsers: the deploy user, the connection's user, ssh.extraUsers. */
  sshUsers: pulumi.Input<string>[];
  /** Sources UFW lets reach SSH; empty = anywhere (the cloud firewall, if any, narrows it). */
  sshAllowFrom: string[];
  /** "HH:MM" (the host's clock, UTC on a droplet): when an update that needs a reboot gets one; "never": not automatically. */
  rebootAt: string;
  /** logs.forward: where rsyslog sends the journal and nginx's logs over TLS; unset = they stay here. */
  logForward?: { host: string; port: number; peerName?: string; caPem: string; framing: "octet-counted" | "traditional" };
}

export class Base extends HostStep {
  constructor(name: string, args: BaseArgs, opts?: pulumi.ComponentResourceOptions) {
    super("nodehost:host:Base", name, "base", args, opts);
    this.run(name, args, {
      DEPLOY_USER: args.deployUser,
      SWAP_MB: args.swapMb,
      DATA_DEVICE: args.dataDevice,
      DATA_MOUNT: args.dataMount,
      DATA_SIZE_GB: args.dataSizeGb,
      SSH_PORT: 22,
      SSH_ALLOW_USERS: pulumi.all(args.sshUsers).apply((users) => [...new Set(users)].join(" ")),
      SSH_ALLOW_FROM: args.sshAllowFrom.join(" "),
      REBOOT_AT: args.rebootAt,
      LOG_HOST: args.logForward?.host ?? "",
      LOG_PORT: args.logForward?.port ?? "",
      LOG_PEER: args.logForward ? args.logForward.peerName ?? args.logForward.host : "",
      LOG_CA_PEM_B64: Buffer.from(args.logForward?.caPem ?? "").toString("base64"),
      LOG_FRAMING: args.logForward?.framing ?? "",
    }, { secret: false, timeoutMinutes: 30 });
    this.registerOutputs({ fingerprint: this.fingerprint });
  }
}
