"""docs/configuration.md is generated from the config schema; these tests keep the two from drifting."""
import os

from click.testing import CliRunner

from mysqlpilot import config
from mysqlpilot.cli import main

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DOC = os.path.join(REPO, "docs", "configuration.md")


def run(*args):
    return CliRunner().invoke(main, ["docs", "config-reference", *args])


def test_committed_reference_matches_the_code():
    with open(DOC, encoding="utf-8") as fh:
        assert fh.read() == config.reference_markdown() + "\n", "run `mysqlpilot docs config-reference`"


def test_reference_lists_every_key_and_variable():
    text = config.reference_markdown()
    for key in config.SCHEMA:
        assert f"| `{key.name}` |" in text
        for var in key.env:
            assert f"`{var}`" in text


def test_check_passes_on_the_committed_file():
    res = run("--check")
    assert res.exit_code == 0, res.output


def test_check_fails_with_one_line_on_a_stale_file(tmp_path):
    stale = tmp_path / "configuration.md"
    with open(DOC, encoding="utf-8") as fh:
        stale.write_text(fh.read().replace("| `cluster` |", "| `clustr` |"))
    res = run("--check", "--path", str(stale))
    assert res.exit_code == 1
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and str(stale) in lines[0] and "mysqlpilot docs config-reference" in lines[0]
    missing = tmp_path / "absent.md"
    res = run("--check", "--path", str(missing))
    assert res.exit_code == 1 and str(missing) in res.output


def test_write_then_check(tmp_path):
    out = tmp_path / "configuration.md"
    assert run("--path", str(out)).exit_code == 0
    assert out.read_text(encoding="utf-8") == config.reference_markdown() + "\n"
    assert run("--check", "--path", str(out)).exit_code == 0


def test_the_shipped_consul_policy_is_the_one_the_command_prints_for_the_default_names():
    import os

    from mysqlpilot.consul_policy import policy_hcl
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    with open(os.path.join(here, "docker", "consul-policy.hcl")) as fh:
        assert fh.read() == policy_hcl("mysqlpilot", "mysql", "mysql")
