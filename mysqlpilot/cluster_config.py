"""Cluster-wide settings in Consul (issue 24): what every node must agree on, in one key,
`<kv_root>/config` = {"values": {key: value}, "mysqld": {option: value}, "version": N, "by": who, "at": epoch}.

- Which keys: timing, failover, snapshots, mysqld and general settings, except those that differ per task
  (paths, ports, identity) or are secrets. Not Consul's own settings: they say where this key is.
- `mysqld.<option>` passes an option into every node's my.cnf, except those mysqlpilot owns (what it writes
  itself: read_only, server_id, GTID, binlog and semi-sync settings, ...), refused with a one-line reason.
- A node's own setting (file or environment) for a key the cluster sets is overridden, and said loudly.
- Nodes read it when a hook starts; a change the running watch loop or mysqld has not loaded yet shows as
  `pending restart` in status until that node restarts.

This module is pure: parsing, validation and the diff. commands/settings.py does the Consul I/O."""
from __future__ import annotations

import re
from typing import Any, Dict, List, Mapping, Optional, Tuple

from .errors import ConfigError

KEY = "config"
GROUPS = {"timing", "failover", "snapshots", "mysqld", "general"}
# Differ per task, or name files inside one container (marathon.PER_TASK and the images' layout).
PER_NODE = {"node_name", "advertise_host", "port", "server_id", "datadir", "state_dir", "socket", "mycnf",
            "mysqld_bin", "mysqld_user", "bind_address", "store_path", "priority", "nofailover", "api_port",
            "api_address", "flavor", "flavor_version"}    # the last two differ during a rolling upgrade
# mysqld options mysqlpilot sets itself or whose value its safety rests on.
OWNED = {"read_only", "super_read_only", "server_id", "gtid_mode", "enforce_gtid_consistency", "gtid_strict_mode",
         "gtid_domain_id", "log_bin", "log_slave_updates", "log_replica_updates", "binlog_format", "sync_binlog",
         "innodb_flush_log_at_trx_commit", "skip_slave_start", "skip_replica_start", "relay_log", "datadir",
         "socket", "port", "bind_address", "pid_file", "log_error", "report_host", "report_port",
         "skip_name_resolve", "require_secure_transport", "binlog_expire_logs_seconds", "expire_logs_days",
         "innodb_buffer_pool_size", "plugin_load_add", "slave_net_timeout", "replica_net_timeout"}
_OPTION = re.compile(r"^[a-z][a-z0-9_]*$")


def option_name(name: str) -> str:
    return name.strip().lower().replace("-", "_")


def settable(name: str) -> Optional[str]:
    """None when `name` may be set cluster-wide, else why not (one line)."""
    from .config import KEYS
    if name.startswith("mysqld."):
        opt = option_name(name[len("mysqld."):])
        if not _OPTION.match(opt):
            return f"{name}: not a mysqld option name"
        if opt.startswith(("rpl_semi_sync", "ssl_", "gtid_")) or opt in OWNED:
            hint = " (set config key innodb_buffer_pool_size)" if opt == "innodb_buffer_pool_size" else ""
            return f"{name}: mysqlpilot sets {opt} itself; its safety rests on it{hint}"
        return None
    key = KEYS.get(name)
    if key is None:
        return f"{name}: unknown key; see docs/configuration.md"
    if key.secret:
        return f"{name}: a secret; give it to each node (docs/security.md)"
    if name in PER_NODE or key.group not in GROUPS:
        return f"{name}: differs per node or says where Consul is; set it in each node's file or environment"
    return None


def empty() -> Dict[str, Any]:
    return {"values": {}, "mysqld": {}, "version": 0}


def parse(doc: Any) -> Dict[str, Any]:
    """The stored document, or an empty one; a malformed one is refused (nodes then keep their own)."""
    if doc is None:
        return empty()
    if not isinstance(doc, dict) or not isinstance(doc.get("values", {}), dict) or \
            not isinstance(doc.get("mysqld", {}), dict):
        raise ConfigError(f"Consul key {KEY} does not hold a cluster configuration; fix it with "
                          "`mysqlpilot config edit`")
    return {"values": dict(doc.get("values") or {}), "mysqld": dict(doc.get("mysqld") or {}),
            "version": int(doc.get("version") or 0), "by": doc.get("by", ""), "at": doc.get("at", 0)}


def assignment(text: str) -> Tuple[str, Optional[str]]:
    """`KEY=VALUE` (VALUE empty: remove the key from the cluster's settings)."""
    if "=" not in text:
        raise ConfigError(f"{text!r}: expected KEY=VALUE (KEY= removes it)")
    name, value = text.split("=", 1)
    name = name.strip()
    why = settable(name)
    if why:
        raise ConfigError(f"config set {why}")
    if "\n" in value:
        raise ConfigError(f"config set {name}: a value is one line")
    return name, (value.strip() or None)


def apply(doc: Mapping[str, Any], changes: List[Tuple[str, Optional[str]]]) -> Dict[str, Any]:
    new = {"values": dict(doc["values"]), "mysqld": dict(doc["mysqld"]), "version": int(doc["version"]) + 1}
    for name, value in changes:
        table, key = (new["mysqld"], option_name(name[7:])) if name.startswith("mysqld.") else (new["values"], name)
        if value is None:
            table.pop(key, None)
        else:
            table[key] = value
    return new


def check_document(doc: Mapping[str, Any]) -> None:
    """Every key of an edited document is settable (the same rules as `config set`)."""
    for name in doc["values"]:
        why = settable(name)
        if why:
            raise ConfigError(f"config: {why}")
    for opt, value in doc["mysqld"].items():
        why = settable(f"mysqld.{opt}")
        if why:
            raise ConfigError(f"config: {why}")
        if "\n" in str(value):
            raise ConfigError(f"config: mysqld.{opt}: a value is one line")


def changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> List[str]:
    """`key: old -> new` for every difference (`-` for unset)."""
    out = []
    for table, prefix in (("values", ""), ("mysqld", "mysqld.")):
        a, b = old.get(table) or {}, new.get(table) or {}
        for k in sorted(set(a) | set(b)):
            if a.get(k) != b.get(k):
                out.append(f"{prefix}{k}: {a.get(k, '-')} -> {b.get(k, '-')}")
    return out


def pending_restart(loop_loaded: Mapping[str, Any], mysqld_loaded: Optional[Mapping[str, Any]],
                    now: Any) -> List[str]:
    """The cluster's settings that wait for a restart: values the HA loop (`watch`) started without, and
    mysqld options the running mysqld started without. `now`: the stored document (None: none)."""
    try:
        cur = parse(now)
    except ConfigError:
        return []
    loaded = {"values": (loop_loaded or {}).get("values") or {}, "mysqld": dict(mysqld_loaded or {})}
    mine = {"values": cur["values"], "mysqld": cur["mysqld"]}
    return [c.split(":", 1)[0] for c in changes(loaded, mine)]
