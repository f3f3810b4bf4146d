"""The package's shape, from its imports (every ``import`` statement, function-level ones included):
no import cycles; each room imports only the rooms below it; the container side needs nothing of the
hub side (it imports in an environment without the ``hub`` extra's packages)."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

PACKAGE = REPO / "platform" / "gpuhub"

# room -> the gpuhub rooms it may import (besides itself). A room is a subpackage or a top-level module.
ALLOWED = {
    "contract": set(),
    "worker": set(),
    "config": {"contract"},
    "inventory": {"config", "contract"},
    "policy": {"config", "inventory", "contract"},
    "db": {"policy", "inventory", "config", "contract"},
    "engine": {"policy", "inventory", "config", "contract", "worker"},
    "hub": {"engine", "db", "policy", "inventory", "config", "contract", "worker"},
    "web": {"hub", "engine", "db", "policy", "inventory", "config", "contract"},
    "agent": {"policy", "inventory", "config", "contract"},  # talks to the hub over its REST API only
    "singleuser": {"contract"},  # runs in the user's container
    "reporter": {"inventory", "config", "contract"},
    "homecopy": set(),  # the two halves of a Swarm home move: the standard library only  # a Swarm node's reporter: runs in a single-user image, talks to the hub over HTTP
    "cli": {"backup"},  # the REST API from a terminal (the standard library only); backup and restore run locally
    "backup": {"engine", "policy", "config", "contract"},  # the hub's files and the engine's volumes
    "docgen": {"config", "hub", "inventory"},
    "netguard": {"policy", "contract"},  # beside the engine: a container's rules from its label (docker, /proc, nsenter)  # writes the reference from the schema and the classes' traits
}
EXCEPTIONS = {
    # the config glue hands the web routes, scopes and the metrics collector to JupyterHub
    ("gpuhub.hub.hubconfig", "web"),
}
# what the hub side needs and the container image does not have (the ``hub`` extra's own packages)
HUB_ONLY = ("dockerspawner", "docker", "nativeauthenticator", "jupyterhub_idle_culler", "psycopg", "asyncssh")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py") if "migrations" not in p.parts}


def imports_of(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The gpuhub modules ``name`` imports, anywhere in its file."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "gpuhub"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "gpuhub":
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in known else target)
    return {m for m in found if m in known and m != name}


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports_of(name, path, known) for name, path in known.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10000))
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def room(module: str) -> str:
    return module.split(".")[1] if module.count(".") else ""


def test_the_graph_sees_function_level_imports():
    edges = graph()
    assert "gpuhub.contract" in edges["gpuhub.hub.spawner"] or "gpuhub.policy.decide" in edges["gpuhub.hub.spawner"]
    assert edges["gpuhub.contract"] == set()
    # a cycle made up here is found (the checker itself works)
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles():
    assert cycles(graph()) == []


def test_each_room_imports_only_the_rooms_below_it():
    edges = graph()
    assert set(ALLOWED) >= {room(m) for m in edges if room(m)}, "a new room: give it a row in ALLOWED"
    wrong = sorted(
        f"{m} imports {t}"
        for m, targets in edges.items()
        for t in targets
        if room(m) and room(t) != room(m) and room(t) not in ALLOWED[room(m)] and (m, room(t)) not in EXCEPTIONS
    )
    assert wrong == []


CONTAINER_SIDE = """
import importlib.abc, sys
BLOCKED = {blocked!r}
class NoHubPackages(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{{name}} is not installed here (the hub extra is not)")
sys.meta_path.insert(0, NoHubPackages())
import gpuhub.singleuser, gpuhub.singleuser.app, gpuhub.singleuser.gpus, gpuhub.singleuser.envcheck
import gpuhub.singleuser.notices, gpuhub.singleuser.budget, gpuhub.singleuser.cgroups
print(" ".join(sorted(m for m in sys.modules if m.startswith("gpuhub"))))
"""


def test_the_container_side_imports_without_the_hub_side():
    code = CONTAINER_SIDE.format(blocked=HUB_ONLY)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = set(result.stdout.split())
    assert loaded - {"gpuhub", "gpuhub.contract"} == {m for m in loaded if m.startswith("gpuhub.singleuser")}


@pytest.mark.parametrize("blocked", HUB_ONLY[:2])
def test_the_blocker_blocks(blocked):
    """The container-side check is not empty: the hub side does not import with its packages blocked."""
    code = CONTAINER_SIDE.format(blocked=(blocked,)).replace("import gpuhub.singleuser,", "import gpuhub.hub.spawner, gpuhub.singleuser,")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.returncode != 0 and "is not installed here" in result.stderr


def test_the_node_reporter_imports_without_the_hub_side():
    """The Swarm node reporter runs in a single-user image too (no dockerspawner, no docker-py)."""
    code = CONTAINER_SIDE.format(blocked=HUB_ONLY).replace(
        "import gpuhub.singleuser, gpuhub.singleuser.app, gpuhub.singleuser.gpus, gpuhub.singleuser.envcheck\n"
        "import gpuhub.singleuser.notices, gpuhub.singleuser.budget, gpuhub.singleuser.cgroups",
        "import gpuhub.reporter, gpuhub.inventory.nvml",
    )
    assert "import gpuhub.reporter" in code
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "gpuhub.reporter" in result.stdout.split()
