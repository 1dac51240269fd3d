"""pytest plugin: a real Consul 1.8.7 dev agent on 127.0.0.1 (free ports), torn down at the end."""
from __future__ import annotations

import shutil
import tempfile
import uuid

import pytest

from mysqlpilot.dcs.consul import ConsulDCS
from mysqlpilot.local.consul_agent import ConsulAgent


def running_agent(prefix: str = "mp-consul-"):
    """A dev agent in a temporary dir of its own, stopped and removed after the yield."""
    base = tempfile.mkdtemp(prefix=prefix)
    agent = ConsulAgent(base).start()
    yield agent
    agent.stop()
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def consul_agent():
    yield from running_agent()


@pytest.fixture
def consul_kv_root():
    return f"mysqlpilot-test/{uuid.uuid4().hex[:12]}"


def make_dcs(agent: ConsulAgent, kv_root: str, node_name: str) -> ConsulDCS:
    return ConsulDCS("127.0.0.1", agent.http_port, kv_root, node_name)
