// Entry point: read config, build the stack, export its outputs. Nothing else lives here.
import { loadConfig } from "./components/config";
import { createStack } from "./components/stack";

const stack = createStack(loadConfig());

export const publicIp = stack.outputs.publicIp;
export const url = stack.outputs.url;
export const urls = stack.outputs.urls;
export const healthUrl = stack.outputs.healthUrl;
export const appRelease = stack.outputs.appRelease;
export const sshCommand = stack.outputs.sshCommand;
export const basicAuthUser = stack.outputs.basicAuthUser;
export const basicAuthPassword = stack.outputs.basicAuthPassword;
export const bucketName = stack.outputs.bucketName;
