"""The NVML reader through its seam, on recorded NVML answers: a healthy NVLinked pair, NVSwitch
boards, a MIG-partitioned A100, a GPU that fell off the bus, ECC and row-remapping failures, XID
events, and a host where NVML does not load ("auto" falls back to no GPU; "nvml" refuses)."""

import pynvml
import pytest

from gpuhub.inventory.model import NvmlUnavailable
from gpuhub.inventory.source import load_inventory
from gpuhub.inventory.nvml import NvmlSource
from gpuhub.config.schema import SettingsError
from tests.unit.nvml_recorded import GiB, RecordedNvml, h100


def test_nvlinked_pair_read_with_everything_the_allocator_needs():
    a, b = h100(0), h100(1)
    a["nvlinks"] = [b["bus"].lower(), b["bus"]]  # two links to the other GPU (either spelling)
    b["nvlinks"] = ["0000:18:00.0"]
    inv = NvmlSource(RecordedNvml([a, b])).read()
    assert (inv.source, inv.simulated, inv.label()) == ("nvml", False, "NVML")
    g0, g1 = inv.gpus
    assert (g0.index, g0.uuid, g0.name, g0.compute_capability) == (0, a["uuid"], "NVIDIA H100 80GB HBM3", (9, 0))
    assert g0.memory_bytes == 85520809984 and g0.healthy and not g0.mig
    assert g0.nvlink_peers == {b["uuid"]} and g1.nvlink_peers == {a["uuid"]}


def test_nvswitch_boards_make_every_switched_gpu_a_peer():
    gpus = [h100(i, nvlinks=["00000000:C1:00.0"] * 2) for i in range(4)]  # every link ends at a switch
    inv = NvmlSource(RecordedNvml(gpus)).read()
    for g in inv.gpus:
        assert g.nvlink_peers == {x.uuid for x in inv.gpus} - {g.uuid}


def test_mig_instances_with_uuid_profile_and_memory():
    a100 = {
        **h100(0),
        "name": "NVIDIA A100-SXM4-80GB",
        "cc": (8, 0),
        "mig_mode": (pynvml.NVML_DEVICE_MIG_ENABLE, pynvml.NVML_DEVICE_MIG_ENABLE),
        "mig": [
            {"uuid": "MIG-aaaa0000-0000-0000-0000-000000000000", "name": "NVIDIA A100-SXM4-80GB MIG 3g.40gb", "memory": 40 * GiB},
            None,  # an empty MIG index: NVML answers "not found"
            {"uuid": "MIG-aaaa0000-0000-0000-0000-000000000001", "name": "NVIDIA A100-SXM4-80GB MIG 1g.10gb", "memory": 10 * GiB},
        ],
    }
    (gpu,) = NvmlSource(RecordedNvml([a100])).read().gpus
    assert [(s.uuid[-1], s.profile, s.memory_bytes) for s in gpu.mig] == [("0", "3g.40gb", 40 * GiB), ("1", "1g.10gb", 10 * GiB)]


@pytest.mark.parametrize(
    "answers, reason",
    [
        ({"handle": pynvml.NVMLError_GpuIsLost(pynvml.NVML_ERROR_GPU_IS_LOST)}, "NVML cannot read it (GPU is lost)"),
        ({"uuid": pynvml.NVMLError_GpuIsLost(pynvml.NVML_ERROR_GPU_IS_LOST)}, "it may have fallen off the bus"),
        ({"ecc_uncorrected": 3}, "3 uncorrected ECC error(s) since the driver loaded"),
        ({"remapped_rows": (0, 2, 0, 1)}, "row remapping failed"),
    ],
)
def test_unhealthy_signals(answers, reason):
    bad = {**h100(1), **answers}
    inv = NvmlSource(RecordedNvml([h100(0), bad])).read()
    good, sick = inv.gpus
    assert good.healthy and not sick.healthy
    assert reason in sick.health_reason
    assert sick.index == 1


def test_critical_xid_events_mark_the_gpu_until_the_hub_restarts():
    nvml = RecordedNvml([h100(0), h100(1)], xid_events=[(1, 79), (0, 13)])  # 13: an application error, not fatal
    source = NvmlSource(nvml)
    first = source.read()
    assert first.gpus[0].healthy and not first.gpus[1].healthy
    assert first.gpus[1].health_reason == "critical XID 79"
    assert not source.read().gpus[1].healthy  # remembered after the event was drained


def test_no_ecc_support_is_not_a_problem():
    consumer = h100(0)
    del consumer["ecc_uncorrected"], consumer["remapped_rows"]
    (gpu,) = NvmlSource(RecordedNvml([consumer])).read().gpus
    assert gpu.healthy


def test_nvml_that_does_not_load():
    broken = RecordedNvml([], init_error=pynvml.NVMLError_LibraryNotFound(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND))
    with pytest.raises(NvmlUnavailable, match="NVML did not initialise: NVML Shared Library Not Found"):
        NvmlSource(broken).read()
    read = NvmlSource(broken).read
    auto = load_inventory("auto", read)
    assert auto.gpus == () and auto.label() == "no GPU (NVML: NVML did not initialise: NVML Shared Library Not Found)"
    with pytest.raises(SettingsError, match='gpus.inventory = "nvml": NVML did not initialise'):
        load_inventory("nvml", read)
    assert load_inventory("none").label() == "no GPU"
