# Sourced by bin/demo and bin/test: make this clone runnable on a fresh Debian machine.
# Installs exactly what uv.lock records (hashes checked) into .venv, and Java 17, docker-compose and
# Prometheus through apt when they are missing. bin/upgrade is the one way the lock changes.
set -euo pipefail

python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "setup: Python 3.11 or newer is needed (set PYTHON=/path/to/python3.11)" >&2
    exit 1
fi

# uv itself, pinned with hashes (bin/uv-requirements.txt), in a venv of its own.
uv=.tools/bin/uv
if ! cmp -s bin/uv-requirements.txt .tools/uv-requirements.txt 2>/dev/null; then
    echo "setup: installing uv (bin/uv-requirements.txt)" >&2
    rm -rf .tools
    "$python" -m venv .tools
    .tools/bin/pip install --quiet --require-hashes --no-deps -r bin/uv-requirements.txt
    cp bin/uv-requirements.txt .tools/uv-requirements.txt
fi
# --frozen: install the lock as it is, never re-resolve; --extra dev: the tests' tools and the emulator.
UV_PYTHON_DOWNLOADS=never "$uv" sync --quiet --frozen --extra dev --python "$python"

install_debian() {
    echo "setup: $1 is missing: installing Debian's $2 with apt-get" >&2
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get update -qq
    # No recommends: docker-compose's would pull in a whole Docker engine.
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$2" >/dev/null
}

command -v java >/dev/null || install_debian "java (needed by the KCL daemon)" openjdk-17-jre-headless
# `docker-compose config` validates docker-compose.yml (tests/deploy); no engine is needed for that.
command -v docker-compose >/dev/null || install_debian "docker-compose (checks docker-compose.yml)" docker-compose
# A real Prometheus scrapes `metering consume` in tests/integration/test_metrics.py.
command -v prometheus >/dev/null || install_debian "prometheus (scrapes the consumer in the tests)" prometheus
