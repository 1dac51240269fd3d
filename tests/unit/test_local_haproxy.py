"""The HAProxy config `mysqlpilot local up --haproxy` writes is docs/routing.md's example (same checks
and timings), and Debian's haproxy accepts it (`haproxy -c`)."""
import re
import subprocess

from mysqlpilot.local import haproxy

DOC = "docs/routing.md"


def backend(text, name):
    """The directive lines of `backend name`, comments and blanks left out."""
    m = re.search(rf"^backend {name}\n(.*?)(?:\n\n|\n```|\Z)", text, re.S | re.M)
    assert m, f"no backend {name}"
    return [ln.strip() for ln in m.group(1).splitlines() if ln.strip() and not ln.strip().startswith("#")]


def test_the_local_config_is_the_documented_one():
    doc = open(DOC).read()
    nodes = [("n1", "10.0.0.1", 3306), ("n2", "10.0.0.2", 3306), ("n3", "10.0.0.3", 3306)]
    cfg = haproxy.render(nodes, 8008, 3307, 3308)
    for name in ("mysql_primary", "mysql_replicas"):
        ours = [ln for ln in backend(cfg, name) if not ln.startswith("server via-primary")]
        theirs = [ln for ln in backend(doc, name) if not ln.startswith("server via-primary")]
        assert ours == theirs, name
    assert "server via-primary 127.0.0.1:3307 backup no-check" in cfg


def test_haproxy_accepts_it(tmp_path):
    p = tmp_path / "haproxy.cfg"
    p.write_text(haproxy.render([("node1", "127.0.1.1", 40001), ("node2", "127.0.1.2", 40002)], 8008, 40101, 40102))
    r = subprocess.run([haproxy.HAPROXY, "-c", "-f", str(p)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
