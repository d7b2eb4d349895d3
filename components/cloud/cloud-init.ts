// The droplet's first-boot user-data: the deploy user every host step connects as, and the SSH host
// key every step checks the droplet by.
export interface CloudInitArgs {
  deployUser: string;
  sshPublicKeys: string[];
  /**
   * The droplet's SSH host key, made by the program (components/stack.ts), so that the first and
   * every later connection can check it: cloud-init's cc_ssh writes `ssh_keys` entries
   * `ed25519_private`/`ed25519_public` as /etc/ssh/ssh_host_ed25519_key{,.pub} after deleting the
   * image's keys (`ssh_deletekeys`, on by default), and makes the key types not given.
   */
  hostKey?: { privateOpenssh: string; publicOpenssh: string };
}

/** A YAML block scalar (`|`) of `text`, each line indented by `indent` spaces. */
function block(text: string, indent: number): string {
  const pad = " ".repeat(indent);
  return `|\n${text.trimEnd().split("\n").map((l) => `${pad}${l}`).join("\n")}`;
}

/**
 * Returns the #cloud-config the droplet boots with (the VM test host boots the same string).
 * Kept minimal on purpose: everything else is a host step that can run again.
 */
export function cloudInitUserData(args: CloudInitArgs): string {
  const keys = args.sshPublicKeys.map((k) => `      - ${JSON.stringify(k)}`).join("\n");
  return [
    "#cloud-config",
    "users:",
    `  - name: ${args.deployUser}`,
    "    groups: [sudo]",
    "    shell: /bin/bash",
    "    sudo: \"ALL=(ALL) NOPASSWD:ALL\"",
    "    lock_passwd: true",
    "    ssh_authorized_keys:",
    keys,
    ...(args.hostKey
      ? [
        "ssh_keys:",
        `  ed25519_private: ${block(args.hostKey.privateOpenssh, 4)}`,
        `  ed25519_public: ${JSON.stringify(args.hostKey.publicOpenssh.trim())}`,
      ]
      : []),
    // sudo warns on every call when the hostname does not resolve.
    "manage_etc_hosts: true",
    "package_update: false",
    "package_upgrade: false",
    "",
  ].join("\n");
}
