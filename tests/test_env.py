import json
import random

import pytest
import torch

from lacos_helpers import env, report


def test_checks_report_ok_and_fail_lines():
    checks = env.run_checks()
    names = {c.name for c in checks}
    assert {"python", "torch", "transformers", "peft", "bitsandbytes", "device"} <= names
    assert all(c.line().startswith(("[OK]", "[FAIL]", "[--]")) for c in checks)
    assert all(c.ok for c in checks if c.name in ("torch", "transformers", "peft"))


def test_missing_package_fails_with_install_hint():
    check = env.check_package("no_such_module_xyz", "no-such-pkg", "1.0", True, "tests")
    assert check.ok is False and "pip install no-such-pkg" in check.detail
    optional = env.check_package("no_such_module_xyz", "no-such-pkg", "1.0", False, "tests")
    assert optional.ok is None and optional.line().startswith("[--]")


def test_old_version_fails():
    assert env.check_package("torch", "torch", "999.0", True, "tests").ok is False


def test_main_prints_summary(capsys):
    code = env.main()
    out = capsys.readouterr().out
    assert "checks passed" in out
    assert code == (1 if "[FAIL]" in out else 0)


def test_seed_everything_repeats():
    env.seed_everything(7)
    a = (random.random(), torch.rand(3))
    env.seed_everything(7)
    b = (random.random(), torch.rand(3))
    assert a[0] == b[0] and torch.equal(a[1], b[1])


def test_pick_device():
    assert env.pick_device("auto") in ("cpu", "cuda")
    assert env.pick_device("cpu") == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            env.pick_device("cuda")


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

    for name in env.OFFLINE_VARS + ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy",
                                    "HF_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(env, "_HUB_PROBES", {})


def test_hub_probe_runs_once_and_says_unreachable(online_env, monkeypatch):
    calls = []

    def refuse(address, timeout):
        calls.append(address)
        raise OSError("no route")

    monkeypatch.setattr(env.socket, "create_connection", refuse)
    assert env.hub_reachable() is False and env.hub_reachable() is False
    assert calls == [("huggingface.co", 443)]


def test_hub_offline_variables_and_proxy(online_env, monkeypatch):
    monkeypatch.setattr(env.socket, "create_connection",
                        lambda *a, **k: pytest.fail("network touched"))
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    assert env.hub_reachable() is True  # behind a proxy the direct probe says nothing
    for name in env.OFFLINE_VARS:
        monkeypatch.setenv(name, "1")
        assert env.hub_offline() and env.hub_reachable() is False
        monkeypatch.setenv(name, "0")
        assert not env.hub_offline()
