# Shared by scripts/demo.sh and scripts/test.sh (sourced, not run): installs what the
# package needs on Debian. Runs as root, or through sudo when not root.

# Runs a command as root.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        echo "error: '$*' needs root: run this script as root or install sudo" >&2
        exit 1
    fi
}

# Installs the Debian packages given that are not installed yet (apt-get update first).
install_debian_packages() {
    local missing=()
    local package
    for package in "$@"; do
        if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
            missing+=("$package")
        fi
    done
    if [ "${#missing[@]}" -eq 0 ]; then
        echo "==> Debian packages already installed: $*"
        return
    fi
    echo "==> Installing Debian packages: ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
}

# Installs a PyPI package that provides `command`, unless the command is already there.
# Debian's Python refuses `pip install` outside a virtual environment (PEP 668, "externally
# managed"); only then is --break-system-packages added.
install_pip_package() {
    local package=$1 command=$2
    export PATH="$HOME/.local/bin:$PATH"
    if command -v "$command" >/dev/null 2>&1; then
        echo "==> $command already installed"
        return
    fi
    echo "==> Installing $package from PyPI"
    local output
    if ! output=$(python3 -m pip install "$package" 2>&1); then
        if printf '%s' "$output" | grep -q "externally-managed-environment"; then
            python3 -m pip install --break-system-packages "$package"
        else
            printf '%s\n' "$output" >&2
            return 1
        fi
    else
        printf '%s\n' "$output" | tail -n 1
    fi
    command -v "$command" >/dev/null 2>&1 || {
        echo "error: $package installed but '$command' is not on PATH ($PATH)" >&2
        return 1
    }
}

# Extra options for every `swift build/test/run` (for example SWIFT_FLAGS="--scratch-path
# .build-mine" to keep a separate build folder), split on spaces.
read -r -a swift_flags <<< "${SWIFT_FLAGS:-}"

require_swift() {
    if ! command -v swift >/dev/null 2>&1; then
        echo "error: swift is not on PATH: install a Swift 6.1 or later toolchain first" >&2
        exit 1
    fi
    swift --version 2>&1 | head -n 1
}
