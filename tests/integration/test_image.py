"""The user image as built (the `cpu` variant of the matrix): gpuhub's server and JupyterLab extensions
enabled, torchrun ready for a multi-process job, NCCL_DEBUG defaulted and settable."""

import re
import uuid

import docker
import pytest

from tests.hubprocess import USER_IMAGE, require_engine_and_image

ANSI = re.compile(r"\x1b\[[0-9;]*m")

ALL_REDUCE = """
import os, torch, torch.distributed as dist
dist.init_process_group("gloo")
x = torch.tensor([float(dist.get_rank() + 1)])
dist.all_reduce(x)
print(f"rank {dist.get_rank()} of {dist.get_world_size()}: sum {x.item():g}", flush=True)
dist.destroy_process_group()
"""


@pytest.fixture(scope="module")
def run():
    problem = require_engine_and_image()
    if problem:
        pytest.fail(f"the Docker tier cannot run: {problem}", pytrace=False)
    client = docker.from_env()
    # As a user's server is: on a network of its own (internal: nothing outside is reachable), so its
    # hostname resolves, which torchrun's rendezvous needs.
    network = client.networks.create(f"gpuhubtest-image-{uuid.uuid4().hex[:8]}", internal=True)

    def run(command: str, **kwargs) -> str:
        out = client.containers.run(
            USER_IMAGE, ["bash", "-c", command], name=f"gpuhubtest-image-{uuid.uuid4().hex[:8]}", remove=True,
            network=network.name, shm_size="256m", stderr=True, **kwargs,
        )
        return ANSI.sub("", out.decode())

    yield run
    network.remove()


def test_both_gpuhub_extensions_are_enabled(run):
    out = run("jupyter server extension list 2>&1; jupyter labextension list 2>&1")
    assert re.search(r"gpuhub\.singleuser enabled", out) and re.search(r"gpuhub\.singleuser\s+OK", out), out
    assert re.search(r"@gpuhub/jupyterlab-gpuhub v0\.1\.0 enabled OK \(python, gpuhub\)", out), out


def test_torchrun_runs_a_two_process_job(run):
    out = run(f"cd /tmp && cat > job.py <<'PY'\n{ALL_REDUCE}\nPY\ntimeout 120 torchrun --standalone --nproc-per-node 2 job.py 2>&1")
    assert "rank 0 of 2: sum 3" in out and "rank 1 of 2: sum 3" in out, out


def test_nccl_debug_defaults_to_warn_and_is_settable(run):
    assert run("echo $NCCL_DEBUG").strip() == "WARN"
    assert run("echo $NCCL_DEBUG", environment={"NCCL_DEBUG": "INFO"}).strip() == "INFO"


CONTAINER_SIDE = """
import importlib.util, sys
import gpuhub.singleuser.app, gpuhub.singleuser.gpus, gpuhub.singleuser.envcheck, gpuhub.singleuser.notices, gpuhub.singleuser.budget
missing = [p for p in ("dockerspawner", "nativeauthenticator", "ldapauthenticator", "asyncssh") if importlib.util.find_spec(p) is None]
print("missing:", " ".join(missing))
print("loaded:", " ".join(sorted(m for m in sys.modules if m.startswith("gpuhub"))))
"""


def test_the_container_side_needs_nothing_of_the_hub_side(run):
    """The image has the singleuser extra, not the hub's: gpuhub's container side imports there and
    loads nothing of gpuhub but itself and the shared contract. (docker-py is there: gpuhub-netguard runs
    from this image on a Swarm's nodes; a user's container has no engine socket to use it with.)"""
    out = run(f"python3 -c '{CONTAINER_SIDE}'")
    assert "missing: dockerspawner nativeauthenticator ldapauthenticator asyncssh" in out, out
    loaded = next(line for line in out.splitlines() if line.startswith("loaded:")).split()[1:]
    assert set(loaded) - {"gpuhub", "gpuhub.contract"} == {m for m in loaded if m.startswith("gpuhub.singleuser")}, loaded


def test_the_image_runs_gpuhub_netguard_for_a_swarm_node_and_a_user_cannot_use_its_tools(run):
    """On a Swarm the hub runs gpuhub-netguard from this image on every node (``policy.services.netguard_spec``):
    its programs and Python are here. A user's container (uid 1000, no capability) cannot load rules."""
    out = run("command -v tini nsenter iptables-restore ip6tables-restore; /opt/gpuhub/venv/bin/python -m gpuhub.netguard --help")
    assert out.count("/") >= 4 and "--hub-address ADDRESS" in out and "--node-address ADDRESS" in out, out
    out = run("id -u; printf '*filter\\n:OUTPUT ACCEPT [0:0]\\nCOMMIT\\n' | iptables-restore 2>&1; echo exit=$?", cap_drop=["ALL"])
    assert out.startswith("1000\n") and "exit=0" not in out, out
