// Step 2: security updates, fail2ban, UFW, SSH hardening, swap, time sync, the data volume.
import * as pulumi from "@pulumi/pulumi";
import { HostStep, HostStepArgs } from "./step";

export interface BaseArgs extends HostStepArgs {
  deployUser: string;
  swapMb: number;
  /** /dev/disk/by-id path of the data volume; formatted only when it holds no filesystem. */
  dataDevice: pulumi.Input<string>;
  dataMount: string;
}

export class Base extends HostStep {
  constructor(name: string, args: BaseArgs, opts?: pulumi.ComponentResourceOptions) {
    super("nodehost:host:Base", name, "base", args, opts);
    this.run(name, args, {
      DEPLOY_USER: args.deployUser,
      SWAP_MB: args.swapMb,
      DATA_DEVICE: args.dataDevice,
      DATA_MOUNT: args.dataMount,
      SSH_PORT: 22,
    }, { secret: false, timeoutMinutes: 30 });
    this.registerOutputs({ fingerprint: this.fingerprint });
  }
}
