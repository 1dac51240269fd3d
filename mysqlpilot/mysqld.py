"""The local mysqld process: my.cnf, datadir initialisation, start/exec, readiness, stop, move aside.

Files in cfg.state_dir: my.cnf (unless cfg.mycnf says otherwise), mysqld.pid, mysqld.err (error log),
mysqld.out (stdout/stderr of a mysqld we started), install-db.log."""
from __future__ import annotations

import contextlib
import errno
import glob
import logging
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from datetime import datetime, timezone
from typing import Iterator, List, Optional, Sequence

from .errors import PilotError

log = logging.getLogger(__name__)


def pid_file(cfg) -> str:
    return os.path.join(cfg.state_dir, "mysqld.pid")


def error_log(cfg) -> str:
    return os.path.join(cfg.state_dir, "mysqld.err")


def tail(path: str, lines: int = 12, max_bytes: int = 65536) -> str:
    """Last lines of a log file joined with " | " (one line, for an error message); "" if none."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - max_bytes))
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
    out = [ln.strip() for ln in text.splitlines() if ln.strip()][-lines:]
    return " | ".join(out)


def _owner(user: str):
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        raise PilotError(f"config key mysqld_user: OS user {user!r} does not exist; create it or set "
                         "$MYSQLPILOT_MYSQLD_USER") from None
    return pw.pw_uid, pw.pw_gid


def _ensure_dir(path: str, user: Optional[str] = None, mode: int = 0o750) -> None:
    os.makedirs(path, mode=mode, exist_ok=True)
    if user and os.geteuid() == 0:
        uid, gid = _owner(user)
        st = os.stat(path)
        if (st.st_uid, st.st_gid) != (uid, gid):
            os.chown(path, uid, gid)


def chown_tree(path: str, user: str) -> None:
    """chown -R path to user (only as root; a no-op otherwise)."""
    if os.geteuid() != 0:
        return
    uid, gid = _owner(user)
    for root, dirs, files in os.walk(path):
        for name in [root] + [os.path.join(root, n) for n in dirs + files]:
            os.lchown(name, uid, gid)


def write_mycnf(cfg, flavor) -> str:
    """Write the flavor's my.cnf to cfg.mycnf atomically; also make the dirs mysqld writes into."""
    path = cfg.mycnf
    _ensure_dir(os.path.dirname(path) or ".", mode=0o755)
    # mysqld (as mysqld_user) writes its pid file, error log and socket here.
    _ensure_dir(cfg.state_dir, cfg.mysqld_user, mode=0o755)
    sock_dir = os.path.dirname(cfg.socket)
    if sock_dir:
        _ensure_dir(sock_dir, cfg.mysqld_user, mode=0o755)
    text = flavor.mycnf(cfg)
    fd, tmp = tempfile.mkstemp(prefix=".my.cnf.", dir=os.path.dirname(path) or ".")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)     # no secrets in it; mysqld ignores world-writable option files only
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def datadir_initialised(cfg) -> bool:
    return os.path.isdir(os.path.join(cfg.datadir, "mysql"))


def _resolve(binary: str) -> Optional[str]:
    found = shutil.which(binary)
    if found:
        return found
    for d in ("/usr/sbin", "/usr/bin", "/usr/local/mysql/bin", "/usr/local/bin"):
        p = os.path.join(d, binary)
        if os.access(p, os.X_OK):
            return p
    return None


def server_binary(cfg, flavor) -> str:
    if cfg.mysqld_bin:
        if not os.access(cfg.mysqld_bin, os.X_OK):
            raise PilotError(f"config key mysqld_bin: {cfg.mysqld_bin} is not an executable file")
        return cfg.mysqld_bin
    names = [flavor.server_binary] + (["mysqld"] if flavor.server_binary != "mysqld" else [])
    for name in names:
        p = _resolve(name)
        if p:
            return p
    raise PilotError(f"{flavor.server_binary} not found on PATH or in /usr/sbin; install the server or set "
                     "$MYSQLPILOT_MYSQLD")


def server_argv(cfg, flavor, extra_args: Sequence[str] = ()) -> List[str]:
    return flavor.server_cmd(cfg, server_binary(cfg, flavor), extra_args)


def init_datadir(cfg, flavor, timeout: float = 600) -> None:
    """Create the system schema in an empty datadir (never touches one that holds data)."""
    if datadir_initialised(cfg):
        raise PilotError(f"datadir {cfg.datadir} is already initialised; move it aside first")
    _ensure_dir(cfg.datadir, cfg.mysqld_user)
    if not os.path.exists(cfg.mycnf):
        write_mycnf(cfg, flavor)
    argv = flavor.install_db_cmd(cfg)
    # `mysqld --initialize-insecure`: the configured server binary (mysqld_bin, a wrapper perhaps).
    exe = server_binary(cfg, flavor) if argv[0] == flavor.server_binary else _resolve(argv[0])
    if not exe:
        raise PilotError(f"{argv[0]} not found on PATH; install the {flavor.name} server package")
    argv[0] = exe
    out_path = os.path.join(cfg.state_dir, "install-db.log")
    log.info("initialising datadir %s with %s", cfg.datadir, os.path.basename(exe))
    t0 = time.monotonic()
    with open(out_path, "wb") as out:
        try:
            rc = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            raise PilotError(f"{os.path.basename(exe)} did not finish in {timeout:.0f}s for {cfg.datadir}; "
                             f"see {out_path}") from None
    if rc != 0 or not datadir_initialised(cfg):
        detail = tail(error_log(cfg), 6) or tail(out_path, 6)
        raise PilotError(f"initialising {cfg.datadir} failed (exit {rc}): {detail} (full output in {out_path})")
    log.info("datadir %s initialised in %.1fs", cfg.datadir, time.monotonic() - t0)


def pid_exists(pid: int) -> bool:
    """A process with this pid exists (a zombie included; nothing is reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _alive(pid: int) -> bool:
    # Reap it if it is our child, so a zombie does not look alive.
    with contextlib.suppress(ChildProcessError, OSError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    if not pid_exists(pid):
        return False
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _is_mysqld(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            argv0 = fh.read().split(b"\0")[0].decode(errors="replace")
    except OSError:
        return True      # cannot tell (no /proc): trust the pid file
    return os.path.basename(argv0) in ("mysqld", "mariadbd") or "mysqld" in argv0 or "mariadbd" in argv0


def mysqld_pid(cfg) -> Optional[int]:
    """pid of the running mysqld from its pid file, or None (no file, stale, or a reused pid)."""
    try:
        with open(pid_file(cfg)) as fh:
            pid = int(fh.read().strip() or 0)
    except (OSError, ValueError):
        return None
    if pid <= 0 or not _alive(pid) or not _is_mysqld(pid):
        return None
    return pid


def accepts_connections(cfg, timeout: float = 0.3) -> bool:
    """Does anything accept a connection on mysqld's socket or TCP port? No login is tried. Anything but
    a clean refusal (a timeout, an odd error) counts as yes: the caller wants proof that mysqld is gone."""
    import socket as so
    host = cfg.bind_address if cfg.bind_address not in ("", "0.0.0.0", "::", "*") else "127.0.0.1"
    for fam, addr in ((so.AF_UNIX, cfg.socket), (None, (host, cfg.port))):
        try:
            if fam is None:
                so.create_connection(addr, timeout=timeout).close()
            else:
                with so.socket(fam, so.SOCK_STREAM) as s:
                    s.settimeout(timeout)
                    s.connect(addr)
            return True
        except (ConnectionRefusedError, FileNotFoundError):
            continue
        except OSError:
            return True
    return False


def _before_start(cfg, flavor) -> List[str]:
    pid = mysqld_pid(cfg)
    if pid:
        raise PilotError(f"mysqld for {cfg.datadir} is already running (pid {pid}, {pid_file(cfg)}); stop it "
                         "first")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(pid_file(cfg))      # stale: its process is gone
    if not os.path.exists(cfg.mycnf):
        write_mycnf(cfg, flavor)
    _ensure_dir(cfg.datadir, cfg.mysqld_user)
    return server_argv(cfg, flavor)


def start_mysqld(cfg, flavor, extra_args: Sequence[str] = ()) -> subprocess.Popen:
    argv = _before_start(cfg, flavor) + list(extra_args)
    out = open(os.path.join(cfg.state_dir, "mysqld.out"), "ab")
    try:
        log.info("starting %s on %s:%s (datadir %s)", os.path.basename(argv[0]), cfg.bind_address, cfg.port,
                 cfg.datadir)
        # Own session: a Ctrl-C aimed at the hook must not kill the database.
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, close_fds=True)
    finally:
        out.close()


def exec_mysqld(cfg, flavor) -> None:
    """Replace this process with mysqld (the ContainerPilot job `mysqlpilot run-mysqld`)."""
    argv = _before_start(cfg, flavor)
    log.info("exec %s", " ".join(argv))
    for h in logging.getLogger().handlers:
        with contextlib.suppress(Exception):
            h.flush()
    os.execv(argv[0], argv)


def _answers(cfg) -> bool:
    import pymysql

    from .sqlclient import connect
    try:
        connect(unix_socket=cfg.socket, user="mysqlpilot-probe", password="", connect_timeout=2,
                read_timeout=5).close()
        return True
    except pymysql.err.MySQLError as exc:
        code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else 0
        # Access denied / too many connections / host blocked / a login plugin we refuse: a server answered.
        return code in (1045, 1040, 1129, 1130, 1251, 1698, 2059)
    except OSError:
        return False


def wait_ready(cfg, timeout: float, proc: Optional[subprocess.Popen] = None) -> None:
    """Return once mysqld answers on its socket; PilotError (with the error-log tail) on timeout or exit."""
    deadline = time.monotonic() + timeout
    t0 = time.monotonic()
    next_note = t0 + 5
    seen_pid = False
    while True:
        if _answers(cfg):
            log.info("mysqld answers on %s after %.1fs", cfg.socket, time.monotonic() - t0)
            return
        exited = proc is not None and proc.poll() is not None
        if proc is None:
            has_pidfile = os.path.exists(pid_file(cfg))
            seen_pid = seen_pid or has_pidfile
            exited = seen_pid and mysqld_pid(cfg) is None
        if exited:
            rc = f" with code {proc.returncode}" if proc is not None else ""
            raise PilotError(f"mysqld exited{rc} before answering on {cfg.socket}: "
                             f"{tail(error_log(cfg), 6) or 'no error log'} (see {error_log(cfg)})")
        now = time.monotonic()
        if now >= deadline:
            raise PilotError(f"mysqld did not answer on {cfg.socket} within {timeout:.0f}s: "
                             f"{tail(error_log(cfg), 6) or 'no error log'} (see {error_log(cfg)})")
        if now >= next_note:
            log.info("waiting for mysqld on %s (%.0fs)", cfg.socket, now - t0)
            next_note = now + 5
        time.sleep(0.2)


def stop_mysqld(cfg, timeout: float = 60) -> bool:
    """SIGTERM the mysqld of the pid file, wait, SIGKILL as a last resort. False if none was running."""
    pid = mysqld_pid(cfg)
    if pid is None:
        return False
    log.info("stopping mysqld (pid %s)", pid)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            log.info("mysqld (pid %s) stopped", pid)
            return True
        time.sleep(0.1)
    log.error("mysqld (pid %s) ignored SIGTERM for %.0fs; sending SIGKILL (InnoDB will recover at start)",
              pid, timeout)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    end = time.monotonic() + 30
    while _alive(pid) and time.monotonic() < end:
        time.sleep(0.1)
    if _alive(pid):
        raise PilotError(f"mysqld (pid {pid}) survived SIGKILL; check the host (D state?)")
    return True


def moved_aside(path: str) -> List[str]:
    """The `<path>.aside-*` directories that move_aside left beside `path`, oldest first (their names
    carry the UTC time)."""
    path = path.rstrip("/") or path
    return sorted(p for p in glob.glob(glob.escape(path) + ".aside-*") if os.path.isdir(p))


def check_room_to_move_aside(path: str, limit: Optional[int]) -> None:
    """PilotError (one line) if `limit` moved-aside copies of `path` already exist. Nothing is deleted:
    mysqlpilot never removes a datadir it did not create in the same operation."""
    if limit is None:
        return
    path = path.rstrip("/") or path
    kept = moved_aside(path)
    if len(kept) >= limit:
        raise PilotError(f"refusing to move {path} aside: {len(kept)} moved-aside copies already exist beside "
                         f"it (max_moved_aside={limit}; oldest {os.path.basename(kept[0]) if kept else '-'}); "
                         f"check them ({path}.aside-*), delete the ones you no longer need by hand, or raise "
                         "max_moved_aside, then restart this node")


def move_aside(path: str, limit: Optional[int] = None) -> str:
    """Rename path to `<path>.aside-<UTC timestamp>` (never delete); returns the new path, "" if absent.
    A mount point cannot be renamed: its contents move into the sibling instead. With `limit`, refuse
    (PilotError) when that many moved-aside copies already exist (config max_moved_aside)."""
    if not os.path.lexists(path):
        return ""
    path = path.rstrip("/") or path
    check_room_to_move_aside(path, limit)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    dest = f"{path}.aside-{stamp}"
    n = 1
    while os.path.lexists(dest):
        dest = f"{path}.aside-{stamp}-{n}"
        n += 1
    try:
        os.rename(path, dest)
    except OSError as exc:
        if exc.errno not in (errno.EBUSY, errno.EXDEV, errno.EPERM) or not os.path.isdir(path):
            raise PilotError(f"cannot move {path} aside to {dest}: {exc.strerror}") from None
        try:
            os.mkdir(dest, 0o750)
            for name in os.listdir(path):
                os.rename(os.path.join(path, name), os.path.join(dest, name))
        except OSError as exc2:
            raise PilotError(f"cannot move the contents of {path} (a mount point?) aside to {dest}: "
                             f"{exc2.strerror}; move them by hand") from None
    log.warning("moved %s aside to %s", path, dest)
    return dest


@contextlib.contextmanager
def client_defaults_file(user: str, password: Optional[str], socket: Optional[str] = None,
                         host: Optional[str] = None, port: Optional[int] = None,
                         dir: Optional[str] = None) -> Iterator[str]:
    """A 0600 defaults-extra-file with the client credentials, removed on exit, so passwords stay out
    of argv. Pass it FIRST: `tool --defaults-extra-file=PATH ...`."""
    from .flavors.base import defaults_file_text
    fd, path = tempfile.mkstemp(prefix="mysqlpilot-client-", suffix=".cnf", dir=dir)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(defaults_file_text(user, password, socket=socket, host=host, port=port))
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
