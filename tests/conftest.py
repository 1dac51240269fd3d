"""Real-server fixtures (Consul, SeaweedFS S3, MariaDB) live in tests/harness/, one module per server."""
pytest_plugins = [
    "tests.harness.consul_server",
    "tests.harness.s3_server",
    "tests.harness.mariadb_server",
]
