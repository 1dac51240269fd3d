"""`mysqlpilot config show` (issue 24): every key, its value and where it came from; secrets hidden."""
import json
import subprocess
import sys


def run(*args, env):
    return subprocess.run([sys.executable, "-m", "mysqlpilot", "config", "show", *args], capture_output=True,
                          text=True, env=dict(env, PATH="/usr/bin:/bin"), timeout=60)


def test_config_show_names_each_source_and_hides_secrets(tmp_path):
    cfgfile = tmp_path / "c.yaml"
    cfgfile.write_text("snapshot_interval: 600\n")
    env = {"MYSQLPILOT_CONFIG": str(cfgfile), "MYSQLPILOT_ARCHIVE": "1", "MYSQL_ROOT_PASSWORD": "s3cret-Pw",
           "MYSQLPILOT_NODE": "n1"}
    out = run("--json", env=env)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["archive"] == {"value": True, "source": "$MYSQLPILOT_ARCHIVE"}
    assert doc["snapshot_interval"] == {"value": 600, "source": str(cfgfile)}
    assert doc["lock_delay"]["source"] == "default"
    assert doc["root_password"]["value"] == "<hidden>"
    text = run("--changed", env=env)
    assert text.returncode == 0 and "s3cret-Pw" not in text.stdout + text.stderr
    assert "lock_delay" not in text.stdout and "snapshot_interval" in text.stdout and "# snapshots" in text.stdout
