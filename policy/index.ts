// The "nodehost" policy pack: `pulumi preview --policy-pack policy` (the preview and deploy workflows run it).
import { PolicyPack } from "@pulumi/policy";
import { policies } from "./rules";

new PolicyPack("nodehost", { enforcementLevel: "mandatory", policies });
