"""What GPUs a host has: the model (``model``), and its sources: NVML (``nvml``), a simulated
inventory file (``file``), chosen by ``source.load_inventory``."""
