"""The container's GPU reader through the NVML seam, on recorded answers: only the assigned devices,
a MIG slice by its UUID (no utilisation: NVML does not report it for MIG), processes mapped to their
Jupyter kernels, and the explicit no-GPU and unavailable states."""

import pynvml

from gpuhub.singleuser.gpus import GpuReader, kernel_of
from tests.unit.nvml_recorded import GiB, RecordedNvml, h100

KERNEL = "0b3f6f0e-7c1a-4c59-9a43-2f1de8a6c0a1"


def fake_proc(tmp_path, pid, args):
    (tmp_path / str(pid)).mkdir()
    (tmp_path / str(pid) / "cmdline").write_bytes("\0".join(args).encode() + b"\0")
    return str(tmp_path)


def test_assigned_gpu_with_its_processes_and_their_kernels(tmp_path):
    gpu = h100(0, memory_used=3 * GiB, utilization=42, temperature=51, processes=[(101, 3 * GiB), (202, GiB)])
    other = h100(1)
    proc = fake_proc(tmp_path, 101, ["python", "-m", "ipykernel_launcher", "-f", f"/run/jupyter/kernel-{KERNEL}.json"])
    reader = GpuReader(RecordedNvml([gpu, other]), {"NVIDIA_VISIBLE_DEVICES": gpu["uuid"]}, proc=proc)
    body = reader.read()
    assert body["state"] == "ok"
    (only,) = body["gpus"]
    assert (only["uuid"], only["memory_used"], only["memory_total"], only["utilization"], only["temperature"]) == (
        gpu["uuid"], 3 * GiB, 85520809984, 42, 51)
    assert only["processes"] == [
        {"pid": 101, "memory_used": 3 * GiB, "kernel_id": KERNEL},
        {"pid": 202, "memory_used": GiB, "kernel_id": None},  # not a kernel (or not in this container)
    ]


def test_mig_slice_is_selected_by_uuid():
    slice_uuid = "MIG-aaaa0000-0000-0000-0000-000000000001"
    parent = {
        **h100(0), "temperature": 60,
        "mig_mode": (pynvml.NVML_DEVICE_MIG_ENABLE, pynvml.NVML_DEVICE_MIG_ENABLE),
        "mig": [
            {"uuid": "MIG-aaaa0000-0000-0000-0000-000000000000", "name": "MIG 3g.40gb", "memory": 40 * GiB},
            {"uuid": slice_uuid, "name": "NVIDIA H100 80GB HBM3 MIG 3g.40gb", "memory": 40 * GiB, "memory_used": GiB},
        ],
    }
    (only,) = GpuReader(RecordedNvml([parent]), {"NVIDIA_VISIBLE_DEVICES": slice_uuid}).read()["gpus"]
    assert (only["uuid"], only["memory_total"], only["memory_used"]) == (slice_uuid, 40 * GiB, GiB)
    assert only["utilization"] is None and only["temperature"] == 60  # the parent's sensor


def test_no_gpu_and_unavailable_states():
    assert GpuReader(RecordedNvml([]), {"NVIDIA_VISIBLE_DEVICES": "void"}).read()["state"] == "no-gpu"
    broken = RecordedNvml([], init_error=pynvml.NVMLError_LibraryNotFound(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND))
    body = GpuReader(broken, {"NVIDIA_VISIBLE_DEVICES": "GPU-1", "GPUHUB_GPU_EXPOSURE": "env-only"}).read()
    assert body["state"] == "unavailable" and "env-only exposure" in body["message"] and body["assigned"] == ["GPU-1"]
    body = GpuReader(broken, {"NVIDIA_VISIBLE_DEVICES": "GPU-1"}).read()
    assert "NVML Shared Library Not Found" in body["message"]


def test_kernel_of_unknown_pid(tmp_path):
    assert kernel_of(999999, str(tmp_path)) is None


def test_what_the_hub_assigned_comes_with_the_figures():
    environ = {
        "NVIDIA_VISIBLE_DEVICES": h100(0)["uuid"], "GPUHUB_GPU_MODE": "shared", "GPUHUB_GPU_EXPOSURE": "device_requests",
        "GPUHUB_GPU_SIMULATED": "false", "GPUHUB_GPU_MEMORY_BUDGET": str(20 * GiB),
    }
    body = GpuReader(RecordedNvml([h100(0)]), environ).read()
    assert {k: body[k] for k in ("state", "mode", "exposure", "simulated", "memory_budget")} == {
        "state": "ok", "mode": "shared", "exposure": "device_requests", "simulated": False, "memory_budget": 20 * GiB}
    broken = RecordedNvml([], init_error=pynvml.NVMLError_LibraryNotFound(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND))
    body = GpuReader(broken, {**environ, "GPUHUB_GPU_EXPOSURE": "env-only", "GPUHUB_GPU_SIMULATED": "true",
                              "GPUHUB_GPU_MEMORY_BUDGET": ""}).read()
    assert (body["state"], body["simulated"], body["memory_budget"], body["mode"]) == ("unavailable", True, None, "shared")
