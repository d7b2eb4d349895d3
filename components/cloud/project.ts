// The DigitalOcean Project that groups one stack's resources in the control panel.
import * as pulumi from "@pulumi/pulumi";
import * as digitalocean from "@pulumi/digitalocean";

export interface StackProjectArgs {
  environment: "Production" | "Staging" | "Development";
  description: string;
  resourceUrns: pulumi.Input<string>[];
}

export class StackProject extends pulumi.ComponentResource {
  public readonly projectId: pulumi.Output<string>;

  constructor(name: string, args: StackProjectArgs, opts?: pulumi.ComponentResourceOptions) {
    super("nodehost:cloud:StackProject", name, {}, opts);
    const project = new digitalocean.Project(
      `${name}-project`,
      {
        name,
        environment: args.environment,
        purpose: "Web Application",
        description: args.description,
        resources: args.resourceUrns,
      },
      { parent: this },
    );
    this.projectId = project.id;
    this.registerOutputs({ projectId: this.projectId });
  }
}
