// The droplet's first-boot user-data: the deploy user every host step connects as.
export interface CloudInitArgs {
  deployUser: string;
  sshPublicKeys: string[];
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
    // sudo warns on every call when the hostname does not resolve.
    "manage_etc_hosts: true",
    "package_update: false",
    "package_upgrade: false",
    "",
  ].join("\n");
}
