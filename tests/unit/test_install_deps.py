"""scripts/install-deps.sh on a stock Debian 12, where `python3` is Debian's own and its pip refuses to
install into it (PEP 668): the script's own functions, sourced, run with /usr/bin/python3 first on PATH.

Cheap on purpose (no network, no apt): the virtualenv is made in a temp dir and a hand-made wheel is
installed into it. The full install path runs in every `bash scripts/test.sh` (CI: .ci/run).
"""
import base64
import hashlib
import os
import re
import subprocess
import sys
import zipfile

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(REPO, "scripts", "install-deps.sh")
DEBIAN_PY = "/usr/bin/python3"


def debian_python() -> bool:
    """/usr/bin/python3 is Debian's: its stdlib carries the EXTERNALLY-MANAGED marker."""
    if not os.access(DEBIAN_PY, os.X_OK):
        return False
    out = subprocess.run([DEBIAN_PY, "-I", "-c", "import sysconfig; print(sysconfig.get_path('stdlib'))"],
                         capture_output=True, text=True)
    return out.returncode == 0 and os.path.exists(os.path.join(out.stdout.strip(), "EXTERNALLY-MANAGED"))


needs_debian = pytest.mark.skipif(not debian_python(), reason="no Debian /usr/bin/python3 with EXTERNALLY-MANAGED")


def debian_first_env(**extra):
    """The environment of a shell on stock Debian: /usr/bin first, no virtualenv, no pip override."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "PIP_BREAK_SYSTEM_PACKAGES", "PIP_USER")}
    rest = [p for p in env.get("PATH", "").split(os.pathsep) if p and p not in ("/usr/bin", "/bin")]
    env["PATH"] = os.pathsep.join(["/usr/bin", "/bin"] + rest)
    env.update(extra)
    return env


def source_and_run(script: str, env=None, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", f'source "{SCRIPT}"\n{script}'], capture_output=True, text=True,
                          env=env if env is not None else debian_first_env(), cwd=cwd or REPO, timeout=300)


def make_wheel(dirpath, name="pilotprobe", version="0.1") -> str:
    """A minimal pure-Python wheel, so installing needs neither network nor a build backend."""
    files = {f"{name}.py": b"OK = 'installed'\n",
             f"{name}-{version}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
             f"{name}-{version}.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: hand\nRoot-Is-Purelib: true\n"
                                                  b"Tag: py3-none-any\n"}
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{name}-{version}.dist-info/RECORD,,")
    files[f"{name}-{version}.dist-info/RECORD"] = ("\n".join(record) + "\n").encode()
    whl = os.path.join(str(dirpath), f"{name}-{version}-py3-none-any.whl")
    with zipfile.ZipFile(whl, "w") as zf:
        for path, data in files.items():
            zf.writestr(path, data)
    return whl


def test_sourcing_the_script_only_defines_functions(tmp_path):
    """The tests below rely on this: sourcing installs nothing."""
    res = source_and_run("type make_venv venv_install debian_mirror ensure_venv_support >/dev/null && echo ok",
                         env=debian_first_env(MYSQLPILOT_VENV=str(tmp_path / "never")))
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr
    assert not (tmp_path / "never").exists()


@needs_debian
def test_debian_python_refuses_system_pip(tmp_path):
    """The premise: with /usr/bin first, `python3 -m pip install` refuses (externally-managed)."""
    whl = make_wheel(tmp_path)
    env = debian_first_env()
    which = subprocess.run(["bash", "-c", "command -v python3"], capture_output=True, text=True, env=env)
    assert which.stdout.strip() == DEBIAN_PY
    res = subprocess.run(["python3", "-m", "pip", "install", "--no-index", "--dry-run", whl],
                         capture_output=True, text=True, env=env)
    assert res.returncode != 0 and "externally-managed-environment" in res.stdout + res.stderr


@needs_debian
def test_install_path_with_debian_python_first_on_path(tmp_path):
    """make_venv + venv_install, exactly as install-deps.sh calls them, with Debian's python3."""
    whl = make_wheel(tmp_path)
    venv = tmp_path / "venv"
    res = source_and_run(f'make_venv "{venv}" python3 && venv_install "{venv}" pilotprobe --no-index "{whl}"')
    assert res.returncode == 0, res.stdout + res.stderr
    assert "creating virtualenv" in res.stdout and DEBIAN_PY in res.stdout
    probe = subprocess.run([str(venv / "bin" / "python"), "-I", "-c",
                            "import sys, pilotprobe; print(sys.base_prefix, sys.prefix, pilotprobe.OK)"],
                           capture_output=True, text=True, env=debian_first_env())
    base, prefix, ok = probe.stdout.split()
    assert (base, prefix, ok) == ("/usr", str(venv), "installed"), probe.stderr

    # A re-run is a no-op: the venv is kept and pip is not called (the wheel is gone, so pip would fail).
    os.remove(whl)
    res = source_and_run(f'make_venv "{venv}" python3 && venv_install "{venv}" pilotprobe --no-index "{whl}"')
    assert res.returncode == 0 and "creating virtualenv" not in res.stdout, res.stdout + res.stderr

    # A venv whose interpreter is gone is made again.
    os.remove(venv / "bin" / "python")
    res = source_and_run(f'make_venv "{venv}" python3 && "{venv}/bin/python" -c "import sys; print(sys.prefix)"')
    assert res.returncode == 0 and "creating virtualenv" in res.stdout and str(venv) in res.stdout


def test_missing_venv_support_is_installed_with_apt(tmp_path):
    """Debian ships ensurepip apart (python3-venv); without it `python3 -m venv` fails. apt is stubbed."""
    flag = tmp_path / "venv-installed"
    fake = tmp_path / "python3"
    fake.write_text(f"""#!/bin/sh
case "$2" in
  'import ensurepip, venv') [ -e "{flag}" ] && exit 0; exit 1 ;;
  *) exec "{sys.executable}" "$@" ;;
esac
""")
    fake.chmod(0o755)
    script = f'apt_install() {{ echo "APT $*"; touch "{flag}"; }}\nensure_venv_support "{fake}" && echo ready'
    res = source_and_run(script)
    ver = "%d.%d" % sys.version_info[:2]
    assert res.returncode == 0, res.stderr
    assert res.stdout.split("\n")[:2] == [f"APT python3-venv python{ver}-venv", "ready"]
    # and nothing is installed when ensurepip is there
    res = source_and_run(f'apt_install() {{ echo APT; }}\nensure_venv_support "{sys.executable}" && echo ready')
    assert res.stdout.strip() == "ready"


@pytest.mark.parametrize("deb822,sources_list,want", [
    ("Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-updates\n\n"
     "Types: deb\nURIs: http://deb.debian.org/debian-security\nSuites: bookworm-security\n",
     None, "http://deb.debian.org/debian"),
    ("Types: deb\nURIs: http://security.debian.org/debian-security\nSuites: bookworm-security\n\n"
     "Types: deb\nURIs: http://mirror.example/debian/\nSuites: bookworm\n", None, "http://mirror.example/debian"),
    (None, "# comment\ndeb http://security.debian.org/debian-security bookworm-security main\n"
           "deb-src http://src.example/debian bookworm main\n"
           "deb [arch=amd64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://ftp.example/debian "
           "bookworm main\n", "http://ftp.example/debian"),
    (None, "deb [trusted=yes] http://ftp.example/debian bookworm main\n", "http://ftp.example/debian"),
    ("Types: deb\nSuites: bookworm\n", "deb http://list.example/debian bookworm main\n", "http://list.example/debian"),
])
def test_debian_mirror_from_deb822_or_sources_list(tmp_path, deb822, sources_list, want):
    a, b = tmp_path / "debian.sources", tmp_path / "sources.list"
    if deb822 is not None:
        a.write_text(deb822)
    if sources_list is not None:
        b.write_text(sources_list)
    res = source_and_run(f'debian_mirror "{a}" "{b}"')
    assert res.returncode == 0 and res.stdout.strip() == want, res.stderr


def test_debian_mirror_missing_is_one_line(tmp_path):
    res = source_and_run(f'debian_mirror "{tmp_path}/a" "{tmp_path}/b"')
    assert res.returncode != 0 and res.stderr.strip().count("\n") == 0 and "no Debian mirror" in res.stderr


def test_scripts_run_from_the_venv_and_ci_runs_the_readme_command():
    for name in ("test.sh", "demo.sh"):
        with open(os.path.join(REPO, "scripts", name)) as fh:
            lines = [ln.strip() for ln in fh if ln.strip() and not ln.lstrip().startswith("#")]
        assert "bash scripts/install-deps.sh" in lines
        runs = [ln for ln in lines if "-m pytest" in ln or "-m mysqlpilot" in ln]
        assert runs and all('"$venv/bin/python" -m' in ln or '"$py" -m' in ln for ln in runs), runs
        assert not any(re.search(r'(^|[\s;&|(])python3?\s', ln) for ln in lines if not ln.startswith("echo")), name
    with open(os.path.join(REPO, ".ci", "run")) as fh:
        ci = [ln.strip() for ln in fh if ln.strip() and not ln.startswith("#")]
    with open(os.path.join(REPO, "README.md")) as fh:
        readme = fh.read()
    assert ci[-1] == "bash scripts/test.sh" and "    bash scripts/test.sh\n" in readme


def test_local_nodes_find_this_interpreters_mysqlpilot_first(tmp_path, monkeypatch):
    """A real ContainerPilot runs `mysqlpilot` from PATH: the node env puts this interpreter's bin dir first."""
    from mysqlpilot.local.cluster import LocalCluster
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    monkeypatch.setenv("MYSQL_ROOT_PASSWORD_FILE", "/elsewhere")
    reg = {"consul": "127.0.0.1:8500", "nodes": {"node1": {"k": 1, "port": 3306, "host": "127.0.1.1"}}}
    env = LocalCluster(str(tmp_path)).env_of(reg, "node1")
    parts = env["PATH"].split(os.pathsep)
    assert parts[0] == os.path.dirname(sys.executable) and parts[1:] == ["/usr/bin", "/bin"]
    assert "MYSQL_ROOT_PASSWORD_FILE" not in env          # the node's secrets come from its config file
    script = os.path.join(parts[0], "mysqlpilot")
    if os.path.exists(script):                              # installed (install-deps.sh does it)
        res = subprocess.run([script, "--version"], capture_output=True, text=True, env=env)
        assert res.returncode == 0, res.stderr


def test_missing_packages_include_the_image_test_tools():
    """On a machine that has none of them (nothing on PATH), install-deps.sh apt-installs what the image
    test needs besides the servers: mmdebstrap, buildah, podman and uidmap."""
    res = source_and_run("PATH=/nonexistent missing_packages")
    assert res.returncode == 0, res.stderr
    wanted = res.stdout.split()
    assert {"mmdebstrap", "buildah", "podman", "uidmap", "mariadb-backup", "zstd"} <= set(wanted), wanted
    # and none of them where all are present (this machine ran install-deps.sh)
    import shutil
    if all(shutil.which(t) for t in ("mmdebstrap", "buildah", "podman", "newuidmap")):
        res = source_and_run("missing_packages")
        assert not {"mmdebstrap", "buildah", "podman", "uidmap"} & set(res.stdout.split()), res.stdout
