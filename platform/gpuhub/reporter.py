"""``python -m gpuhub.reporter``: gpuhub's node reporter, one per GPU node of a Swarm.

The hub deploys it as a global Swarm service (``engine.swarm``, ``[engine] kind = "swarm"``) from a
gpuhub single-user image, on the hub's overlay network, with every GPU of the node visible to it
(``NVIDIA_VISIBLE_DEVICES=all``). Every ``GPUHUB_REPORT_INTERVAL`` seconds it reads the node's
inventory (``GPUHUB_INVENTORY``: "auto", "nvml", "none" or "file:<path>", where ``{node}`` in the
path is the node's hostname: one SIMULATED file per node for CI and demos), the memory in use on
each device and how busy each device is (``GPUHUB_ACTIVITY``: the ``[reclaim] activity`` setting,
"nvml" or "file:<path>", ``{node}`` as above; for the hub's GPU-idle reclaim), and POSTs the report
to the hub. It never touches Docker and holds no state: losing it
only means the hub stops placing new servers on its node after three intervals.

Environment (the hub's service spec sets them): ``GPUHUB_HUB_API`` (e.g. ``http://hub:8081/hub/api``),
``GPUHUB_NODE_ID`` and ``GPUHUB_NODE_HOSTNAME`` (Swarm's ``{{.Node.ID}}``, ``{{.Node.Hostname}}``),
``GPUHUB_REPORTER_TOKEN_FILE`` (a Swarm secret holding the ``gpuhub-node-reporter`` service's token).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import urllib.error
import urllib.request

from .config.sections import SettingsError
from .inventory.activity import ActivityError, NvmlActivity, Reading, read_file
from .inventory.report import NodeReport, report_json
from .inventory.source import load_inventory

log = logging.getLogger("gpuhub.reporter")
API_PATH = "/gpuhub/v1/nodes/{node}/report"


def read_activity(spec: str, hostname: str, nvml_inventory: bool) -> Reading | None:
    """How busy this node's devices are (``spec``: "nvml" or "file:<path>", ``{node}`` → hostname);
    None where there is nothing to read (no NVML GPUs here). ActivityError when the reading fails."""
    if spec.startswith("file:"):
        return read_file(spec[len("file:"):].replace("{node}", hostname))
    if spec == "nvml" and nvml_inventory:
        return NvmlActivity(map_processes=False).read()
    return None


def read_report(node_id: str, hostname: str, spec: str, activity_spec: str = "") -> NodeReport:
    """This node's report now: its inventory (``spec``, ``{node}`` → hostname), memory in use and,
    with ``activity_spec``, how busy its devices are (a failed reading is logged and left out)."""
    inventory = load_inventory(spec.replace("{node}", hostname))
    used: dict[str, tuple[int, int]] = {}
    nvml = inventory.source == "nvml" and bool(inventory.gpus)
    if nvml:
        from .inventory.nvml import read_memory_used

        used = read_memory_used()
    activity = None
    if activity_spec:
        try:
            activity = read_activity(activity_spec, hostname, nvml)
        except ActivityError as e:
            log.warning("no activity reading this time: %s", e)
    return NodeReport(node_id, hostname, inventory.with_node(hostname), used, activity)


def send(api_url: str, token: str, report: NodeReport, timeout: float = 10) -> None:
    """POST ``report`` to the hub; raises OSError (including HTTPError) when it is not taken."""
    body = json.dumps(report_json(report)).encode()
    request = urllib.request.Request(
        api_url.rstrip("/") + API_PATH.format(node=report.node_id),
        data=body,
        method="POST",
        headers={"Authorization": f"token {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=timeout):
        pass


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="[%(levelname)1.1s %(asctime)s gpuhub-reporter] %(message)s")
    try:
        api_url = os.environ["GPUHUB_HUB_API"]
        node_id, hostname = os.environ["GPUHUB_NODE_ID"], os.environ["GPUHUB_NODE_HOSTNAME"]
        with open(os.environ["GPUHUB_REPORTER_TOKEN_FILE"]) as f:
            token = f.read().strip()
        spec = os.environ.get("GPUHUB_INVENTORY", "auto")
        activity_spec = os.environ.get("GPUHUB_ACTIVITY", "")
        interval = float(os.environ.get("GPUHUB_REPORT_INTERVAL", "10"))
    except (KeyError, OSError, ValueError) as e:
        print(f"gpuhub-reporter: cannot start: {e}", file=sys.stderr)
        return 2
    log.info("node %s (%s): reporting %s to %s every %g s", hostname, node_id[:10], spec, api_url, interval)
    failing = False
    while True:
        try:
            report = read_report(node_id, hostname, spec, activity_spec)
            send(api_url, token, report)
            if failing:
                log.info("reports are taken again (%d GPU(s))", len(report.inventory.gpus))
            failing = False
        except (OSError, SettingsError) as e:
            detail = e.read().decode("utf-8", "replace")[:300] if isinstance(e, urllib.error.HTTPError) else ""
            if not failing:
                log.warning("the report was not taken: %s %s (trying again every %g s)", e, detail, interval)
            failing = True
        time.sleep(interval)


if __name__ == "__main__":
    sys.exit(main())
