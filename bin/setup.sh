# Sourced by bin/demo and bin/test: make this clone runnable on a fresh Debian machine.
# Creates .venv with the project and its dev extras, and installs Java 17 and docker-compose when missing.
set -euo pipefail

python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "setup: Python 3.11 or newer is needed (set PYTHON=/path/to/python3.11)" >&2
    exit 1
fi

stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -f "$stamp" ]; then
    echo "setup: installing Python dependencies into .venv" >&2
    "$python" -m venv .venv
    .venv/bin/pip install --quiet --upgrade pip
    .venv/bin/pip install --quiet -e '.[dev]'
    rm -f .venv/.installed-* && touch "$stamp"
fi

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
