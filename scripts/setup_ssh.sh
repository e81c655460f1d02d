#!/usr/bin/env bash
# The SSH lane's test host: this machine's own sshd on localhost, reached through the user's
# ssh config like any remote (`--lane ssh:ktrace-localhost`). Idempotent; run as root by
# scripts/setup.sh. It adds, never replaces:
#   ~/.ssh/ktrace-harness_ed25519      a key of its own (no passphrase), authorized for root;
#   ~/.ssh/ktrace-harness.conf         Host blocks for the tests, included from ~/.ssh/config;
#   ~/.ssh/ktrace-harness_known_hosts  this sshd's host key, read from /etc/ssh (so host keys
#                                      are checked: nothing is trusted on first use).
# Host aliases: ktrace-localhost and ktrace-localhost-b (port 22; two names for one machine make
# a two-host fleet), ktrace-nobpftrace (port 2222, an sshd the tests
# start in a mount namespace where bpftrace is hidden), ktrace-down (port 9: nothing listens).
set -euo pipefail

if [ ! -x /usr/sbin/sshd ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server >/dev/null
fi
ssh-keygen -A >/dev/null            # host keys, where the package's postinst did not make them
mkdir -p /run/sshd                  # sshd's privilege-separation directory

home_ssh="$HOME/.ssh"
key="$home_ssh/ktrace-harness_ed25519"
mkdir -p "$home_ssh"
chmod 700 "$home_ssh"
[ -f "$key" ] || ssh-keygen -q -t ed25519 -N '' -C 'ktrace-harness tests' -f "$key"
touch "$home_ssh/authorized_keys"
chmod 600 "$home_ssh/authorized_keys"
grep -qxF "$(cat "$key.pub")" "$home_ssh/authorized_keys" || cat "$key.pub" >> "$home_ssh/authorized_keys"

known="$home_ssh/ktrace-harness_known_hosts"
: > "$known.tmp"
for alias in 127.0.0.1 '[127.0.0.1]:2222' '[127.0.0.1]:9'; do
    for pub in /etc/ssh/ssh_host_*_key.pub; do
        printf '%s %s\n' "$alias" "$(cut -d' ' -f1,2 "$pub")" >> "$known.tmp"
    done
done
mv "$known.tmp" "$known"

cat > "$home_ssh/ktrace-harness.conf" <<EOF
# Written by ktrace-harness's scripts/setup_ssh.sh: the SSH lane's test hosts (this machine).
Host ktrace-nobpftrace
    Port 2222
Host ktrace-down
    Port 9
    ConnectTimeout 5
Host ktrace-localhost ktrace-localhost-b ktrace-nobpftrace ktrace-down
    HostName 127.0.0.1
    User root
    IdentityFile $key
    IdentitiesOnly yes
    UserKnownHostsFile $known
    StrictHostKeyChecking yes
EOF
config="$home_ssh/config"
touch "$config"
if ! grep -qxF 'Include ktrace-harness.conf' "$config"; then
    # At the top: an Include after a Host line would belong to that Host.
    { echo 'Include ktrace-harness.conf'; cat "$config"; } > "$config.tmp"
    mv "$config.tmp" "$config"
fi
chmod 600 "$config"

# An sshd on port 22 (a Debian host with systemd has started one; a container or CI machine,
# where policy-rc.d forbids services, has not): start one on the loopback addresses only.
if ! (exec 3<>/dev/tcp/127.0.0.1/22) 2>/dev/null; then
    /usr/sbin/sshd -o ListenAddress=127.0.0.1 -o ListenAddress=::1
fi
ssh -o BatchMode=yes ktrace-localhost true || {
    echo "setup_ssh: cannot ssh to ktrace-localhost (see above)" >&2
    exit 1
}
