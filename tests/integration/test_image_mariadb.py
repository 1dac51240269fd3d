"""The shipped MariaDB image, built and run for real (issue 10): docker/mariadb/Dockerfile built with
buildah (ContainerPilot from the build context), three containers from it, each running the image's own
ENTRYPOINT with the environment Marathon gives a task (the group `mysqlpilot marathon render` writes,
plus HOST, PORT0, PORTS, HOSTNAME and the task ids), against a real Consul and a real SeaweedFS S3 store
started on the host by the test harness. Host networking: each container takes its own 127.0.x.y
address and port; one gets HOST as a host name (localhost), as Marathon often gives it.

It checks what an operator relies on: the state dir of a fresh volume belongs to root (Mesos) and the
entrypoint hands it to mysql, ContainerPilot and mysqld then run as mysql; the three form one cluster
(one writable primary, two read-only replicas replicating from it, restored from the first snapshot);
the snapshot is in the S3 bucket; the image's HEALTHCHECK command passes on the primary; and when the
primary's container is killed (every process SIGKILLed at once) a replica takes over and the surviving
replica follows it.

In secure mode (issue 23) the same runs against a Consul agent on HTTPS only with client certificates and
default-deny ACLs (the shipped policy's token), with MySQL TLS and require_secure_transport: the image's
ContainerPilot registers its service with the token, replicas follow over verified TLS, and the test's own
SQL goes over TLS as the application and monitor accounts.

See tests/harness/images.py for how images are built and run here, and docs/docker.md.
"""
from __future__ import annotations

import os
import shutil
import time
import uuid

import pymysql
import pytest
import requests

from mysqlpilot import config, failsafe, marathon, status as status_mod
from mysqlpilot.dcs.consul import ConsulDCS
from mysqlpilot.local.consul_agent import ConsulAgent
from mysqlpilot.local.ports import free_ports
from mysqlpilot.local.secure import SecureSetup
from tests.harness import images

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1500)]

DOCKERFILE = "docker/mariadb/Dockerfile"
ROOT_PW, REPL_PW, APP_PW, MON_PW = "img-Root-1", "img-Repl-1", "img-App-1", "img-Mon-1"
NODES = ("node1", "node2", "node3")
# Where the containers find the certificates: copied into each node's state volume. (With a second volume
# per container, twice here only the first container's state volume was written to under buildah run.)
TLS_MOUNT = marathon.STATE_DIR + "/tls"


@pytest.fixture(scope="module")
def built_image(tmp_path_factory):
    missing = images.missing_tools()
    if missing:
        pytest.fail(f"{', '.join(missing)} not installed: scripts/install-deps.sh installs them")
    cp = images.containerpilot_binary()
    if not cp:
        pytest.fail("no ContainerPilot binary: set MYSQLPILOT_CONTAINERPILOT or put ../shared/bin/containerpilot "
                    "beside the clone")
    logdir = tmp_path_factory.mktemp("image")
    tag = f"localhost/mysqlpilot-test/mariadb:{uuid.uuid4().hex[:10]}"
    with open(logdir / "build.log", "w") as log:
        started = time.monotonic()
        try:
            images.build(DOCKERFILE, tag, cp, log)
        except AssertionError:
            images.remove_image(tag)
            raise
        log.write(f"build took {time.monotonic() - started:.0f}s\n")
    yield tag
    images.remove_image(tag)


def marathon_env(base: dict, image: str, consul: str) -> dict:
    """The app env of the rendered Marathon group (secrets as plain env: open-source Marathon)."""
    cfg = config.load(path=None, env=dict(base, HOSTNAME="render"), check_files=False)    # as render loads it
    group = marathon.render_group(cfg, image=image, consul=consul, secrets="env")
    app = next(a for a in group["apps"] if a["id"].endswith("/mysql"))
    env = app["env"]
    assert all(isinstance(v, str) for v in env.values()), env
    return env, app["id"]


def sql(host, port, query, password=APP_PW, user="app", ca=None):
    """As the application account (root logs in over the local socket only); over TLS given the CA."""
    conn = pymysql.connect(host=host, port=int(port), user=user, password=password, connect_timeout=3,
                           read_timeout=10, write_timeout=10, autocommit=True,
                           **({"ssl_ca": ca, "ssl_verify_identity": True} if ca else {}))
    try:
        with conn.cursor() as cur:
            cur.execute(query)
            return cur.fetchall()
    finally:
        conn.close()


def secure_setup(tmp_path, cluster, hosts):
    """Issue 23's secure mode: a Consul agent on HTTPS only with client certificates and default-deny ACLs,
    the shipped policy's token, MySQL TLS with require_secure_transport, a monitor account. What the
    operator adds to the render's environment, the agent, and the certificates' directory (mounted into
    every container at the same path)."""
    sec = SecureSetup(str(tmp_path))
    certs = sec.certificates(["127.0.0.1"], mysql_ips=hosts)
    agent = ConsulAgent(str(tmp_path / "consul-secure"), **sec.consul_args()).start()
    token = sec.node_token(agent, "mysqlpilot", cluster, f"mysql-{cluster}")
    # The hooks and mariadbd run as mysql in the containers: this test-only PKI's keys are made readable
    # to it (a platform mounts them owned by the container's user).
    for d, _, files in os.walk(sec.dir):
        os.chmod(d, 0o755)
        for f in files:
            os.chmod(os.path.join(d, f), 0o644)
    env = dict(sec.consul_tls.client_env(), CONSUL_HTTP_TOKEN=token, MYSQLPILOT_TLS_CA=certs["ca"],
               MYSQLPILOT_TLS_CERT=certs["cert"], MYSQLPILOT_TLS_KEY=certs["key"],
               MYSQLPILOT_REQUIRE_SECURE_TRANSPORT="true", MYSQL_MONITOR_PASSWORD=MON_PW)
    env.pop("CONSUL_HTTP_SSL_VERIFY")        # not a config key: the image's entrypoint sets it over https
    # The containers see the directory at TLS_MOUNT, as a platform mounts secrets as files there.
    inside = {k: v.replace(sec.dir, TLS_MOUNT) if v.startswith(sec.dir) else v for k, v in env.items()}
    return agent, inside, env, sec.dir


@pytest.mark.parametrize("mode", ["plain", "secure"])
def test_image_forms_a_cluster_snapshots_to_s3_and_fails_over(built_image, consul_agent, s3_server, s3_bucket,
                                                              tmp_path, mode):
    image = built_image
    cluster = f"img{uuid.uuid4().hex[:8]}"
    hosts = {name: ("127.0.0.1" if name == "node3" else f"127.0.9.{i}") for i, name in enumerate(NODES, start=1)}
    agent, secure_env, observer_env, shared = consul_agent, {}, {}, {}
    if mode == "secure":
        agent, secure_env, observer_env, sec_dir = secure_setup(tmp_path, cluster, sorted(set(hosts.values())))
        shared = {"tls": sec_dir}
    ca = observer_env.get("MYSQLPILOT_TLS_CA")

    def db(host, port, query, **kw):
        return sql(host, port, query, ca=ca, **kw)
    consul = f"127.0.0.1:{agent.http_port}"
    # What an operator passes to `mysqlpilot marathon render` (as env; the render turns it into the group).
    operator = {
        "MYSQLPILOT_CLUSTER": cluster, "SERVICE_NAME": f"mysql-{cluster}", "CONSUL": consul,
        "MYSQL_ROOT_PASSWORD": ROOT_PW, "MYSQL_REPL_PASSWORD": REPL_PW,
        "MYSQL_DATABASE": "app", "MYSQL_USER": "app", "MYSQL_PASSWORD": APP_PW,
        "MYSQLPILOT_STORE": "s3", "MYSQLPILOT_S3_BUCKET": s3_bucket, "MYSQLPILOT_S3_ENDPOINT": s3_server.endpoint,
        "MYSQLPILOT_S3_PREFIX": cluster, "AWS_ACCESS_KEY_ID": s3_server.access_key,
        "AWS_SECRET_ACCESS_KEY": s3_server.secret_key, **secure_env,
    }
    app_env, app_id = marathon_env(operator, image, consul)
    assert app_env["MYSQL_ROOT_PASSWORD"] == ROOT_PW and app_env["CONSUL"] == consul
    cfg_img = images.image_config(image)
    entrypoint = cfg_img["Entrypoint"]
    assert entrypoint, "the image has no ENTRYPOINT"
    health = (cfg_img.get("Healthcheck") or {}).get("Test") or []
    assert health[:1] == ["CMD"], f"the image's HEALTHCHECK is not an exec form: {health}"

    ports = free_ports(len(NODES))
    containers = {}
    volumes = {}
    try:
        for i, (name, port) in enumerate(zip(NODES, ports), start=1):
            c = images.Container(image, f"mp-{cluster}-{name}", str(tmp_path))
            containers[name] = c
            # The state dir is a volume, as Marathon mounts its persistent volume there: a fresh one is
            # an empty directory that belongs to root.
            volumes[name] = str(tmp_path / f"{name}-state")
            os.mkdir(volumes[name], 0o755)
            assert os.stat(volumes[name]).st_uid == 0
            # Marathon's HOST is the agent's address or its host name: node3 gets a name (which the
            # entrypoint must turn into the address ContainerPilot needs), the others an address each.
            host_env = "localhost" if name == "node3" else hosts[name]
            task = {
                # Marathon, per task (host networking): the agent's address, the port it picked, ids.
                "HOST": host_env, "PORT0": str(port), "PORT": str(port), "PORTS": str(port),
                "PORT_MYSQL": str(port), "MARATHON_APP_ID": app_id, "MARATHON_APP_DOCKER_IMAGE": image,
                "MESOS_TASK_ID": f"{app_id.strip('/').replace('/', '_')}.{uuid.uuid4()}",
                # Docker sets HOSTNAME to the container's host name (the agent's, under host networking).
                "HOSTNAME": name,
                # Operator's choice for the test: look for a due snapshot every 5 s, not every 60 s.
                "MYSQLPILOT_SNAPSHOT_CHECK": "5s",
                # Every node on this one host: a name resolving to loopback is allowed on purpose.
                "MYSQLPILOT_ALLOW_LOOPBACK_HOST": "1",
            }
            c.env = dict(app_env, **task)
            if shared:
                shutil.copytree(shared["tls"], os.path.join(volumes[name], "tls"))
            c.start(entrypoint, c.env, hostname=name, volumes={volumes[name]: marathon.STATE_DIR})

        cfg = config.load(path=None, env=dict(operator, HOSTNAME="test-observer", **observer_env))

        def logs():
            return "\n".join(f"===== {n}\n{c.log_tail()}" for n, c in containers.items())

        def wait_for(pred, timeout, what):
            deadline = time.monotonic() + timeout
            last = None
            while time.monotonic() < deadline:
                for n, c in containers.items():
                    if c.proc.poll() is not None and not getattr(c, "killed", False):
                        raise AssertionError(f"container {n} exited {c.proc.returncode}\n{logs()}")
                    # preStart runs once (restarts: never): a failed one leaves a container that never
                    # starts mysqld, so there is nothing left to wait for.
                    if "preStart exited with error" in c.log_tail(10 ** 7):
                        raise AssertionError(f"container {n}: preStart failed\n{logs()}")
                try:
                    last = status_mod.gather(cfg, history=0)
                    got = pred(last)
                    if got:
                        return got
                except Exception as exc:  # noqa: BLE001 - Consul or a node not up yet
                    last = repr(exc)
                time.sleep(1)
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last status: {last}\n{logs()}")

        def formed(st, names, primary_not=None):
            p = st["primary"]
            nodes = {n["name"]: n for n in st["nodes"]}
            if not p or p == primary_not or p not in names:
                return None
            pn = nodes[p]
            if not pn["healthy"] or pn["read_only"] is not False:
                return None
            reps = [nodes.get(n) for n in names if n != p]
            if all(r and r["healthy"] and r["read_only"] is True
                   and r["replicating_from"] == f"{pn['host']}:{pn['port']}" for r in reps):
                return st
            return None

        st = wait_for(lambda s: formed(s, NODES), 600, "one primary and two replicas replicating from it")
        primary = st["primary"]
        nodes = {n["name"]: n for n in st["nodes"]}
        replicas = [n for n in NODES if n != primary]
        # Each node advertises the address and port Marathon gave its task (node3: its HOST name resolved).
        for n in NODES:
            assert (nodes[n]["host"], nodes[n]["port"]) == (hosts[n], ports[NODES.index(n)]), nodes[n]

        # The entrypoint gave the root-owned state dir to mysql and dropped privileges: ContainerPilot,
        # the hooks and mariadbd run as mysql, nothing long-lived as root.
        for n, c in containers.items():
            mysql_uid = os.stat(volumes[n]).st_uid
            assert mysql_uid != 0, f"{n}: state dir still belongs to root"
            assert os.stat(os.path.join(volumes[n], "data")).st_uid == mysql_uid      # the datadir inside it
            procs = c.processes()
            by = {p["comm"]: p for p in procs}
            assert "containerpilot" in by and "mariadbd" in by, procs
            assert by["containerpilot"]["uid"] == mysql_uid and by["mariadbd"]["uid"] == mysql_uid, procs
            # (buildah's own chroot helper, the container's parent, lives in the same root: not ours)
            rooted = [p for p in procs if p["uid"] == 0 and "buildah" not in p["comm"]
                      and not any("buildah" in a for a in p["argv"][:1])]
            assert not rooted, f"{n}: processes left running as root: {rooted}"
            # The secrets Marathon passes in the environment stay out of every command line.
            leaked = [p for p in procs if any(pw in " ".join(p["argv"]) for pw in (ROOT_PW, REPL_PW, APP_PW))]
            assert not leaked, f"{n}: a secret on a command line: {leaked}"

        # The first primary's snapshot is in the S3 bucket, and both replicas were restored from one.
        snap = wait_for(lambda s: s["snapshot"], 120, "a snapshot in Consul")
        assert snap["bytes"] > 0
        keys = [o["Key"] for page in s3_server.client().get_paginator("list_objects_v2").paginate(
            Bucket=s3_bucket, Prefix=cluster) for o in page.get("Contents", [])]
        assert any(snap["id"] in k for k in keys), (snap, keys)
        for r in replicas:
            log = containers[r].log_tail(200000)
            assert "restored" in log, log[-3000:]

        # Replication: rows written on the primary (application account Marathon's env created) reach
        # both replicas, which refuse writes.
        p = nodes[primary]
        db(p["host"], p["port"], "CREATE TABLE IF NOT EXISTS app.t (id INT PRIMARY KEY)")
        db(p["host"], p["port"], "INSERT INTO app.t VALUES (1), (2), (3)")
        for r in replicas:
            deadline = time.monotonic() + 60
            while True:
                try:
                    got = db(nodes[r]["host"], nodes[r]["port"], "SELECT COUNT(*) FROM app.t")[0][0]
                except pymysql.err.ProgrammingError:
                    got = 0
                if got == 3:
                    break
                assert time.monotonic() < deadline, f"{r} has {got} of 3 rows\n{logs()}"
                time.sleep(0.5)
            with pytest.raises(pymysql.err.OperationalError) as ei:
                db(nodes[r]["host"], nodes[r]["port"], "INSERT INTO app.t VALUES (99)")
            assert ei.value.args[0] == 1290, ei.value

        # The image's own HEALTHCHECK command, run inside the primary's container as Docker would (the
        # container's environment, the image's user: root).
        hc = containers[primary].exec(health[1:])
        assert hc.returncode == 0, f"HEALTHCHECK {health[1:]} failed on the primary: {hc.stdout}{hc.stderr}"

        # A primary killed before its failsafe list names the replicas leaves them unable to tell it from
        # one riding out a Consul outage (docs/timing.md, "Who may take the lock"): no automatic failover.
        # Seen here once, the kill coming 2 s after the replicas joined. The kill waits for the list.
        dcs = ConsulDCS.from_config(cfg)
        wait_for(lambda s: set(replicas) <= set((dcs.get_json(failsafe.LIST_KEY) or {}).get("members") or {}), 60,
                 f"{primary}'s failsafe list naming {replicas}")

        # Kill the primary's container: every process in it at once, no hook runs.
        containers[primary].killed = True
        containers[primary].kill()
        assert not containers[primary].processes()
        st2 = wait_for(lambda s: formed(s, replicas, primary_not=primary), 300,
                       f"a new primary among {replicas} with the other replicating from it")
        new = st2["primary"]
        assert new in replicas
        n2 = {n["name"]: n for n in st2["nodes"]}
        assert n2[primary]["role"] in ("down", "fenced") or not n2[primary]["healthy"], n2[primary]
        # Nothing acknowledged before the failover is missing, and the new primary takes writes that
        # reach the surviving replica.
        np_ = n2[new]
        assert db(np_["host"], np_["port"], "SELECT COUNT(*) FROM app.t")[0][0] == 3
        db(np_["host"], np_["port"], "INSERT INTO app.t VALUES (4)")
        other = next(r for r in replicas if r != new)
        deadline = time.monotonic() + 60
        while db(n2[other]["host"], n2[other]["port"], "SELECT COUNT(*) FROM app.t")[0][0] != 4:
            assert time.monotonic() < deadline, f"{other} did not get the row written on {new}\n{logs()}"
            time.sleep(0.5)
        if mode == "secure":
            secure_checks(agent, observer_env, f"mysql-{cluster}", n2, new, other)
    finally:
        for c in containers.values():
            c.remove()
        if agent is not consul_agent:
            agent.stop()


def secure_checks(agent, env, service, nodes, primary, replica):
    """ContainerPilot registered its own service over HTTPS with the token (every surviving container's,
    passing); the replica follows the new primary over verified TLS (asked as the monitor account)."""
    kw = {"verify": env["CONSUL_CACERT"], "cert": (env["CONSUL_CLIENT_CERT"], env["CONSUL_CLIENT_KEY"]),
          "headers": {"X-Consul-Token": env["CONSUL_HTTP_TOKEN"]}, "timeout": 10}
    deadline = time.monotonic() + 60
    while True:
        passing = requests.get(f"{agent.url}/v1/health/service/{service}?passing", **kw).json()
        if len(passing) == 2:
            break
        assert time.monotonic() < deadline, passing
        time.sleep(1)
    conn = pymysql.connect(host=nodes[replica]["host"], port=int(nodes[replica]["port"]), user="monitor",
                           password=MON_PW, connect_timeout=3, ssl_ca=env["MYSQLPILOT_TLS_CA"], ssl_verify_identity=True,
                           cursorclass=pymysql.cursors.DictCursor)
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW SLAVE STATUS")
            row = cur.fetchone()
    finally:
        conn.close()
    assert (row["Master_Port"], row["Slave_IO_Running"], row["Master_SSL_Allowed"],
            row["Master_SSL_Verify_Server_Cert"]) == (nodes[primary]["port"], "Yes", "Yes", "Yes"), row
