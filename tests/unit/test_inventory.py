"""The inventory file: a good file becomes a simulated Inventory; bad ones are refused naming the key."""

import pytest

from gpuhub.inventory.file import parse_inventory
from gpuhub.config.schema import SettingsError

GiB = 1024**3


def gpu_uuid(i: int) -> str:
    return f"GPU-00000000-0000-0000-0000-{i:012d}"


def mig_uuid(i: int) -> str:
    return f"MIG-00000000-0000-0000-0000-{i:012d}"


POOL = f'''
[[gpus]]
uuid = "{gpu_uuid(0)}"
name = "NVIDIA H100 80GB HBM3"
memory = "80G"
compute_capability = "9.0"
nvlink_peers = ["{gpu_uuid(1)}"]

[[gpus]]
uuid = "{gpu_uuid(1)}"
name = "NVIDIA H100 80GB HBM3"
memory = "80G"
compute_capability = "9.0"
nvlink_peers = ["{gpu_uuid(0)}"]

[[gpus]]
uuid = "{gpu_uuid(2)}"
name = "NVIDIA H100 80GB HBM3"
memory = "80G"
compute_capability = "9.0"
nvlink_peers = ["{gpu_uuid(3)}"]

[[gpus]]
uuid = "{gpu_uuid(3)}"
name = "NVIDIA H100 80GB HBM3"
memory = "80G"
compute_capability = "9.0"
nvlink_peers = ["{gpu_uuid(2)}"]

[[gpus]]
uuid = "{gpu_uuid(4)}"
name = "NVIDIA H100 80GB HBM3"
memory = "80G"
compute_capability = "9.0"
healthy = false
health_reason = "XID 79: GPU has fallen off the bus"

[[gpus]]
uuid = "{gpu_uuid(5)}"
name = "NVIDIA A100-SXM4-40GB"
memory = "40G"
compute_capability = "8.0"

[[gpus.mig]]
uuid = "{mig_uuid(0)}"
profile = "1g.5gb"
memory = "5G"

[[gpus.mig]]
uuid = "{mig_uuid(1)}"
profile = "1g.5gb"
memory = "5G"

[[gpus.mig]]
uuid = "{mig_uuid(2)}"
profile = "3g.20gb"
memory = "20G"
'''


def test_pool_file_is_parsed_and_marked_simulated():
    inv = parse_inventory(POOL, "file:pool.toml")
    assert inv.simulated is True and inv.source == "file:pool.toml"
    assert [g.index for g in inv.gpus] == [0, 1, 2, 3, 4, 5]
    h100 = inv.gpus[0]
    assert (h100.memory_bytes, h100.compute_capability, h100.nvlink_peers) == (80 * GiB, (9, 0), {gpu_uuid(1)})
    assert not inv.gpus[4].healthy and "fallen off the bus" in inv.gpus[4].health_reason
    assert inv.gpus[5].mig_enabled and [s.profile for s in inv.gpus[5].mig] == ["1g.5gb", "1g.5gb", "3g.20gb"]
    assert inv.by_uuid[gpu_uuid(3)].index == 3


@pytest.mark.parametrize(
    "text, fragment",
    [
        ('[[gpus]]\nuuid = "GPU-1"\nmemory = "8G"', "gpus[0].uuid = 'GPU-1' is not accepted"),
        (f'[[gpus]]\nuuid = "{gpu_uuid(0)}"\nmemory = "lots"', "gpus[0].memory = 'lots'"),
        (f'[[gpus]]\nuuid = "{gpu_uuid(0)}"', "gpus[0].memory: missing"),
        (f'[[gpus]]\nuuid = "{gpu_uuid(0)}"\nmemory = "8G"\ncolour = "green"', "gpus[0].colour: unknown key"),
        (f'[[gpus]]\nuuid = "{gpu_uuid(0)}"\nmemory = "8G"\ncompute_capability = "nine"', "compute_capability = 'nine'"),
        (f'[[gpus]]\nuuid = "{gpu_uuid(0)}"\nmemory = "8G"\nhealthy = "yes"', "healthy = 'yes'"),
        (f'[[gpus]]\nuuid = "{gpu_uuid(0)}"\nmemory = "8G"\nnvlink_peers = ["{gpu_uuid(9)}"]', "not in the file"),
        (f'[[gpus]]\nuuid = "{gpu_uuid(0)}"\nmemory = "8G"\n[[gpus]]\nuuid = "{gpu_uuid(0)}"\nmemory = "8G"', "appears twice"),
        (f'[[gpus]]\nuuid = "{gpu_uuid(0)}"\nmemory = "8G"\n[[gpus.mig]]\nuuid = "{gpu_uuid(1)}"\nmemory = "1G"', "mig[0].uuid"),
        ("[[gpu]]\n", "gpu: unknown key"),
        ("not toml ==", "not valid TOML"),
    ],
)
def test_bad_inventory_file(text, fragment):
    with pytest.raises(SettingsError) as e:
        parse_inventory(text, "file:x.toml")
    assert fragment in str(e.value), str(e.value)
