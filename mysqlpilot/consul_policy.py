"""The Consul ACL policy one cluster needs, and nothing more (docs/security.md, "Consul").

What each rule is for:
- key_prefix "<consul_prefix>/<cluster>/" write: every key of the cluster (leader lock, members, history,
  snapshots/latest, locks, flags); nothing outside it.
- session_prefix "" write: each node creates, renews and destroys its own sessions (named by node, and a
  node's name is whatever host the platform picked).
- node_prefix "" write: the liveness check `mysqlpilot-<node>` belongs to no service, and Consul asks node
  write for such a check; read would do for everything else.
- service "<service_name>" write: ContainerPilot registers it with its TTL check; "<service_name>-primary",
  "-replica" and "-pilot" write: the catalog's entries (catalog.py), registered by mysqlpilot.
- service_prefix "" read: status and the catalog read health of the cluster's services.
"""
from __future__ import annotations


def services(service_name: str):
    return [service_name] + [f"{service_name}-{role}" for role in ("primary", "replica", "pilot")]


def policy_hcl(consul_prefix: str, cluster: str, service_name: str) -> str:
    root = f"{consul_prefix.strip('/')}/{cluster}/"
    return "\n".join([
        f"# mysqlpilot: Consul ACL policy of cluster {cluster!r} (consul_prefix {consul_prefix!r}, "
        f"service_name {service_name!r}).",
        "# Create it with `consul acl policy create -name mysqlpilot-" + cluster + " -rules @FILE` and give",
        "# its token to the hooks and ContainerPilot as CONSUL_HTTP_TOKEN (docs/security.md).",
        f'key_prefix "{root}" {{ policy = "write" }}',
        'session_prefix "" { policy = "write" }',
        'node_prefix "" { policy = "write" }',
        *(f'service "{name}" {{ policy = "write" }}' for name in services(service_name)),
        'service_prefix "" { policy = "read" }',
        "",
    ])
