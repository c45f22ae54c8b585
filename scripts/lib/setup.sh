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
