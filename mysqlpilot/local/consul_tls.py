"""Certificates for a Consul agent with TLS on loopback, made with Consul's own `consul tls` command: a CA,
a server certificate (its names include localhost and 127.0.0.1) and a client certificate for
verify_incoming. For `mysqlpilot local` and the tests; production brings its own PKI."""
from __future__ import annotations

import glob
import os
import subprocess
from dataclasses import asdict, dataclass
from typing import Dict, Sequence

from ..errors import PilotError
from .consul_agent import find_consul_binary


@dataclass(frozen=True)
class ConsulTLS:
    ca: str
    server_cert: str
    server_key: str
    client_cert: str
    client_key: str

    def to_dict(self) -> Dict[str, str]:
        return asdict(self)

    def client_env(self) -> Dict[str, str]:
        """What a client of this agent (the hooks, ContainerPilot, the consul CLI) is given."""
        return {"CONSUL_HTTP_SCHEME": "https", "CONSUL_CACERT": self.ca, "CONSUL_CLIENT_CERT": self.client_cert,
                "CONSUL_CLIENT_KEY": self.client_key, "CONSUL_HTTP_SSL_VERIFY": "true"}

    def agent_hcl(self, https_port: int) -> str:
        """HTTPS only (no plain HTTP listener), every client must show a certificate of this CA."""
        return (f'ports {{ http = -1, https = {int(https_port)} }} verify_incoming = true '
                f'verify_outgoing = true ca_file = "{self.ca}" cert_file = "{self.server_cert}" '
                f'key_file = "{self.server_key}"')


def make_certs(d: str, ips: Sequence[str] = ()) -> ConsulTLS:
    """Create (or reuse) the CA and both certificates in `d`; the server's names `ips` too."""
    os.makedirs(d, mode=0o700, exist_ok=True)
    consul = find_consul_binary()

    def run(*args: str) -> None:
        p = subprocess.run([consul, "tls", *args], cwd=d, capture_output=True, text=True, timeout=60)
        if p.returncode != 0:
            raise PilotError(f"consul tls {' '.join(args)} failed in {d}: {(p.stderr or p.stdout).strip()[:300]}")
    if not os.path.exists(os.path.join(d, "consul-agent-ca.pem")):
        run("ca", "create")
    if not glob.glob(os.path.join(d, "dc1-server-consul-*.pem")):
        run("cert", "create", "-server", *[f"-additional-ipaddress={ip}" for ip in ips])
    if not glob.glob(os.path.join(d, "dc1-client-consul-*.pem")):
        run("cert", "create", "-client")

    def one(pattern: str) -> str:
        found = sorted(p for p in glob.glob(os.path.join(d, pattern)) if not p.endswith("-key.pem"))
        return found[0]
    server, client = one("dc1-server-consul-*.pem"), one("dc1-client-consul-*.pem")
    for key in glob.glob(os.path.join(d, "*-key.pem")):
        os.chmod(key, 0o600)
    return ConsulTLS(os.path.join(d, "consul-agent-ca.pem"), server, server[:-4] + "-key.pem",
                     client, client[:-4] + "-key.pem")
