"""A CA and one server certificate for the members of a local cluster, made with openssl: the certificate
names every loopback address a local node may advertise (127.0.0.1, 127.0.1.1-64) and localhost, so
replicas and probes can verify it. For `mysqlpilot local` and the tests; production brings its own PKI."""
from __future__ import annotations

import os
import shutil
import subprocess
from typing import Dict, Sequence

from ..errors import PilotError

NAMES = ["DNS:localhost", "IP:127.0.0.1"] + [f"IP:127.0.1.{k}" for k in range(1, 65)]


def make_certs(d: str, owner: str = "", ips: Sequence[str] = ()) -> Dict[str, str]:
    """{ca, cert, key} in `d` (made once). `owner`: the OS user mysqld runs as gets the key. `ips`: more
    addresses the certificate names."""
    openssl = shutil.which("openssl")
    if not openssl:
        raise PilotError("openssl not found: install it (Debian: apt-get install openssl)")
    os.makedirs(d, mode=0o755, exist_ok=True)
    out = {k: os.path.join(d, f) for k, f in (("ca", "ca.pem"), ("cert", "server.pem"), ("key", "server-key.pem"))}
    if all(os.path.exists(p) for p in out.values()):
        return out
    ca_key = os.path.join(d, "ca-key.pem")

    def run(*args: str) -> None:
        p = subprocess.run([openssl, *args], cwd=d, capture_output=True, text=True, timeout=120)
        if p.returncode != 0:
            raise PilotError(f"openssl {args[0]} failed in {d}: {(p.stderr or p.stdout).strip()[-300:]}")
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650", "-subj", "/CN=mysqlpilot local CA",
        "-keyout", ca_key, "-out", out["ca"])
    ext = os.path.join(d, "san.cnf")
    with open(ext, "w") as fh:
        fh.write(f"subjectAltName={','.join(NAMES + [f'IP:{ip}' for ip in ips])}\nbasicConstraints=CA:FALSE\n"
                 "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\n")
    csr = os.path.join(d, "server.csr")
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=mysqlpilot local member", "-keyout", out["key"],
        "-out", csr)
    run("x509", "-req", "-in", csr, "-CA", out["ca"], "-CAkey", ca_key, "-CAcreateserial", "-days", "3650",
        "-extfile", ext, "-out", out["cert"])
    os.chmod(out["key"], 0o600)
    os.chmod(ca_key, 0o600)
    if owner and os.geteuid() == 0:
        import pwd
        pw = pwd.getpwnam(owner)
        os.chown(out["key"], pw.pw_uid, pw.pw_gid)
    return out
