"""The environment check: the driver ↔ CUDA table, assigned devices, and the report on this host
(no GPU): every check answers with a known status, GPU checks skip with the reason, nothing crashes."""

import json
import subprocess
import sys

import pytest

from gpuhub.singleuser import envcheck


@pytest.mark.parametrize(
    "driver, cuda, status, fragment",
    [
        ("570.124.06", "12.8", "pass", ">= 570.26"),
        ("560.35.03", "12.6", "pass", ">= 560.28.03"),
        ("535.183.01", "12.6", "warn", "minor-version compatibility"),
        ("525.60.13", "12.4", "warn", "minor-version compatibility"),
        ("470.256.02", "12.1", "fail", "too old for CUDA 12.1"),
        ("450.80.02", "11.8", "warn", "minor-version compatibility"),
        ("550.0", "13.0", "warn", "not in gpuhub's table"),
    ],
)
def test_driver_verdict(driver, cuda, status, fragment):
    got, expected, hint = envcheck.driver_verdict(driver, cuda)
    assert got == status
    assert fragment in expected + hint


@pytest.mark.parametrize(
    "value, devices",
    [("void", []), ("", []), ("GPU-a", ["GPU-a"]), ("GPU-a,MIG-b", ["GPU-a", "MIG-b"])],
)
def test_assigned_devices(value, devices):
    assert envcheck.assigned_devices({"NVIDIA_VISIBLE_DEVICES": value}) == devices


def test_report_on_a_host_without_gpu():
    report = envcheck.run({"NVIDIA_VISIBLE_DEVICES": "void"})
    assert report["schema"] == 1 and report["duration_s"] >= 0
    checks = {c["id"]: c for c in report["checks"]}
    assert set(checks) >= {"non-root", "home", "limits", "shm", "torch", "cuda", "driver", "devices", "precision",
                           "cudnn", "nccl", "alloc", "matmul"}
    for c in report["checks"]:
        assert set(c) == {"id", "title", "status", "value", "expected", "hint"} and c["status"] in envcheck.STATUSES
        assert c["title"], c
    for gpu_check in ("driver", "devices", "precision", "cudnn", "nccl", "alloc", "matmul"):
        assert checks[gpu_check]["status"] == "skip"
        assert "no GPU assigned" in checks[gpu_check]["hint"]
    assert sum(report["summary"].values()) == len(report["checks"])


def test_env_only_exposure_is_named_as_the_reason():
    ctx = envcheck.Context({"NVIDIA_VISIBLE_DEVICES": "GPU-1", "GPUHUB_GPU_EXPOSURE": "env-only"})
    assert "env-only exposure" in ctx.no_gpu()


def test_command_line_prints_the_report_as_json():
    out = subprocess.run([sys.executable, "-m", "gpuhub.singleuser.envcheck"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["schema"] == 1
