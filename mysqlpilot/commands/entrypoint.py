"""`mysqlpilot entrypoint [-- CMD...]`: the image's ENTRYPOINT (contract: mysqlpilot/entrypoint.py)."""
from __future__ import annotations

import os
import pwd
import shutil
import sys

import click

from .. import entrypoint as ep
from .. import pid1


def _fail(msg: str) -> None:
    click.echo(f"mysqlpilot entrypoint: error: {msg}", err=True)
    sys.exit(2)


def _own(path: str, uid: int, gid: int) -> int:
    """Create `path` if missing; chown it and everything in it not owned by uid:gid. Returns the count."""
    os.makedirs(path, exist_ok=True)
    changed = 0
    for root, dirs, files in os.walk(path):
        entries = [os.path.join(root, n) for n in dirs + files]
        if root == path:
            entries.insert(0, root)
        for p in entries:
            try:
                st = os.lstat(p)
                if (st.st_uid, st.st_gid) != (uid, gid):
                    os.lchown(p, uid, gid)
                    changed += 1
            except FileNotFoundError:
                pass
    return changed


@click.command("entrypoint", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.argument("cmd", nargs=-1, type=click.UNPROCESSED)
def entrypoint(cmd) -> None:
    """The image's ENTRYPOINT: resolve HOST to an address, fix the state dir's owner and drop root, then
    exec CMD (default: containerpilot)."""
    try:
        env, note = ep.prepare_env(os.environ)
    except ep.EntrypointError as exc:
        _fail(str(exc))
    if note:
        click.echo(f"mysqlpilot entrypoint: {note}", err=True)
    argv = ep.command(cmd)
    if os.geteuid() == 0:
        user = ep.run_as(env)
        try:
            pw = pwd.getpwnam(user)
        except KeyError:
            _fail(f"MYSQLPILOT_MYSQLD_USER={user!r} is not a user of this image; create it or name another")
        sdir = ep.state_dir(env)
        try:
            n = _own(sdir, pw.pw_uid, pw.pw_gid)
        except OSError as exc:
            _fail(f"cannot give the state dir {sdir} (MYSQLPILOT_STATE_DIR) to {user}: {exc.strerror}")
        if n:
            click.echo(f"mysqlpilot entrypoint: gave {n} entries of {sdir} to {user}", err=True)
        if pw.pw_uid != 0:
            setpriv = shutil.which("setpriv")
            if not setpriv:
                _fail("setpriv (util-linux) is not installed; the image needs it to drop root")
            argv = ep.drop_argv(pw.pw_uid, pw.pw_gid, argv, setpriv)
            env["HOME"] = pw.pw_dir or "/"
            env["USER"] = env["LOGNAME"] = user
    exe = argv[0] if os.sep in argv[0] else shutil.which(argv[0], path=env.get("PATH"))
    if not exe:
        _fail(f"{argv[0]} not found on PATH; pass the command after `--`")
    sys.stdout.flush()
    sys.stderr.flush()
    if os.getpid() == 1 or env.get(ep.PARENT_ENV) == "1":
        # Stay as the parent: ContainerPilot as PID 1 always exits 0 (mysqlpilot/pid1.py).
        marker = pid1.marker_path(ep.state_dir(env))
        pid1.clear_marker(marker)
        env[pid1.MARKER_ENV] = marker
        sys.exit(pid1.supervise([exe, *argv[1:]], env, marker,
                                lambda m: click.echo(f"mysqlpilot entrypoint: {m}", err=True)))
    try:
        os.execve(exe, argv, env)
    except OSError as exc:
        _fail(f"cannot run {argv[0]}: {exc.strerror}")


def register(group: click.Group) -> None:
    group.add_command(entrypoint)
