"""`mysqlpilot local up --secure` (issue 23): a local cluster set up as a shared network asks.

- Consul: HTTPS only (no plain-HTTP listener), verify_incoming with client certificates from `consul tls`,
  and default-deny ACLs. The nodes' token has only the shipped policy (`mysqlpilot docs consul-policy`);
  the management token stays in DIR/secure/consul-management-token (0600) for the operator.
- MySQL: TLS with certificates from openssl, require_secure_transport, replicas verifying their source.
- Accounts by purpose: no remote admin (root is local only), a monitor account with a generated password.

Everything lands in DIR/secure/ (0700) and in the 0600 config file; ContainerPilot gets the Consul
settings from the node's environment, as in an image (DIR/secure/node-env.json, 0600)."""
from __future__ import annotations

import json
import os
import secrets
import uuid
from typing import Dict, Sequence

import requests

from ..consul_policy import policy_hcl
from ..errors import PilotError
from . import consul_tls, mysql_tls

SUBDIR = "secure"
ENV_FILE = "node-env.json"
POLICY = "mysqlpilot-local"


def private_write(path: str, text: str) -> None:
    """A file only its owner reads (mode 0600 from its creation on)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


class SecureSetup:
    def __init__(self, dir: str):
        self.dir = os.path.join(dir, SUBDIR)
        self.consul_tls = None
        self.management = ""

    def certificates(self, consul_ips: Sequence[str], mysqld_user: str = "", mysql_ips: Sequence[str] = ()
                     ) -> Dict[str, str]:
        """Both sets of certificates; returns the MySQL ones ({ca, cert, key})."""
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        self.consul_tls = consul_tls.make_certs(os.path.join(self.dir, "consul"), consul_ips)
        return mysql_tls.make_certs(os.path.join(self.dir, "mysql"), owner=mysqld_user, ips=mysql_ips)

    def consul_args(self) -> Dict:
        """What consul_cluster.start takes: TLS, and an ACL block whose management token only we know."""
        self.management = str(uuid.uuid4())
        private_write(os.path.join(self.dir, "consul-management-token"), self.management + "\n")
        acl = ('acl { enabled = true, default_policy = "deny", enable_token_persistence = false, '
               f'tokens {{ master = "{self.management}", agent = "{self.management}" }} }}')
        return {"tls": self.consul_tls.to_dict(), "extra_args": ["-hcl", acl]}

    def node_token(self, agent, prefix: str, cluster: str, service: str) -> str:
        """The shipped policy, and a token with only it, made with the management token."""
        h, kw = {"X-Consul-Token": self.management}, agent.request_tls()
        rules = policy_hcl(prefix, cluster, service)
        for path, body in (("policy", {"Name": POLICY, "Rules": rules}),
                           ("token", {"Description": f"mysqlpilot local cluster {cluster}",
                                      "Policies": [{"Name": POLICY}]})):
            r = requests.put(f"{agent.url}/v1/acl/{path}", json=body, headers=h, timeout=10, **kw)
            if r.status_code != 200:
                raise PilotError(f"consul at {agent.address} refused to create the ACL {path}: "
                                 f"{r.status_code} {r.text.strip()[:200]}")
        return r.json()["SecretID"]

    def settings(self, token: str, mysql_certs: Dict[str, str]) -> Dict:
        """The config file's share: Consul over verified HTTPS with a client certificate and the token,
        MySQL TLS, and a monitor account."""
        t = self.consul_tls
        return {"consul_scheme": "https", "consul_ca": t.ca, "consul_client_cert": t.client_cert,
                "consul_client_key": t.client_key, "consul_token": token,
                "mysql_tls_ca": mysql_certs["ca"], "mysql_tls_cert": mysql_certs["cert"],
                "mysql_tls_key": mysql_certs["key"], "require_secure_transport": True,
                "monitor_password": secrets.token_urlsafe(18)}

    def save_node_env(self, token: str) -> None:
        private_write(os.path.join(self.dir, ENV_FILE),
                       json.dumps(dict(self.consul_tls.client_env(), CONSUL_HTTP_TOKEN=token)))


def node_env(dir: str) -> Dict[str, str]:
    """The Consul variables every process of a node gets ({} for a cluster without --secure)."""
    try:
        with open(os.path.join(dir, SUBDIR, ENV_FILE)) as fh:
            return json.load(fh)
    except FileNotFoundError:
        return {}


def start_consul(dir: str, mode: str, servers: int, client_addrs: Sequence[str], secure: bool):
    """(the agent the nodes talk to, what the config file adds for it). Without --secure: plain HTTP, and
    root@'%' kept (remote_admin_user) so tests and benchmarks can drive any node over TCP."""
    from ..config import KEYS
    from . import consul_cluster
    if not secure:
        return consul_cluster.start(dir, mode, servers, client_addrs), {"remote_admin_user": "root"}
    if servers > 1:
        raise PilotError("--secure runs one Consul agent with TLS and ACLs; leave out --consul-servers")
    sec = SecureSetup(dir)
    certs = sec.certificates(client_addrs)
    agent = consul_cluster.start(dir, mode, 1, client_addrs, **sec.consul_args())
    token = sec.node_token(agent, KEYS["consul_prefix"].default, "local", KEYS["service_name"].default)
    sec.save_node_env(token)
    return agent, sec.settings(token, certs)
