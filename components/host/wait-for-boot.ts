// Step 1: SSH answers, cloud-init has finished and apt is free; every other step waits on it.
import * as pulumi from "@pulumi/pulumi";
import { HostStep, HostStepArgs } from "./step";

export type WaitForBootArgs = HostStepArgs;

export class WaitForBoot extends HostStep {
  constructor(name: string, args: WaitForBootArgs, opts?: pulumi.ComponentResourceOptions) {
    super("nodehost:host:WaitForBoot", name, "wait-for-boot", args, opts);
    this.run(name, args, {

    }, { secret: false, timeoutMinutes: 30, dialErrorLimit: 60 });
    this.registerOutputs({ fingerprint: this.fingerprint });
  }
}
