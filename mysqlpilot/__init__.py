"""mysqlpilot: a self-operating MySQL/MariaDB cluster driven by ContainerPilot hooks and Consul."""
__version__ = "0.1.0"
