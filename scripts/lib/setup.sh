# Shared set-up for scripts/dev and scripts/test: installs the Debian packages the build needs
# when they are missing, and says what it does. Safe to run again.

# Packages the build needs: pkg-config and libvirt-dev for the `virt` crate, protobuf-compiler
# for raft-rs's protobuf code.
VMCLOUD_DEBIAN_PACKAGES=(pkg-config libvirt-dev protobuf-compiler)

say() { printf '==> %s\n' "$*" >&2; }

ensure_packages() {
  local missing=()
  for pkg in "${VMCLOUD_DEBIAN_PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
      missing+=("$pkg")
    fi
  done
  if [ ${#missing[@]} -eq 0 ]; then
    say "Debian packages present: ${VMCLOUD_DEBIAN_PACKAGES[*]}"
  else
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then
      command -v sudo >/dev/null || { say "missing packages ${missing[*]} and no sudo: install them as root"; exit 1; }
      sudo=(sudo)
    fi
    say "installing missing Debian packages: ${missing[*]}"
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  command -v cargo >/dev/null || { say "cargo not found: install Rust 1.95 (rustup) first"; exit 1; }
}

# What the browser tests need: Debian's headless Chromium and its WebDriver. As root they are
# installed when missing; otherwise those tests say they skipped.
ensure_browser() {
  if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
    say "browser present: $(chromium --version 2>/dev/null | head -n1)"
    return 0
  fi
  if [ "$(id -u)" -ne 0 ]; then
    say "not root and no chromium/chromedriver: the browser tests will be skipped"
    return 0
  fi
  say "installing chromium and chromium-driver for the browser tests"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
}

# Prometheus and promtool (Debian's `prometheus`) for the NOC tests: the alert rules' unit
# tests and a real Prometheus scraping `vmcloud dev`. As root they are installed when missing
# (the package's own service is stopped: the tests start their own); otherwise those tests say
# they skipped.
ensure_prometheus() {
  if command -v prometheus >/dev/null && command -v promtool >/dev/null; then
    say "prometheus present: $(prometheus --version 2>&1 | head -n1)"
    return 0
  fi
  if [ "$(id -u)" -ne 0 ]; then
    say "not root and no prometheus/promtool: the NOC tests will be skipped"
    return 0
  fi
  say "installing prometheus (and promtool) for the NOC tests"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  if command -v systemctl >/dev/null; then
    systemctl disable --now prometheus >/dev/null 2>&1 || true
  fi
}

# Debian's etcd, for `vmcloud bench raft --peer etcd` (its test starts a 3-member etcd on
# loopback). The package's own service is not wanted.
ensure_etcd() {
  if [ -x /usr/bin/etcd ]; then
    say "etcd present: $(/usr/bin/etcd --version 2>&1 | head -n1)"
    return 0
  fi
  if [ "$(id -u)" -ne 0 ]; then
    say "not root and no etcd: the side-by-side Raft test will be skipped"
    return 0
  fi
  say "installing etcd-server for the side-by-side Raft test"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends etcd-server >/dev/null
  if command -v systemctl >/dev/null; then
    systemctl disable --now etcd >/dev/null 2>&1 || true
  fi
}

# The Python tools tests start (aiosmtpd: the SMTP sink mail goes to), in a virtual
# environment in the repository (.venv, ignored by git). Tests that find none say they skipped.
ensure_python_tools() {
  local venv="$PWD/.venv"
  if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "import aiosmtpd, openapi_spec_validator, standardwebhooks, localstripe" 2>/dev/null; then
    say "Python tools present in $venv"
  else
    if ! python3 -c "import ensurepip, venv" 2>/dev/null && [ "$(id -u)" -eq 0 ]; then
      say "installing python3-venv for the test tools"
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
    fi
    say "making $venv with aiosmtpd (the SMTP sink of the mail test), openapi-spec-validator, standardwebhooks and localstripe (a Stripe to pay with test cards)"
    if ! { python3 -m venv "$venv" && "$venv/bin/pip" install -q aiosmtpd openapi-spec-validator standardwebhooks localstripe; }; then
      say "could not install the Python test tools: the SMTP, OpenAPI validation and card payment tests will be skipped"
    fi
  fi
  export VMCLOUD_PYTHON="$venv/bin/python"
}

# The OpenID provider the SSO test starts (npm's oidc-provider, pinned by
# tests/oidc/package-lock.json), installed into tests/oidc/node_modules (ignored by git) with the
# machine's Node.js; Debian's nodejs and npm are installed as root when missing.
ensure_node_tools() {
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    if [ "$(id -u)" -ne 0 ]; then
      say "no node/npm and not root: the SSO test will be skipped"
      return 0
    fi
    say "installing nodejs and npm for the SSO test's OpenID provider"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
  fi
  if [ -d tests/oidc/node_modules/oidc-provider ] && [ tests/oidc/node_modules/.package-lock.json -nt tests/oidc/package-lock.json ]; then
    say "oidc-provider present in tests/oidc (node $(node --version))"
  else
    say "installing oidc-provider into tests/oidc (npm ci, node $(node --version))"
    if ! (cd tests/oidc && npm ci --no-audit --no-fund --loglevel=error >/dev/null); then
      say "could not install oidc-provider: the SSO test will be skipped"
    fi
  fi
}

# What the end-to-end VM test needs on the host (as root): libvirtd with the QEMU driver and
# QEMU itself, the libvirt-qemu user libvirtd runs guests as, and /dev/kvm readable by that
# user's group (libvirt otherwise re-probes QEMU on every define, ~45 s each; guests still run
# under TCG). The test starts the daemons itself. Without root, those tests say they skipped.
ensure_vm_host() {
  if [ "$(id -u)" -ne 0 ]; then
    say "not root: the real-guest and network-namespace tests will be skipped"
    return 0
  fi
  if ! command -v libvirtd >/dev/null || ! command -v qemu-system-x86_64 >/dev/null; then
    local pkgs=(libvirt-daemon libvirt-daemon-driver-qemu qemu-system-x86 iproute2)
    local qemu_utils
    qemu_utils=$(dpkg-query -W -f='${Version}' qemu-utils 2>/dev/null || true)
    if [[ "$qemu_utils" == *bpo12* ]]; then
      # qemu-utils comes from bookworm-backports here; stable's QEMU would remove it, so QEMU
      # comes from the same place (docs/decisions/0002-qemu-from-backports.md).
      if ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
        echo "deb http://deb.debian.org/debian bookworm-backports main" > /etc/apt/sources.list.d/bookworm-backports.list
      fi
      pkgs=(libvirt-daemon libvirt-daemon-driver-qemu iproute2
            qemu-system-x86/bookworm-backports qemu-system-common/bookworm-backports
            qemu-system-data/bookworm-backports seabios/bookworm-backports)
    fi
    say "installing libvirtd and QEMU for the end-to-end VM test: ${pkgs[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
  fi
  # The network-namespace tests ping guests and read nftables.
  local net=()
  command -v ping >/dev/null || net+=(iputils-ping)
  command -v nft >/dev/null || net+=(nftables)
  command -v bridge >/dev/null || net+=(iproute2)
  if [ ${#net[@]} -gt 0 ]; then
    say "installing network tools for the network-namespace tests: ${net[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${net[@]}" >/dev/null
  fi
  getent group kvm >/dev/null || groupadd -r kvm
  getent group libvirt-qemu >/dev/null || groupadd -r libvirt-qemu
  id libvirt-qemu >/dev/null 2>&1 || useradd -r -g libvirt-qemu -G kvm -d /var/lib/libvirt -s /usr/sbin/nologin libvirt-qemu
  if [ -e /dev/kvm ]; then chgrp kvm /dev/kvm && chmod 660 /dev/kvm; fi
  say "VM host ready: $(libvirtd --version), $(qemu-system-x86_64 --version | head -n1)"
}
