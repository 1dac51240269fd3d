"""Server dialects: `get_flavor(name, version)` returns the Flavor that builds argv and SQL for it."""
from __future__ import annotations

from ..errors import ConfigError
from .base import Flavor, defaults_file_text, parse_binlog_info, parse_version, quote, quote_ident
from .mariadb import MariaDBFlavor
from .mysql import MySQLFlavor, PerconaFlavor

_FLAVORS = {"mariadb": MariaDBFlavor, "mysql": MySQLFlavor, "percona": PerconaFlavor}


def get_flavor(name: str, version: str) -> Flavor:
    cls = _FLAVORS.get((name or "").strip().lower())
    if cls is None:
        raise ConfigError(f"config key flavor: {name!r} is not one of {', '.join(sorted(_FLAVORS))}")
    flavor = cls(str(version))
    major = flavor.version_tuple[0]
    if cls is MariaDBFlavor and major < 10:
        raise ConfigError(f"config key flavor_version: {version!r} is not a MariaDB version (10.x or 11.x)")
    if cls is not MariaDBFlavor and flavor.version_tuple[:2] < (5, 6):
        raise ConfigError(f"config key flavor_version: {version!r} is not a supported MySQL/Percona version "
                          "(5.6, 5.7, 8.0, 8.4, 9.x)")
    return flavor


__all__ = ["Flavor", "MariaDBFlavor", "MySQLFlavor", "PerconaFlavor", "get_flavor", "quote", "quote_ident",
           "parse_version", "parse_binlog_info", "defaults_file_text"]
