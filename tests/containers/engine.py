"""A Docker engine for the container tier, and the local base image the Dockerfile builds from.

No registry is reachable from the machines this runs on (../shared/notes/docker-here.md), so:

- when no engine answers, Debian's `docker.io` is installed and `dockerd` started with its data-root
  under a temporary directory; `Engine.stop` stops it and puts back what dockerd changes on the host
  (the filter and nat iptables tables with their FORWARD policy, `ip_forward`, the docker0 bridge);
- the Dockerfile's `FROM` image is made here: a minbase bookworm rootfs with Debian's Python 3.11 and
  this machine's CA certificates (HTTPS leaves through a re-signing proxy), imported and tagged with
  that name. The rootfs tarball is cached (`base_tarball`), so only the first run pays debootstrap.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

DEBIAN_MIRROR = "http://deb.debian.org/debian"
BASE_PACKAGES = ("python3", "python3-venv", "python3-pip", "python-is-python3", "ca-certificates")
HOST_CA_DIR = Path("/usr/local/share/ca-certificates")
CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "complical-metering"
# The official image's environment; Python is /usr/bin/python here, not /usr/local/bin/python.
BASE_ENV = ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8")
# The docker.io CLI: it runs DOCKER_BUILDKIT=1 builds without buildx, which a newer CLI cannot.
DOCKER = "/usr/bin/docker"
ENGINE_PACKAGES = ("docker.io", "debootstrap", "docker-compose")
IPTABLES_TABLES = ("filter", "nat")


class EngineUnavailable(Exception):
    """No engine could be started here (the tier skips, saying why)."""


def run(*command: str, timeout: float = 600, **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run a command; on failure raise with its output, which is what a reader needs."""
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False, **kwargs)  # type: ignore[call-overload]
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {result.returncode}:\n{result.stdout}{result.stderr}")
    return result


@dataclass
class HostState:
    """What dockerd changes on the host, as it was before it started."""

    iptables: dict[str, str]
    ip_forward: str
    had_docker0: bool

    @classmethod
    def read(cls) -> HostState:
        tables = {table: run("iptables-save", "-t", table).stdout for table in IPTABLES_TABLES}
        return cls(tables, Path("/proc/sys/net/ipv4/ip_forward").read_text(), _link_exists("docker0"))

    def restore(self) -> None:
        for rules in self.iptables.values():
            subprocess.run(["iptables-restore"], input=rules, text=True, check=True)
        Path("/proc/sys/net/ipv4/ip_forward").write_text(self.ip_forward)
        if not self.had_docker0 and _link_exists("docker0"):
            run("ip", "link", "delete", "docker0")


def _link_exists(name: str) -> bool:
    return subprocess.run(["ip", "link", "show", name], capture_output=True, check=False).returncode == 0


@dataclass
class Engine:
    """A running engine: `env` points docker and docker-compose at it."""

    env: dict[str, str]
    started: subprocess.Popen[bytes] | None = None  # None: it ran before us, we leave it be
    host: HostState | None = None
    root: Path | None = None
    log: Path | None = None
    seconds_to_start: float = 0.0

    def docker(
        self, *args: str, timeout: float = 600, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return run(DOCKER, *args, timeout=timeout, env=self.env, input=input)

    def stop(self) -> None:
        if self.started is None:
            return
        self.started.terminate()
        try:
            self.started.wait(60)
        except subprocess.TimeoutExpired:
            self.started.kill()
            self.started.wait()
        # containerd-shims outlive a killed dockerd; its own exit leaves none.
        if self.host is not None:
            self.host.restore()
        if self.root is not None:
            _remove_tree(self.root)


def _remove_tree(root: Path) -> None:
    """Remove the data-root, unmounting the overlays a crashed daemon may leave behind.

    The removal runs detached: deleting two images' layers file by file took ~3 minutes, which the
    suite need not wait for."""
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    for mount in sorted((m for m in mounts if m.startswith(str(root))), reverse=True):
        subprocess.run(["umount", "-l", mount], check=False)
    subprocess.Popen(["rm", "-rf", str(root)], start_new_session=True)


def _answers(env: dict[str, str]) -> bool:
    if not Path(DOCKER).exists():
        return False
    probe = subprocess.run([DOCKER, "info"], capture_output=True, env=env, timeout=30, check=False)
    return probe.returncode == 0


def _install_engine() -> None:
    if os.geteuid() != 0:
        raise EngineUnavailable("dockerd is not installed and installing it needs root")
    env = os.environ | {"DEBIAN_FRONTEND": "noninteractive"}
    try:
        run("apt-get", "update", "-qq", env=env)
        run("apt-get", "install", "-y", "-qq", "--no-install-recommends", *ENGINE_PACKAGES, env=env)
    except (RuntimeError, FileNotFoundError) as exc:
        raise EngineUnavailable(f"could not install Debian's docker.io: {exc}") from exc


@contextlib.contextmanager
def engine() -> Iterator[Engine]:
    """The engine that runs here, or one started (and installed) for the session, stopped after."""
    existing = os.environ | {"DOCKER_BUILDKIT": "1"}
    if _answers(existing):
        yield Engine(existing)
        return
    if shutil.which("dockerd") is None or shutil.which("debootstrap") is None:
        _install_engine()
        if shutil.which("dockerd") is None:
            raise EngineUnavailable("docker.io installed, but no dockerd on PATH")
    if os.geteuid() != 0:
        raise EngineUnavailable("no Docker engine answers and starting dockerd needs root")
    started = _start_dockerd()
    try:
        yield started
    finally:
        started.stop()


def _start_dockerd() -> Engine:
    host = HostState.read()
    root = Path(tempfile.mkdtemp(prefix="metering-docker-"))
    socket = root / "docker.sock"
    log = root / "dockerd.log"
    began = time.monotonic()
    process = subprocess.Popen(
        [
            "dockerd",
            f"--data-root={root / 'data'}",
            f"--exec-root={root / 'exec'}",
            f"--pidfile={root / 'docker.pid'}",
            f"--host=unix://{socket}",
            "--storage-driver=overlay2",
        ],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    # DOCKER_HOST: this engine only, whatever else runs on the machine's default socket.
    started = Engine(
        os.environ | {"DOCKER_HOST": f"unix://{socket}", "DOCKER_BUILDKIT": "1"}, process, host, root, log
    )
    deadline = time.monotonic() + 60
    while not _answers(started.env):
        if process.poll() is not None or time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-2000:]
            started.stop()
            raise EngineUnavailable(f"dockerd did not start:\n{tail}")
        time.sleep(0.2)
    started.seconds_to_start = time.monotonic() - began
    return started


# --- the base image -------------------------------------------------------------------------------


def base_tarball(arch: str = "amd64") -> Path:
    """The base rootfs as a tarball, cached by everything that goes into it (packages, CA files)."""
    path = CACHE_DIR / f"bookworm-python-{arch}-{_inputs_digest(arch)}.tar"
    if not path.exists():
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="metering-rootfs-", dir=CACHE_DIR) as work:
            _make_rootfs(Path(work) / "rootfs", arch)
            partial = Path(work) / "rootfs.tar"
            run("tar", "--numeric-owner", "-C", str(Path(work) / "rootfs"), "-cf", str(partial), ".")
            partial.rename(path)  # whole or absent: a stopped run leaves no half tarball behind
    return path


def _inputs_digest(arch: str) -> str:
    digest = hashlib.sha256(f"{arch} {BASE_PACKAGES} {BASE_ENV}".encode())
    for certificate in sorted(HOST_CA_DIR.glob("*.crt")):
        digest.update(certificate.read_bytes())
    return digest.hexdigest()[:12]


def _make_rootfs(rootfs: Path, arch: str) -> None:
    run(
        "debootstrap", "--variant=minbase", f"--arch={arch}", f"--include={','.join(BASE_PACKAGES)}",
        "bookworm", str(rootfs), DEBIAN_MIRROR, timeout=900,
    )  # fmt: skip
    certificates = rootfs / HOST_CA_DIR.relative_to("/")
    certificates.mkdir(parents=True, exist_ok=True)
    for certificate in HOST_CA_DIR.glob("*.crt"):
        shutil.copy(certificate, certificates)
    run("chroot", str(rootfs), "update-ca-certificates")
    # The official image's Python is not Debian's: pip may install into it (no PEP 668 marker).
    for marker in rootfs.glob("usr/lib/python3*/EXTERNALLY-MANAGED"):
        marker.unlink()
    run("chroot", str(rootfs), "apt-get", "clean")
    shutil.rmtree(rootfs / "var/lib/apt/lists", ignore_errors=True)


def import_base(engine: Engine, tag: str, arch: str = "amd64") -> None:
    """Import the cached rootfs as `tag` (the name the Dockerfile's FROM uses)."""
    changes = [arg for env in BASE_ENV for arg in ("-c", f"ENV {env}")]
    platform = [] if arch == "amd64" else ["--platform", f"linux/{arch}"]
    engine.docker("import", *platform, *changes, str(base_tarball(arch)), tag)
