"""`mysqlpilot entrypoint`: the image's ENTRYPOINT, run before ContainerPilot. Pure decisions here; the
command (commands/entrypoint.py) does the I/O and the exec.

Contract (what the images rely on):

    mysqlpilot entrypoint [-- CMD ARGS...]        CMD defaults to `containerpilot`, which reads the
                                                  config path from $CONTAINERPILOT

1. HOST. ContainerPilot's `interfaces: ['static:{{ .HOST }}']` needs an IP address, but Marathon sets
   HOST to the agent's host name as often as to its address. A HOST that is not an IP literal is
   resolved to its first IPv4 address; HOST is exported as that address and the name is kept in
   MYSQLPILOT_HOST_NAME. A HOST that does not resolve stops the container with one line naming it
   (exit 2): Mesos-DNS or /etc/hosts must know the agent's name. So does one that resolves only to
   loopback (Debian's /etc/hosts maps the host name to 127.0.1.1), unless MYSQLPILOT_ALLOW_LOOPBACK_HOST=1
   (everything on one host). An empty or unset HOST is left alone (the config then uses eth0).
2. Ownership and privileges, only when started as root (Mesos persistent volumes belong to root): the
   state dir ($MYSQLPILOT_STATE_DIR, default /var/lib/mysqlpilot) is created if missing and everything
   in it that the mysqld user ($MYSQLPILOT_MYSQLD_USER, default mysql) does not own is chowned to it;
   then CMD runs as that user through `setpriv --reuid U --regid G --init-groups` (util-linux). With
   MYSQLPILOT_MYSQLD_USER=root nothing is dropped. Started as any other user, CMD is exec'd as is.
3. A Consul token in a file ($CONSUL_HTTP_TOKEN_FILE) is exported as CONSUL_HTTP_TOKEN, the only place
   ContainerPilot reads it (token_from_file).
4. Then, as the container's PID 1 (or with MYSQLPILOT_ENTRYPOINT_PARENT=1), it runs CMD as its child,
   forwards signals to it, reaps orphans, and exits 3 when pre-start failed (the preStartFailed job
   stopped ContainerPilot), else with CMD's status (mysqlpilot/pid1.py): ContainerPilot as PID 1 would
   exit 0 either way. Not PID 1 (under tini, `docker run --init`, buildah run): it execs CMD, and a failed
   pre-start ends it with ContainerPilot's SIGKILL (137).

Errors a user can fix print one line `mysqlpilot entrypoint: error: ...` and exit 2; nothing here
reads or prints a secret.
"""
from __future__ import annotations

import ipaddress
import socket
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

DEFAULT_CMD = ("containerpilot",)
DEFAULT_STATE_DIR = "/var/lib/mysqlpilot"
DEFAULT_USER = "mysql"
PARENT_ENV = "MYSQLPILOT_ENTRYPOINT_PARENT"


class EntrypointError(Exception):
    """A user-fixable problem: the message is the whole story, in one line."""


def is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
        return True
    except ValueError:
        return False


ALLOW_LOOPBACK = "MYSQLPILOT_ALLOW_LOOPBACK_HOST"   # "1": one host only (tests, demos); loopback is fine


def resolve_ipv4(name: str, getaddrinfo: Callable = socket.getaddrinfo, allow_loopback: bool = False) -> str:
    """The first IPv4 address of `name` that is not loopback. Debian and Ubuntu map the host's own name
    to 127.0.1.1 in /etc/hosts: with host networking a node would advertise an address no other node can
    reach, so a name with only loopback addresses is refused unless `allow_loopback`."""
    try:
        infos = getaddrinfo(name, None, socket.AF_INET, socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, OSError) as exc:
        why = getattr(exc, "strerror", None) or str(exc) or exc.__class__.__name__
        raise EntrypointError(f"HOST={name!r} does not resolve to an IPv4 address ({why}); ContainerPilot needs an "
                              "address: make the agent's host name resolvable (Mesos-DNS, /etc/hosts) or set "
                              "HOST to its IP") from None
    addrs = [info[4][0] for info in infos if is_ip(info[4][0])]
    if not addrs:
        raise EntrypointError(f"HOST={name!r} resolves to no IPv4 address; set HOST to the agent's IP")
    usable = [a for a in addrs if not ipaddress.ip_address(a).is_loopback]
    if usable:
        return usable[0]
    if allow_loopback:
        return addrs[0]
    raise EntrypointError(f"HOST={name!r} resolves only to loopback ({', '.join(dict.fromkeys(addrs))}): other nodes "
                          "could not reach this one. Fix the name (Mesos-DNS, or the 127.0.1.1 line Debian puts in "
                          f"/etc/hosts), or set HOST to the agent's IP; on a single host set {ALLOW_LOOPBACK}=1")


def token_from_file(env: Mapping[str, str]) -> Dict[str, str]:
    """ContainerPilot 3.8 reads the Consul token only from $CONSUL_HTTP_TOKEN: with the token in a file
    ($CONSUL_HTTP_TOKEN_FILE, `marathon render --secrets file`) it would register its service with none,
    and default-deny ACLs refuse that. So the file's token goes into CMD's environment as
    CONSUL_HTTP_TOKEN (set at exec: not in the container's definition, `docker inspect` or `ps`), and
    the _FILE variable goes, since the hooks refuse both set at once."""
    if not env.get("CONSUL_HTTP_TOKEN_FILE"):
        return dict(env)
    from .config import KEYS, _secret_from_env
    from .errors import ConfigError
    try:
        got = _secret_from_env(KEYS["consul_token"], "CONSUL_HTTP_TOKEN", env)
    except ConfigError as exc:
        raise EntrypointError(str(exc)) from None
    out = {k: v for k, v in env.items() if k != "CONSUL_HTTP_TOKEN_FILE"}
    if got is not None:
        out["CONSUL_HTTP_TOKEN"] = got[0]
    return out


def consul_tls_env(env: Mapping[str, str]) -> Dict[str, str]:
    """ContainerPilot 3.8 skips verifying Consul's certificate unless CONSUL_HTTP_SSL_VERIFY says true
    (its InsecureSkipVerify is `!verify`, false by default): over https, verify unless told otherwise."""
    out = dict(env)
    if out.get("CONSUL_HTTP_SCHEME") == "https" and not out.get("CONSUL_HTTP_SSL_VERIFY"):
        out["CONSUL_HTTP_SSL_VERIFY"] = "true"
    return out


def prepare_env(env: Mapping[str, str], getaddrinfo: Callable = socket.getaddrinfo
                ) -> Tuple[Dict[str, str], Optional[str]]:
    """(the environment for CMD, a note for the log or None)."""
    out = consul_tls_env(token_from_file(env))
    host = (env.get("HOST") or "").strip()
    if not host or is_ip(host):
        return out, None
    addr = resolve_ipv4(host, getaddrinfo, allow_loopback=env.get(ALLOW_LOOPBACK) == "1")
    out["HOST"] = addr
    out["MYSQLPILOT_HOST_NAME"] = host
    return out, f"HOST {host} resolves to {addr}; exported HOST={addr} (MYSQLPILOT_HOST_NAME={host})"


def command(args: Sequence[str]) -> List[str]:
    args = list(args)
    if args and args[0] == "--":
        args = args[1:]
    return args or list(DEFAULT_CMD)


def state_dir(env: Mapping[str, str]) -> str:
    return env.get("MYSQLPILOT_STATE_DIR") or DEFAULT_STATE_DIR


def run_as(env: Mapping[str, str]) -> str:
    return env.get("MYSQLPILOT_MYSQLD_USER") or DEFAULT_USER


def drop_argv(uid: int, gid: int, cmd: Sequence[str], setpriv: str = "setpriv") -> List[str]:
    return [setpriv, f"--reuid={uid}", f"--regid={gid}", "--init-groups", "--", *cmd]
