"""GPUSpawner's own paths, in process, with JupyterHub's real ``User`` and spawner machinery, gpuhub's
services on a SQLite file and the fake engine (``tests/fakeengine.py``): a start allocates and wires
the container, a stop releases once and clears the state, a failed or cancelled start gives its GPU
back, a server the hub resumes after a restart adopts the allocation its container's label names, and
a poll that finds the allocation freed ends the server. The real engine runs the same paths in the
integration and reliability tiers."""

import asyncio
import socket

import pytest
from jupyterhub import orm
from jupyterhub.objects import Hub
from jupyterhub.user import User
from tornado.httpserver import HTTPServer
from tornado.web import Application, RequestHandler

from gpuhub.config.schema import parse_settings
from gpuhub.db.database import Database
from gpuhub.hub.services import Services
from gpuhub.hub.spawner import STATE_KEY, GPUSpawner
from gpuhub.inventory.file import parse_inventory
from gpuhub.policy.errors import SpawnRefused
from tests.conftest import BASE_SETTINGS
from tests.fakeengine import APIError, FakeEngine
from tests.unit.test_services import INVENTORY


class Answer(RequestHandler):
    def get(self):
        self.write("ok")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
async def server_port():
    """A port on which "the user's server" answers HTTP (the fake engine's containers are at 127.0.0.1)."""
    server = HTTPServer(Application([(r"/.*", Answer)]))
    port = free_port()
    server.listen(port, "127.0.0.1")
    yield port
    server.stop()


@pytest.fixture
def hub_db():
    return orm.new_session_factory("sqlite:///:memory:")()


@pytest.fixture
def services(tmp_path, clock):
    settings = parse_settings(BASE_SETTINGS + "\n[gpus]\nqueue_timeout = 30\n")
    database = Database.open(f"sqlite:///{tmp_path}/gpuhub.sqlite", clock)
    return Services(settings, engine=FakeEngine(parse_inventory(INVENTORY, "file:test")), database=database, clock=clock)


def spawner_of(hub_db, services, name: str, port: int, state: dict | None = None) -> GPUSpawner:
    """``name``'s default server, as JupyterHub makes it (``load_state`` from the stored ``state``)."""
    orm_user = orm.User.find(hub_db, name) or orm.User(name=name)
    hub_db.add(orm_user)
    hub_db.commit()
    user = User(orm_user, settings={})
    if state is not None:
        user._new_orm_spawner("", "").state = state
    return user._new_spawner(
        "", spawner_class=GPUSpawner, hub=Hub(), site_settings=services.settings, services=services, port=port,
        use_internal_ip=True, network_name="bridge", remove=True,  # as gpuhub.hub.hubconfig configures it
        allowed_images=list(services.settings.spawner.allowed_images), pull_policy=services.settings.spawner.pull_policy,
    )


async def started(spawner: GPUSpawner, options=None) -> GPUSpawner:
    spawner.user_options = options or {"profile": "gpu-1"}
    await spawner._run_apply_user_options(spawner.user_options)
    await spawner.start()
    return spawner


def container(services, spawner) -> dict:
    return services.engine.docker.inspect_container(spawner.object_name)


async def test_a_start_allocates_and_wires_and_a_stop_releases_once(hub_db, services, server_port):
    spawner = await started(spawner_of(hub_db, services, "alice", server_port))
    (live,) = await services.allocation.live()
    assert spawner.allocation_id == live.id and spawner.get_state()[STATE_KEY] == live.id
    labels = container(services, spawner)["Config"]["Labels"]
    assert labels["org.gpuhub.allocation"] == str(live.id) and labels["org.gpuhub.gpu-exposure"] == "env-only"
    assert f"NVIDIA_VISIBLE_DEVICES={live.uuids[0]}" in container(services, spawner)["Config"]["Env"]
    assert await spawner.poll() is None and await services.allocation.still_held(live.id)
    await spawner.stop()
    # the stop path: the container is gone, the allocation released once, the state holds no allocation
    assert spawner.object_name not in [c["Name"].lstrip("/") for c in services.engine.docker.by_id.values()]
    assert await services.allocation.live() == [] and spawner.allocation_id == 0
    assert STATE_KEY not in spawner.get_state() and "object_id" not in spawner.get_state()
    assert not await services.allocation.release(live.id, "again")  # already released


async def test_a_cpu_profile_takes_no_gpu(hub_db, services, server_port):
    spawner = await started(spawner_of(hub_db, services, "carol", server_port), {"profile": "cpu-small"})
    assert spawner.allocation_id == 0 and await services.allocation.live() == []
    assert "NVIDIA_VISIBLE_DEVICES=void" in container(services, spawner)["Config"]["Env"]
    await spawner.stop()


async def test_a_failed_start_gives_the_gpu_back(hub_db, services, server_port):
    services.engine.docker.fail["start"] = APIError("the engine refused to start it")
    spawner = spawner_of(hub_db, services, "alice", server_port)
    with pytest.raises(APIError):
        await started(spawner)
    assert await services.allocation.live() == [] and spawner.allocation_id == 0
    assert "start" in services.engine.docker.calls


async def test_a_start_cancelled_in_line_or_while_booting_gives_everything_back(hub_db, services, server_port):
    holders = [await started(spawner_of(hub_db, services, f"u{i}", server_port)) for i in range(2)]  # both GPUs
    waiting = spawner_of(hub_db, services, "late", server_port)
    waiting.user_options = {"profile": "gpu-1"}
    await waiting._run_apply_user_options(waiting.user_options)
    task = asyncio.ensure_future(waiting.start())
    await asyncio.sleep(0.2)
    assert services.allocation.lines.lines() == {"exclusive×1": ["late"]}
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert services.allocation.lines.lines() == {} and len(await services.allocation.live()) == 2
    # cancelled after its GPU was assigned, while its server boots (nothing answers on this port)
    await holders[0].stop()
    booting = spawner_of(hub_db, services, "boot", free_port())
    booting.user_options = {"profile": "gpu-1"}
    await booting._run_apply_user_options(booting.user_options)
    task = asyncio.ensure_future(booting.start())
    for _ in range(50):
        await asyncio.sleep(0.05)
        if booting.allocation_id:
            break
    assert booting.allocation_id
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [a.username for a in await services.allocation.live()] == ["u1"] and booting.allocation_id == 0


async def test_a_server_resumed_after_a_restart_adopts_its_containers_allocation(hub_db, services, server_port, clock):
    """The hub was killed while the container started: the state it had saved holds no allocation id."""
    first = await started(spawner_of(hub_db, services, "alice", server_port))
    allocation_id = first.allocation_id
    restarted = Services(services.settings, engine=services.engine, database=await services.database.get(), clock=clock)
    resumed = spawner_of(hub_db, restarted, "alice", server_port, state={})
    assert resumed.allocation_id == 0
    assert await resumed.poll() is None
    assert resumed.allocation_id == allocation_id  # read from org.gpuhub.allocation
    calls = len(services.engine.docker.calls)
    assert await resumed.poll() is None
    assert services.engine.docker.calls[calls:] == ["inspect_container"]  # the label is read once
    await resumed.stop()
    assert await restarted.allocation.live() == []  # its stop released the adopted GPU


async def test_a_poll_ends_a_server_whose_allocation_was_freed(hub_db, services, server_port):
    spawner = await started(spawner_of(hub_db, services, "alice", server_port))
    (freed,) = await services.allocation.force_free((await services.allocation.live())[0].uuids[0], "admin")
    status = await spawner.poll()
    assert f"its GPU allocation {freed.id} was freed" in status and spawner.allocation_id == 0
    services.engine.docker.exit(spawner.object_name)


async def test_a_container_gone_behind_the_hubs_back_frees_its_gpu(hub_db, services, server_port):
    spawner = await started(spawner_of(hub_db, services, "alice", server_port))
    services.engine.docker.exit(spawner.object_name)
    assert "ExitCode=137" in await spawner.poll()
    assert await services.allocation.live() == [] and spawner.allocation_id == 0


async def test_refusals_come_before_anything_is_created(hub_db, services, server_port):
    spawner = spawner_of(hub_db, services, "alice", server_port)
    for options, status in (({"profile": "nope"}, 400), ({"profile": "cpu-data"}, 403), ([1, 2], 400), ({"session": "x"}, 400)):
        with pytest.raises(SpawnRefused) as e:
            await spawner._run_apply_user_options(options)
        assert e.value.status_code == status
    assert services.engine.docker.by_id == {} and await services.allocation.live() == []


async def test_an_image_the_host_lacks_is_refused_before_anything_and_shown_on_the_form(hub_db, services, server_port):
    """Before: the start allocated a GPU, then DockerSpawner's create failed with ImageNotFound (500)."""
    services.engine.docker.missing_images.add("gpuhub/pytorch-cuda:cpu")
    spawner = spawner_of(hub_db, services, "alice", server_port)
    spawner.pull_policy = "never"  # as in settings.toml: images are built on the host
    with pytest.raises(SpawnRefused) as e:
        await spawner._run_apply_user_options({"profile": "gpu-1"})
    assert (e.value.status_code, e.value.why) == (409, "image-missing")
    assert "'gpuhub/pytorch-cuda:cpu' of profile 'gpu-1' is not on this host" in e.value.message
    assert "bash images/build.sh cpu" in e.value.message
    assert services.engine.docker.by_id == {} and await services.allocation.live() == []
    # an allowed image the host lacks, asked for by name: the same refusal
    services.engine.docker.missing_images.add("example/other:1")
    with pytest.raises(SpawnRefused) as e:
        await spawner._run_apply_user_options({"profile": "cpu-small", "image": "example/other:1"})
    assert e.value.status_code == 409 and "docker pull example/other:1" in e.value.message, e.value.message
    # the form shows every profile on that image disabled, with the reason
    page = await spawner.render_options_form()
    assert 'id="gpuhub-profile-gpu-1" value="gpu-1" disabled' in page
    assert "is not on this host" in page


async def test_an_image_outside_the_allowed_list_is_refused_as_gpuhub_refuses(hub_db, services, server_port):
    spawner = spawner_of(hub_db, services, "alice", server_port)
    with pytest.raises(SpawnRefused) as e:
        await spawner._run_apply_user_options(spawner.options_from_form({"profile": ["cpu-small"], "image": ["evil:1"]}))
    assert (e.value.status_code, e.value.why) == (400, "image") and "evil:1 not in allowed list" in e.value.message
