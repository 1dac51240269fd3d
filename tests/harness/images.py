"""Build the shipped Docker images and run "containers" from them without a Docker engine.

What works on a Debian 12 machine without Docker Hub or a container runtime that may set rlimits
(../shared/notes/images.md): a Debian base made with mmdebstrap from the machine's own Debian mirror and
`podman import`ed, `buildah bud --isolation chroot --network host`, then per container `buildah from`
and `buildah run --isolation chroot --network host`: the image's own root filesystem and binaries on
the host's network, so each container takes its own loopback address and port.

Caches, kept between runs on purpose (CI time): the base image BASE_IMAGE (rebuilt when older than
BASE_MAX_AGE) and the last build of each Dockerfile under cache_tag(), which keeps buildah's cached
layers (`--layers`: the apt and pip layers are reused while the Dockerfile and pyproject.toml above them
are unchanged). What a test run creates besides (its image tag, its working containers) it removes.
`podman rmi` of those two tags drops the caches.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from typing import Dict, List, Optional, Sequence

from mysqlpilot.local.supervisor import process_tree

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BASE_IMAGE = "localhost/mysqlpilot-test/debian:bookworm-slim"
BASE_MAX_AGE = 7 * 86400
TOOLS = ("mmdebstrap", "podman", "buildah")
NICE = ["nice", "-n", "15", "ionice", "-c3"]    # the build shares a 2-core machine with the tests


def missing_tools() -> List[str]:
    return [t for t in TOOLS if shutil.which(t) is None]


def containerpilot_binary() -> Optional[str]:
    """The ContainerPilot the image takes from its build context: $MYSQLPILOT_CONTAINERPILOT, else
    ../shared/bin/containerpilot beside the clone (CI has it there), else one on PATH."""
    for cand in (os.environ.get("MYSQLPILOT_CONTAINERPILOT"),
                 os.path.join(os.path.dirname(REPO), "shared", "bin", "containerpilot"),
                 shutil.which("containerpilot")):
        if cand and os.access(cand, os.X_OK):
            return cand
    return None


def run(argv: Sequence[str], log=None, timeout: float = 900, check: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run(list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, timeout=timeout)
    if log is not None:
        log.write(f"$ {' '.join(argv)}\n{p.stdout}\n")
        log.flush()
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} exited {p.returncode}:\n{p.stdout[-6000:]}")
    return p


def debian_mirror() -> str:
    """The mirror apt already uses, read the way scripts/install-deps.sh reads it."""
    p = subprocess.run(["bash", "-c", f'source "{REPO}/scripts/install-deps.sh" && debian_mirror'],
                       capture_output=True, text=True)
    if p.returncode != 0 or not p.stdout.strip():
        raise AssertionError(f"no Debian mirror: {p.stderr}")
    return p.stdout.strip()


def image_exists(name: str) -> bool:
    return subprocess.run(["podman", "image", "exists", name]).returncode == 0


def image_age(name: str) -> float:
    p = subprocess.run(["podman", "image", "inspect", "--format", "{{.Created.Unix}}", name],
                       capture_output=True, text=True)
    try:
        return time.time() - int(p.stdout.strip())
    except ValueError:
        return float("inf")


def ensure_base(log) -> str:
    """Debian bookworm minbase from this machine's mirror, as BASE_IMAGE (kept as a cache)."""
    if image_exists(BASE_IMAGE) and image_age(BASE_IMAGE) < BASE_MAX_AGE:
        return BASE_IMAGE
    mirror = debian_mirror()
    with tempfile.TemporaryDirectory(prefix="mp-base-") as tmp:
        tar = os.path.join(tmp, "bookworm.tar")
        run(NICE + ["mmdebstrap", "--variant=minbase", "bookworm", tar, f"deb {mirror} bookworm main"], log)
        if image_exists(BASE_IMAGE):
            run(["podman", "rmi", "--force", BASE_IMAGE], log, check=False)
        run(["podman", "import", tar, BASE_IMAGE], log)
    return BASE_IMAGE


def build_context(dest: str, containerpilot: str) -> str:
    """What the Dockerfiles COPY, from this work tree, plus ContainerPilot where CONTAINERPILOT_FROM=context
    takes it (docker/offline/containerpilot). The work tree itself is left untouched."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(os.path.join(REPO, name), dest)
    for name in ("mysqlpilot", "docker"):
        shutil.copytree(os.path.join(REPO, name), os.path.join(dest, name), ignore=ignore)
    shutil.copy2(containerpilot, os.path.join(dest, "docker", "offline", "containerpilot"))
    return dest


def image_id(name: str) -> Optional[str]:
    p = subprocess.run(["podman", "image", "inspect", "--format", "{{.Id}}", name], capture_output=True, text=True)
    return p.stdout.strip() or None if p.returncode == 0 else None


def cache_tag(dockerfile: str) -> str:
    """The tag that keeps the last build of a Dockerfile, and with it buildah's cached layers: `buildah rmi`
    of a build's only tag removes its intermediate layers too."""
    return f"localhost/mysqlpilot-test/{os.path.basename(os.path.dirname(dockerfile))}:layer-cache"


def build(dockerfile: str, tag: str, containerpilot: str, log, build_args: Optional[Dict[str, str]] = None) -> str:
    """`buildah bud` of a Dockerfile of this repository, ContainerPilot from the build context.

    pip inside the build verifies TLS with its own CA bundle, not the system's; the RUN steps get this
    machine's CA bundle and a pip.conf pointing at it through a bind mount (-v), so nothing of it lands
    in a layer (only the empty mount point /etc/xdg/pip)."""
    base = ensure_base(log)
    with tempfile.TemporaryDirectory(prefix="mp-ctx-") as tmp:
        os.makedirs(os.path.join(tmp, "ctx"))
        ctx = build_context(os.path.join(tmp, "ctx"), containerpilot)
        pipconf = os.path.join(tmp, "pip")
        os.makedirs(pipconf)
        shutil.copy2("/etc/ssl/certs/ca-certificates.crt", os.path.join(pipconf, "ca.crt"))
        with open(os.path.join(pipconf, "pip.conf"), "w") as fh:
            fh.write("[global]\ncert = /etc/xdg/pip/ca.crt\n")
        args = {"BASE_IMAGE": base, "CONTAINERPILOT_FROM": "context", **(build_args or {})}
        argv = NICE + ["buildah", "bud", "--isolation", "chroot", "--network", "host", "--layers", "--force-rm",
                       "--format", "docker", "-v", f"{pipconf}:/etc/xdg/pip:ro", "-f",
                       os.path.join(ctx, dockerfile), "-t", tag]
        for k, v in args.items():
            argv += ["--build-arg", f"{k}={v}"]
        run(argv + [ctx], log, timeout=1800)
    cache, old = cache_tag(dockerfile), image_id(cache_tag(dockerfile))
    run(["buildah", "tag", tag, cache], log)
    if old and old != image_id(tag):
        run(["buildah", "rmi", old], log, check=False)      # the previous build's layers that nothing shares
    return tag


def image_config(image: str) -> Dict:
    p = subprocess.run(["buildah", "inspect", "--type", "image", image], capture_output=True, text=True, check=True)
    return json.loads(p.stdout)["Docker"]["config"]


def remove_image(tag: str, log=None) -> None:
    run(["buildah", "rmi", tag], log, check=False)


class Container:
    """One `buildah from` working container; `start` runs a command in it in the background, as `docker
    run` would run the image's entrypoint; `kill` SIGKILLs every process inside it."""

    def __init__(self, image: str, name: str, logdir: str):
        self.name = f"{name}-{uuid.uuid4().hex[:8]}"
        self.logdir = logdir
        self.id = run(["buildah", "from", "--pull=never", "--name", self.name, image]).stdout.strip().splitlines()[-1]
        self.proc: Optional[subprocess.Popen] = None
        self.log_path = os.path.join(logdir, f"{name}.log")
        self._root: Optional[str] = None
        self.volumes: Dict[str, str] = {}          # host dir -> path inside, for every run in it

    def mount(self) -> str:
        """The container's root filesystem, seen from the host."""
        return run(["buildah", "mount", self.id]).stdout.strip().splitlines()[-1]

    def start(self, argv: Sequence[str], env: Dict[str, str], hostname: str,
              volumes: Optional[Dict[str, str]] = None) -> None:
        """`volumes` maps host directories to paths in the container (a platform's volumes, e.g. the
        persistent volume Mesos mounts at the state dir). Without one, buildah run gives each of the
        image's VOLUMEs an anonymous directory of its own."""
        # The environment goes into the container's config, as `docker run -e` puts it (and `exec` then
        # sees it too), not on buildah run's command line where every `ps` would show the secrets.
        config = ["buildah", "config"]
        for k, v in env.items():
            config += ["--env", f"{k}={v}"]
        run(config + [self.id])
        self.volumes = dict(volumes or {})
        cmd = ["buildah", "run", "--isolation", "chroot", "--network", "host", "--hostname", hostname]
        cmd += self._volume_args()
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd + [self.id, "--"] + list(argv), stdin=subprocess.DEVNULL,
                                     stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)

    def exec(self, argv: Sequence[str], env: Optional[Dict[str, str]] = None, timeout: float = 120
             ) -> subprocess.CompletedProcess:
        """A command beside the running ones in the same root filesystem with the container's environment,
        as `docker exec` (and Docker's HEALTHCHECK) would run it: with the container's volumes, which
        each `buildah run` mounts anew (without them it would see the image's empty state dir)."""
        cmd = ["buildah", "run", "--isolation", "chroot", "--network", "host"] + self._volume_args()
        for k, v in (env or {}).items():
            cmd += ["--env", f"{k}={v}"]
        return subprocess.run(cmd + [self.id, "--"] + list(argv), stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=timeout)

    def _volume_args(self) -> List[str]:
        out: List[str] = []
        for host_dir, path in self.volumes.items():
            out += ["--volume", f"{host_dir}:{path}"]
        return out

    def _descendants(self) -> List[int]:
        return process_tree(self.proc.pid)[1:] if self.proc else []

    def root(self) -> Optional[str]:
        """The root directory the container's processes see (buildah run chroots into a mount of its own)."""
        if self._root:
            return self._root
        for pid in self._descendants():
            try:
                r = os.readlink(f"/proc/{pid}/root")
            except OSError:
                continue
            if r != "/":
                self._root = r
                return r
        return None

    def processes(self) -> List[Dict]:
        """Every process inside the container (same root directory): pid, uid, comm, argv."""
        root = self.root()
        if not root:
            return []
        out = []
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                if os.readlink(f"/proc/{d}/root") != root:
                    continue
                with open(f"/proc/{d}/status") as fh:
                    uid = int(next(line for line in fh if line.startswith("Uid:")).split()[1])
                with open(f"/proc/{d}/cmdline", "rb") as fh:
                    argv = [a.decode(errors="replace") for a in fh.read().split(b"\0") if a]
                with open(f"/proc/{d}/comm") as fh:
                    comm = fh.read().strip()
            except (OSError, StopIteration):
                continue
            out.append({"pid": int(d), "uid": uid, "comm": comm, "argv": argv})
        return out

    def kill(self) -> None:
        """SIGKILL everything in the container at once, as the kernel does when a container's cgroup
        is killed (a host dying, `docker kill`): no hook runs."""
        for _ in range(20):
            procs = self.processes()
            if not procs:
                break
            for p in procs:
                try:
                    os.kill(p["pid"], signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.2)
        if self.proc:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                pass

    def log_tail(self, chars: int = 4000) -> str:
        try:
            with open(self.log_path, errors="replace") as fh:
                return fh.read()[-chars:]
        except FileNotFoundError:
            return ""

    def remove(self) -> None:
        self.kill()
        if getattr(self, "_log", None):
            self._log.close()
        run(["buildah", "umount", self.id], check=False)
        run(["buildah", "rm", self.id], check=False)
