#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine for ktrace-harness: system packages, tracefs, and the
# package in ./.venv. Idempotent; run as root (apt-get and BPF need it).
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=0
for tool in bpftrace clang llc bpftool qemu-system-x86_64 pkg-config depmod busybox setpriv \
    chromium mmdebstrap unshare chroot ssh g++; do
    command -v "$tool" >/dev/null 2>&1 || need_apt=1
done
[ -f /usr/include/bpf/libbpf.h ] || need_apt=1
[ -x /usr/sbin/sshd ] || need_apt=1
if [ "$need_apt" = 1 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        bpftrace clang llvm libbpf-dev bpftool libelf-dev zlib1g-dev pkg-config make gcc g++ \
        qemu-system-x86 busybox-static kmod util-linux chromium mmdebstrap openssh-client \
        openssh-server >/dev/null
fi

# bpftrace and tracepoints need tracefs; mount it where the kernel expects it.
if [ -d /sys/kernel/tracing ] && [ ! -e /sys/kernel/tracing/events ]; then
    mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null || true
fi
if [ -d /sys/kernel/debug ] && [ ! -e /sys/kernel/debug/tracing ]; then
    mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null || true
fi

python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e '.[test,report,vm]'
# An editable install leaves the sources uncompiled; with PYTHONDONTWRITEBYTECODE set (as in
# some shells and CI) every harness command would compile them again (~0.3 s of each start).
.venv/bin/python -m compileall -q harness grammar >/dev/null
# The SSH lane's test host: this machine's sshd on localhost, keyed and named ktrace-localhost.
bash scripts/setup_ssh.sh
# The newest bpftrace (--bpftrace 0.27): a Debian forky root built once into the cache
# (~390 MB, about a minute), then found there; the version tests run on it.
.venv/bin/python -m harness.host.bpftrace_versions 0.27
echo "setup done: .venv/bin/harness is ready"
