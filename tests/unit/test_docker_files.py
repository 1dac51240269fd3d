"""Docker images, checked without an engine: COPY sources, pinned + verified downloads, root start
through `mysqlpilot entrypoint`, HEALTHCHECK, and the config the images ship. The MariaDB image is also
built and run for real: tests/integration/test_image_mariadb.py."""
import json
import os
import re
import shlex

import pytest
import yaml

from .test_containerpilot_config import hook_commands

from mysqlpilot import config, marathon
from mysqlpilot.cli import main
from mysqlpilot.local import cp_config

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DOCKERFILES = [os.path.join(REPO, "docker", d, "Dockerfile") for d in ("percona-5.6", "mariadb")]


def instructions(path):
    """(INSTRUCTION, argument) pairs with continuations joined and comments dropped."""
    out, cur = [], ""
    with open(path) as fh:
        for line in fh:
            s = line.rstrip("\n")
            if not cur and (not s.strip() or s.lstrip().startswith("#")):
                continue
            if s.rstrip().endswith("\\"):
                cur += s.rstrip()[:-1] + " "
                continue
            cur += s
            word, _, rest = cur.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
            cur = ""
    return out


@pytest.fixture(params=DOCKERFILES, ids=lambda p: os.path.basename(os.path.dirname(p)))
def dockerfile(request):
    return request.param


def test_every_copy_source_exists(dockerfile):
    copies = [a for i, a in instructions(dockerfile) if i in ("COPY", "ADD")]
    assert copies
    for arg in copies:
        if arg.startswith("--from="):          # from an earlier build stage, not the context
            continue
        parts = [p for p in shlex.split(arg) if not p.startswith("--")]
        for src in parts[:-1]:
            assert os.path.exists(os.path.join(REPO, src)), f"{dockerfile}: COPY source {src} missing"


def arg_defaults(dockerfile):
    return dict(re.findall(r"^(\w+)=(\S+)$", "\n".join(a for i, a in instructions(dockerfile) if i == "ARG"), re.M))


def test_downloads_are_pinned_and_verified(dockerfile):
    """Every download outside apt has a pinned version and is checked against a pinned checksum: SHA-1
    where the vendor publishes only that (ContainerPilot), SHA-256 otherwise."""
    defaults = arg_defaults(dockerfile)
    found = 0
    for i, a in instructions(dockerfile):
        if i != "RUN":
            continue
        for url_cmd in re.findall(r"\b(?:curl|wget)\s+-[^&|;]*", a):
            m = re.search(r'"?(https://[^"\s]+)"?', url_cmd)
            assert m, url_cmd
            found += 1
            assert "latest" not in m.group(1), f"unpinned download {m.group(1)}"
            for var in re.findall(r"\$\{?(\w+)\}?", m.group(1)):
                assert re.fullmatch(r"[\d.]+(-\d+)?", defaults.get(var, "")), f"{var} in {m.group(1)} not pinned"
            target = re.search(r"-\S*o\s*(\S+)", url_cmd).group(1)
            check = re.search(rf'echo "\$\{{(\w+)\}}  {re.escape(target)}" \| (sha1|sha256)sum -c', a)
            assert check, f"{target} downloaded without a checksum check"
            var, algo = check.groups()
            assert re.fullmatch(r"[0-9a-f]{%d}" % (40 if algo == "sha1" else 64), defaults.get(var, "")), \
                f"{var} has no pinned {algo} default"
    assert found >= 1          # ContainerPilot at least comes from outside apt


def test_containerpilot_release_sha1_and_offline_binary(dockerfile):
    """The release tarball is checked against the SHA-1 ContainerPilot publishes for 3.8.0
    (containerpilot-3.8.0.sha1.txt); CONTAINERPILOT_FROM=context takes docker/offline/containerpilot,
    which git ignores, and the build refuses a binary of another version."""
    defaults = arg_defaults(dockerfile)
    assert defaults["CONTAINERPILOT_VERSION"] == "3.8.0"
    assert defaults["CONTAINERPILOT_SHA1"] == "84642c13683ddae6ccb63386e6160e8cb2439c26"
    assert defaults["CONTAINERPILOT_FROM"] == "release"        # downloading and verifying is the default
    ins = instructions(dockerfile)
    assert ("COPY", "docker/offline/ /tmp/containerpilot-context/") in ins
    runs = " ".join(a for i, a in ins if i == "RUN")
    assert "install -m 0755 /tmp/containerpilot-context/containerpilot /usr/local/bin/containerpilot" in runs
    assert 'grep -qx "Version: ${CONTAINERPILOT_VERSION}"' in runs
    with open(os.path.join(REPO, ".gitignore")) as fh:
        assert "/docker/offline/containerpilot" in fh.read().split()


def test_starts_as_root_through_the_entrypoint_with_a_healthcheck(dockerfile):
    """Mesos volumes belong to root: the image starts as root and `mysqlpilot entrypoint` fixes the
    state dir's ownership and drops to mysql before it execs ContainerPilot with the shipped config."""
    ins = instructions(dockerfile)
    users = [a for i, a in ins if i == "USER"]
    assert not users or users[-1] in ("root", "0")
    entry = json.loads([a for i, a in ins if i == "ENTRYPOINT"][-1])
    assert entry == ["mysqlpilot", "entrypoint"]
    env = " ".join(a for i, a in ins if i == "ENV")
    assert "CONTAINERPILOT=/etc/containerpilot.json5" in env
    assert any(i == "COPY" and a.startswith("docker/containerpilot.json5 /etc/containerpilot.json5")
               for i, a in ins)
    runs = " ".join(a for i, a in ins if i == "RUN")
    assert re.search(r"\butil-linux\b", runs)       # setpriv, with which the entrypoint drops to mysql
    # HEALTHCHECK: exec form, the node API then a mysqlpilot subcommand the CLI has
    # (test_the_images_health_check_is_marathons checks the script itself).
    hc = [a for i, a in ins if i == "HEALTHCHECK"]
    assert len(hc) == 1
    cmd = json.loads(hc[0].split(" CMD ", 1)[1])
    assert all(sub in main.commands for sub in hook_commands(cmd)), cmd
    # The image's flavor settings are a valid mysqlpilot config.
    vals = dict(re.findall(r"(MYSQLPILOT_\w+)=(\S+)", env))
    argdefaults = arg_defaults(dockerfile)
    vals = {k: re.sub(r"\$\{(\w+)\}", lambda m: argdefaults[m.group(1)], v) for k, v in vals.items()}
    cfg = config.load(env=dict(vals, MYSQL_ROOT_PASSWORD="x", MYSQL_REPL_PASSWORD="y", HOSTNAME="n1"))
    assert cfg.mysqld_user == "mysql"
    assert cfg.flavor == ("percona" if "percona" in dockerfile else "mariadb")


def test_one_volume_holds_the_datadir_as_a_plain_subdirectory(dockerfile):
    """Restore renames scratch -> datadir and rebuild renames datadir -> *.aside-*: both fail (EXDEV,
    EBUSY) if the datadir is a mount point or on another filesystem than the state dir."""
    ins = instructions(dockerfile)
    env = dict(re.findall(r"(MYSQLPILOT_\w+)=(\S+)", " ".join(a for i, a in ins if i == "ENV")))
    state, data = env["MYSQLPILOT_STATE_DIR"], env["MYSQLPILOT_DATADIR"]
    assert os.path.dirname(data) == state
    volumes = [v for i, a in ins if i == "VOLUME" for v in json.loads(a)]
    assert volumes == [state]
    # The Marathon group mounts its persistent volume at the same place and sets the same paths.
    assert (marathon.STATE_DIR, marathon.DATADIR) == (state, data)
    # The image's own state dir belongs to mysql (the entrypoint re-owns a mounted volume at start).
    assert any(i == "RUN" and re.search(rf"chown -R mysql:mysql [^&]*{re.escape(state)}\b", a) for i, a in ins)


def test_entrypoint_and_hooks_are_installed_on_path(dockerfile):
    runs = " ".join(a for i, a in instructions(dockerfile) if i == "RUN")
    # ContainerPilot lands in /usr/local/bin, which every base image has on PATH.
    assert re.search(r"tar -xzf \S+containerpilot\S* -C /usr/local/bin containerpilot", runs)
    # mysqlpilot is pip-installed from the copied sources; a venv's script is linked onto PATH.
    assert re.search(r"pip install [^&]*/src\b", runs)
    if "venv" in runs:
        assert re.search(r"ln -s (\S+)/bin/mysqlpilot /usr/local/bin/mysqlpilot", runs)


def test_hooks_in_the_shipped_config_are_installed_commands():
    cfg = cp_config.load(os.path.join(REPO, "docker", "containerpilot.json5"), {"HOST": "10.0.0.5"})
    for job in cfg["jobs"]:
        for cmd in (job.get("exec"), (job.get("health") or {}).get("exec")):
            for sub in hook_commands(cmd) if cmd else []:
                assert sub in main.commands, cmd
            if isinstance(cmd, list) and "curl " in cmd[-1]:
                # The health check's fast path: every image must have curl (and sh) in its final stage.
                for df in ("mariadb", "percona-5.6"):
                    with open(os.path.join(REPO, "docker", df, "Dockerfile")) as fh:
                        final = fh.read().rsplit("\nFROM ", 1)[-1]
                    assert re.search(r"\bcurl\b", final), f"docker/{df}/Dockerfile: no curl in the final image"
    # The console script the images install is the same entry point.
    with open(os.path.join(REPO, "pyproject.toml")) as fh:
        assert 'mysqlpilot = "mysqlpilot.cli:main"' in fh.read()


def test_compose_file():
    with open(os.path.join(REPO, "docker", "compose.yml")) as fh:
        comp = yaml.safe_load(fh)
    nodes = [s for n, s in comp["services"].items() if n.startswith("mysql-")]
    assert len(nodes) == 3 and {"consul", "s3"} <= set(comp["services"])
    for svc in nodes:
        ctx = os.path.normpath(os.path.join(REPO, "docker", svc["build"]["context"]))
        assert os.path.isfile(os.path.join(ctx, svc["build"]["dockerfile"]))
        assert svc["env_file"] == "compose.env" and "environment" not in svc
        assert [v.split(":", 1)[1] for v in svc["volumes"]] == [marathon.STATE_DIR]
    assert len({s["volumes"][0].split(":")[0] for s in nodes}) == 3       # a volume of its own each
    with open(os.path.join(REPO, "docker", "compose.env.example")) as fh:
        example = dict(line.strip().split("=", 1) for line in fh if "=" in line and not line.startswith("#"))
    for key in ("MYSQL_ROOT_PASSWORD", "MYSQL_REPL_PASSWORD", "AWS_SECRET_ACCESS_KEY"):
        assert example[key] == "CHANGE-ME"
    env = dict(example, MYSQL_ROOT_PASSWORD="a", MYSQL_REPL_PASSWORD="b", MYSQL_PASSWORD="c", HOSTNAME="mysql-1")
    assert config.load(env=env).store == "s3"


def _seconds(v) -> float:
    """A ContainerPilot/compose duration: a number of seconds, or "90s", "2m", "1m30s"."""
    if isinstance(v, (int, float)):
        return float(v)
    total, num = 0.0, ""
    for ch in str(v).strip():
        if ch.isdigit() or ch == ".":
            num += ch
        else:
            total += float(num) * {"s": 1, "m": 60, "h": 3600}[ch]
            num = ""
    return total + (float(num) if num else 0.0)


def test_compose_grace_outlasts_containerpilots_stop_timeout():
    """docker stop sends SIGTERM, then SIGKILL after stop_grace_period. ContainerPilot SIGKILLs what is
    left after its own top-level stopTimeout (5 s when unset): the grace must be longer, or Docker kills
    ContainerPilot mid hand-over."""
    cfg = cp_config.load(os.path.join(REPO, "docker", "containerpilot.json5"), {"HOST": "10.0.0.5"})
    stop_timeout = _seconds(cfg.get("stopTimeout", 5))
    with open(os.path.join(REPO, "docker", "compose.yml")) as fh:
        comp = yaml.safe_load(fh)
    nodes = [s for n, s in comp["services"].items() if n.startswith("mysql-")]
    assert nodes
    from mysqlpilot.timeouts import PLATFORM_GRACE, PRE_STOP_BUDGET
    for svc in nodes:
        assert "stop_grace_period" in svc, svc
        # ContainerPilot counts its stopTimeout only once every job stopped: the service job may first
        # wait its own stopTimeout for pre-stop (seen with the real binary).
        assert _seconds(svc["stop_grace_period"]) > PRE_STOP_BUDGET + stop_timeout
        assert _seconds(svc["stop_grace_period"]) == PLATFORM_GRACE


def test_duration_parser():
    assert [_seconds(x) for x in (5, "90s", "2m", "1m30s", "150s")] == [5, 90, 120, 90, 150]


def test_the_images_health_check_is_marathons():
    """One check: the node API's /health with curl, `mysqlpilot probe` only when that is not 200."""
    import shlex as _shlex
    for df in ("mariadb", "percona-5.6"):
        with open(os.path.join(REPO, "docker", df, "Dockerfile")) as fh:
            line = next(ln for ln in fh if ln.startswith("HEALTHCHECK"))
        cmd = json.loads(line.split(" CMD ", 1)[1])
        assert cmd[:2] == ["sh", "-c"] and _shlex.split(cmd[2]) == _shlex.split(marathon.PROBE_SHELL), df
