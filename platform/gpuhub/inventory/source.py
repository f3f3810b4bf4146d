"""``load_inventory``: the inventory ``[gpus] inventory`` names (NVML, a simulated file, or none)."""

from __future__ import annotations

from collections.abc import Callable

from ..config.sections import SettingsError
from .file import read_inventory_file
from .model import Inventory, NvmlUnavailable
from .nvml import read_inventory as read_host_nvml


def load_inventory(spec: str, read_nvml: Callable[[], Inventory] | None = None) -> Inventory:
    """The inventory ``[gpus] inventory`` names. ``read_nvml`` is the NVML seam (default: the host's, ``inventory.nvml``).
    "nvml" raises SettingsError when NVML cannot be read; "auto" falls back to no GPU with the reason."""
    if spec == "none":
        return Inventory(gpus=(), source="none", simulated=False)
    if spec.startswith("file:"):
        return read_inventory_file(spec[len("file:"):])
    try:
        return (read_nvml or read_host_nvml)()
    except NvmlUnavailable as e:
        if spec == "nvml":
            raise SettingsError(f"gpus.inventory = \"nvml\": {e}. Use \"auto\" or \"none\" on hosts without NVIDIA GPUs") from None
        return Inventory(gpus=(), source="none", simulated=False, note=f"NVML: {e}")
