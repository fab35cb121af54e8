import json
import random

import pytest
import torch

from lacos_helpers import runtime
from lacos_helpers.course import envcheck, report


def test_checks_report_ok_and_fail_lines():
    checks = envcheck.run_checks()
    names = {c.name for c in checks}
    assert {"python", "torch", "transformers", "peft", "bitsandbytes", "device"} <= names
    assert all(c.line().startswith(("[OK]", "[FAIL]", "[--]")) for c in checks)
    assert all(c.ok for c in checks if c.name in ("torch", "transformers", "peft"))


def test_missing_package_fails_with_install_hint():
    check = envcheck.check_package("no_such_module_xyz", "no-such-pkg", "1.0", True, "tests")
    assert check.ok is False and "pip install no-such-pkg" in check.detail
    optional = envcheck.check_package("no_such_module_xyz", "no-such-pkg", "1.0", False, "tests")
    assert optional.ok is None and optional.line().startswith("[--]")


def test_old_version_fails():
    assert envcheck.check_package("torch", "torch", "999.0", True, "tests").ok is False


def test_main_prints_summary(capsys):
    code = envcheck.main()
    out = capsys.readouterr().out
    assert "checks passed" in out
    assert code == (1 if "[FAIL]" in out else 0)


def test_seed_everything_repeats():
    runtime.seed_everything(7)
    a = (random.random(), torch.rand(3))
    runtime.seed_everything(7)
    b = (random.random(), torch.rand(3))
    assert a[0] == b[0] and torch.equal(a[1], b[1])


def test_pick_device():
    assert runtime.pick_device("auto") in ("cpu", "cuda")
    assert runtime.pick_device("cpu") == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            runtime.pick_device("cuda")


def test_report_writes_file(monkeypatch, tmp_path):
    target = tmp_path / "r.json"
    monkeypatch.setenv("LACOS_REPORT_FILE", str(target))
    assert report.record("spearman", torch.tensor(0.5)) is not None
    report.record("n", 3)
    assert json.loads(target.read_text()) == {"spearman": 0.5, "n": 3}
    with pytest.raises(ValueError):
        report.record("", 1)


@pytest.fixture
def online_env(monkeypatch):
    """No offline variable, no proxy, an empty probe cache."""
    import huggingface_hub.constants as hf_constants

    for name in runtime.OFFLINE_VARS + ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy",
                                    "HF_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(runtime, "_HUB_PROBES", {})


def test_hub_probe_runs_once_and_says_unreachable(online_env, monkeypatch):
    calls = []

    def refuse(address, timeout):
        calls.append(address)
        raise OSError("no route")

    monkeypatch.setattr(runtime.socket, "create_connection", refuse)
    assert runtime.hub_reachable() is False and runtime.hub_reachable() is False
    assert calls == [("huggingface.co", 443)]


def test_hub_offline_variables_and_proxy(online_env, monkeypatch):
    monkeypatch.setattr(runtime.socket, "create_connection",
                        lambda *a, **k: pytest.fail("network touched"))
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    assert runtime.hub_reachable() is True  # behind a proxy the direct probe says nothing
    for name in runtime.OFFLINE_VARS:
        monkeypatch.setenv(name, "1")
        assert runtime.hub_offline() and runtime.hub_reachable() is False
        monkeypatch.setenv(name, "0")
        assert not runtime.hub_offline()


def test_requirements_come_from_the_package_metadata():
    """pyproject.toml is the one source of versions: the check lists its dependencies."""
    import tomllib
    from pathlib import Path

    from packaging.requirements import Requirement

    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    core = {Requirement(r).name.lower(): Requirement(r) for r in
            pyproject["project"]["dependencies"]}
    found = {r.name: r for r in envcheck.requirements()}
    for name, req in core.items():
        assert found[name].required, name
        minimum = next(s.version for s in req.specifier if s.operator == ">=")
        assert found[name].minimum == minimum, name
    for name in ("gguf", "nbval"):
        assert name in found and not found[name].required
