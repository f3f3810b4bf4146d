"""GPUSpawner: DockerSpawner applying gpuhub's profiles, quotas and GPU allocations. Thin glue:
policy lives in ``gpuhub.policy`` (profiles, quotas, the allocator, the form, the container builder),
hub-wide state in the services (``services.Services``), how a container gets its devices in the
engine (``gpuhub.engine``). This class moves their results onto DockerSpawner's traits and hooks them
into the spawner's life: validate (``apply_profile``), start (wait in line, allocate, wire), stop and
a dead poll (release), state (the allocation id beside the container id), progress (one
``StartProgress`` the services write)."""

from __future__ import annotations

import re

from dataclasses import dataclass

from dockerspawner import DockerSpawner
from tornado import web
from traitlets import Any, Instance, Integer, default

from .readiness import StoppedWhileStarting, wait_answering

from ..engine.base import NoGroupSubnet
from ..config.schema import Profile, Settings
from ..policy import containers, form
from ..policy.borrowing import beyond_quota
from ..policy.decide import Start
from ..policy.errors import ServerDidNotAnswer, SpawnRefused
from ..policy.network import policy_for
from ..policy.profiles import choose_profile, gpu_request, missing_image_text, session_name
from ..policy.sessions import Session, status_text
from ..policy.slugs import user_slug
from .progress import StartProgress
from .services import Services

STATE_KEY = "gpuhub_allocation"


@dataclass(frozen=True)
class StartPlan:
    """What ``apply_profile`` decided a start is: ``start`` runs ``profile`` from ``image``, for ``session``."""

    profile: Profile
    start: Start
    image: str
    session: Session | None = None


DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


class GPUSpawner(DockerSpawner):
    """Spawn the profile a user picked, with gpuhub's security defaults, a per-user home volume and
    the GPUs the allocator assigned.

    Registered as the ``gpuhub`` entry point of ``jupyterhub.spawners``. ``gpuhub.hub.hubconfig``
    configures it from the site settings file; nothing here needs setting by hand.
    """

    site_settings = Instance(
        Settings,
        allow_none=True,
        help="""The parsed site settings (``gpuhub.config.schema.Settings``). Set by
        ``gpuhub.hub.hubconfig.apply_site_settings`` from the settings file; set it yourself only when
        embedding gpuhub in another config, e.g. ``c.GPUSpawner.site_settings = load_settings(path)``.""",
    ).tag(config=True)

    services = Instance(
        Services,
        help="""The hub process's services (allocation, quotas, sessions, ...) and engine. Default: the
        process's one set, made from ``site_settings``. Tests pass their own (a fake engine, a
        temporary database, a clock they move).""",
    )

    @default("services")
    def _default_services(self):
        return Services.for_settings(self.settings)

    allocation_id = Integer(0, help="The live GPU allocation of this server (0: none). Kept in the spawner state.")

    user_options = Any(
        help="""What the start asked for, e.g. ``{"profile": "gpu-1"}``. Any JSON value is taken here so that
        ``apply_profile`` refuses a wrong one (``[1, 2]``, ``"abc"``) with a 400 that says what is accepted:
        JupyterHub's ``Dict`` would fail the assignment with a 500 before any check, after storing the
        value, and again whenever the hub makes this spawner from the stored value.""",
    )

    @default("user_options")
    def _default_user_options(self):
        return {}

    _plan: StartPlan | None = None  # what apply_profile decided; start carries it out
    _progress: StartProgress | None = None  # what the start is doing now, for the spawn page
    _label_to_read = False  # loaded from a state without an allocation id: a running container's label may name one
    _group_network = ""  # the session's group-work network this start's container joins ("" none)

    @property
    def settings(self) -> Settings:
        if self.site_settings is None:
            raise RuntimeError("GPUSpawner.site_settings is not set: load the hub config through gpuhub.hub.hubconfig")
        return self.site_settings

    # --- the engine: DockerSpawner's Docker calls go through it ----------------------------------------
    @property
    def client(self):
        return self.services.engine.client

    def docker(self, method, *args, **kwargs):
        return self.services.engine.call(method, *args, **kwargs)

    def _user_groups(self) -> list[str]:
        return [g.name for g in self.user.groups]

    def template_namespace(self):
        return {**super().template_namespace(), "slug": user_slug(self.user.name)}

    @default("name_template")
    def _default_name_template(self):
        name = self.settings.spawner.container_name
        return name + "--{servername}" if self.name else name

    # --- state: the allocation id beside DockerSpawner's container id -----------------------------
    def load_state(self, state):
        super().load_state(state)
        self.allocation_id = int(state.get(STATE_KEY) or 0)
        # a start the hub did not see finish (it was killed while the container started) saved no
        # allocation id; the container's label names it (read once, at the first poll)
        self._label_to_read = not self.allocation_id

    def get_state(self):
        state = super().get_state()
        if self.allocation_id:
            state[STATE_KEY] = self.allocation_id
        return state

    def clear_state(self):
        super().clear_state()
        self.allocation_id = 0

    # --- the form: profiles this user may use, with free capacity now ------------------------------
    @default("options_form")
    def _default_options_form(self):
        return GPUSpawner.render_options_form

    async def render_options_form(self) -> str:
        services = self.services
        await services.allocation.ready()
        groups = self._user_groups()
        quota = await services.quotas.effective(self.user.name, groups)
        requests = {p.name: r for p in self.settings.profiles if (r := gpu_request(p)) is not None}
        held = await services.allocation.held_elsewhere(self.user.name, self.name)
        borrowing = self.settings.borrowing
        borrowed = {
            name for name, r in requests.items() if borrowing.allows(name, groups) and beyond_quota(quota, held, name, r)
        }
        availability = {
            name: form.Availability(
                cap.text, cap.total >= requests[name].count, waiting, borrowing.grace_period if name in borrowed else None
            )
            for name, (cap, waiting) in (await services.allocation.capacities(requests)).items()
        }
        inventory = await services.allocation.inventory()
        return form.render_form(
            self.settings,
            groups,
            quota.profiles.value,
            availability,
            form.gpu_source_text(inventory.label(), inventory.simulated, services.engine.exposure),
            await self._session_choices(),
            await self._profiles_without_image(),
        )

    async def _profiles_without_image(self) -> dict[str, str]:
        """Profiles whose image this host does not have (``pull_policy = "never"``), with why."""
        if not self._must_have_image():
            return {}
        missing = {}
        for image in {p.image for p in self.settings.profiles}:
            if not await self.services.engine.has_image(image):
                missing[image] = True
        return {p.name: missing_image_text(p.image, p.name) for p in self.settings.profiles if p.image in missing}

    async def _session_choices(self) -> list[form.SessionChoice]:
        now, choices = self.services.clock(), []
        for s in await self.services.sessions.sessions_of(self.user.name):
            profile, status = self.settings.profile(s.profile), status_text(s, now)
            if profile is not None and status is not None:
                choices.append(form.SessionChoice(s.name, s.title or s.name, profile, status[1], status[0]))
        return choices

    def options_from_form(self, formdata):
        return form.options_from_form(formdata)

    def options_from_query(self, query_data):
        form.check_start_link(self.handler.request.headers)
        return form.options_from_form(query_data)

    # --- validate the request (form and REST API alike), before anything is created ----------------
    @default("apply_user_options")
    def _default_apply_user_options(self):
        return GPUSpawner.apply_profile

    async def apply_profile(self, user_options) -> None:
        """Validate the request against the profiles, the classroom session it names (roster, window),
        the user's quota and the images this host has; refuse with a 4xx naming why."""
        try:
            await self._apply_profile(user_options)
        except SpawnRefused as e:
            e.holder = self._log_name  # for the one log line (``log.QuietRefusals``)
            raise

    async def _apply_profile(self, user_options) -> None:
        services = self.services
        await services.allocation.ready()
        groups = self._user_groups()
        session = None
        if (name := session_name(user_options)) is not None:
            session = await services.sessions.for_start(self.user.name, name)
        options = {} if user_options is None else user_options
        profile = choose_profile(self.settings, options, groups, session.profile if session else None)
        image = profile.image
        if user_options and user_options.get("image"):
            image = await self._allowed_image(user_options["image"])
        await self._image_here(image, profile)
        request = gpu_request(profile)
        start = Start(
            self.user.name, self.name, tuple(groups), profile.name, request, profile.mem_limit, profile.cpu_limit,
            session.name if session else "", may_borrow=request is not None and self.settings.borrowing.allows(profile.name, groups),
        )
        start = await self.bind_start(start)
        await services.allocation.check_start(start)
        self._plan = StartPlan(profile, start, image, session)
        self.image = image
        self._progress = StartProgress()
        # waiting in line (for a GPU, for a turn to start) must not count against the start itself
        self.start_timeout = (
            self.settings.spawner.start_timeout
            + self.settings.admission.queue_timeout
            + (self.settings.gpus.queue_timeout if request else 0)
        )

    async def bind_start(self, start: Start) -> Start:
        """Where the start may be placed: anywhere on one host (the Swarm spawner binds it to a home)."""
        return start

    async def _allowed_image(self, image) -> str:
        """DockerSpawner's allowed-images check, refused as gpuhub refuses (one shape, one log line)."""
        try:
            return await self.check_allowed(image)
        except web.HTTPError as e:
            raise SpawnRefused(e.status_code, e.log_message or str(e), why="image") from None

    def _must_have_image(self) -> bool:
        """Whether a start needs the image already where servers run (here: ``pull_policy = "never"``)."""
        return self.pull_policy.lower() == "never"

    async def _image_here(self, image: str, profile: Profile) -> None:
        """With ``pull_policy = "never"``, refuse (409) an image this host does not have, before anything
        is allocated or created; say how to get it."""
        if self._must_have_image() and not await self.services.engine.has_image(image):
            raise SpawnRefused(409, missing_image_text(image, profile.name), why="image-missing")

    # --- start: wait in line and allocate, then create the container with exactly those devices ------
    async def start(self):
        plan, progress, services = self._plan, self._progress, self.services
        self._label_to_read = False  # this process starts it: the state will hold its allocation id
        assignment = None
        try:
            if plan.start.request is not None:
                allocation = await services.allocation.acquire(plan.start, self._log_name, progress, plan.session, self.user_options)
                self.allocation_id = allocation.id
                assignment = allocation.assignment()
            self._group_network = containers.group_network_name(self.settings, plan.session)
            peers = await self._join_group() if self._group_network else None
            spec = containers.build(
                self.settings, plan.profile, self.user.name, plan.image, services.engine.wiring(assignment), plan.session, self.name,
                network_peers=(peers,) if peers else (),
            )
            self.log.info(
                "gpuhub %s: profile %s, image %s, home volume %s, GPUs %s",
                self._log_name, plan.profile.name, spec.image, spec.home_volume, ",".join(assignment.uuids) if assignment else "none",
            )
            await self.use_spec(spec, assignment)
            gate = services.starts
            async with gate.turn(self._log_name, self.settings.admission.queue_timeout, progress):
                self.log.info("gpuhub %s: start turn taken (%d of at most %d starting)", self._log_name, gate.running, gate.slots)
                progress.update(50, "GPU assigned; starting your server" if assignment else "Starting your server")
                progress.finish()
                ip, port = await super().start()
                # the turn ends when the server answers: booting it is most of a start's load
                try:
                    await wait_answering(f"http://{ip}:{port}/", timeout=self.http_timeout, stopped=self._stopped_while_starting)
                except StoppedWhileStarting as e:
                    raise SpawnRefused(
                        503,
                        f"Your server's container stopped while it started ({e}), so there is no server (files"
                        f" kept). Tell an admin if it happens again.",
                        why="stopped-while-starting",
                    ) from None
                except TimeoutError:
                    raise ServerDidNotAnswer(
                        f"Your server's container started, but the server in it did not answer within"
                        f" {self.http_timeout} seconds, so it was stopped (files kept). Try again; if it"
                        f" happens again, tell an admin: the image {self.image!r} may be broken"
                    ) from None
            return ip, port
        except BaseException as e:  # a refusal, a failure, or the start cancelled: its GPU goes back
            if isinstance(e, SpawnRefused):
                e.holder = self._log_name
            await self._release(self.allocation_id, "the server failed to start")
            raise

    async def _join_group(self) -> str | None:
        """The session's group network made or found: its subnet; refused (503) when
        ``[sessions] group_subnets`` has no room left for it."""
        try:
            return await self.services.engine.group_network(self._group_network, self.settings.sessions.group_subnets)
        except NoGroupSubnet as e:
            raise SpawnRefused(
                503, f"Your session's group work has no network addresses left on this host ({e}). Tell an admin", why="group-subnets",
            ) from None

    async def create_object(self):
        """DockerSpawner's create, then (group work) the session's network joined before the start."""
        created = await super().create_object()
        if self._group_network:  # classmates find the server by its person's name there (a DNS name) when it is one
            alias = self.user.name if DNS_LABEL.match(self.user.name) and not self.name else ""
            await self.services.engine.join_network(self._group_network, created["Id"], alias)
        return created

    async def _stopped_while_starting(self) -> str | None:
        """Why the starting container can no longer answer (it ended: its exit status and last output
        line, e.g. gpuhub-start's "network rules were not in place"; or it is gone, removed as it ended),
        or None while it runs (or where the engine cannot say)."""
        if not self.services.engine.runs_jobs:
            return None  # a Swarm's tasks: the engine cannot say
        state = await self.services.engine.container_state(self.container_name)
        if state is not None and state.running:
            return None
        if state is None:
            why = "it ended and was removed, so its output is gone"
            if policy_for(self.settings) is not None:
                why += (f"; with [network] isolation a container ends when gpuhub-netguard has not written its network rules"
                        f" within {self.settings.network.rules_wait} s: is the netguard service running on this host?")
        else:
            lines = (await self.services.engine.container_output(self.container_name, 4000)).strip().splitlines()
            why = f"exit status {state.exit_code}" + (f": {lines[-1][:500]}" if lines else "")
        self.log.warning("gpuhub %s: the container stopped while starting: %s", self._log_name, why)
        return why

    async def use_spec(self, spec: containers.ContainerSpec, assignment) -> None:
        """Move the built container onto DockerSpawner's traits (the Swarm spawner builds a service)."""
        self.mem_limit = spec.mem_limit
        self.cpu_limit = spec.cpu_limit
        self.volumes = spec.volumes
        self.extra_host_config = spec.host_config
        self.extra_create_kwargs = spec.create_kwargs
        self.environment = {**self.environment, **spec.environment}

    async def progress(self):
        """Spawn-page progress: the place in the GPU line, then in the line for a turn to start."""
        if self._progress is not None:
            async for event in self._progress.events():
                yield event

    # --- release: stop, a dead poll, a failed start; an admin's force-free stops the server -----------
    async def _release(self, allocation_id: int, reason: str) -> None:
        if allocation_id == self.allocation_id:
            self.allocation_id = 0
        if allocation_id and await self.services.allocation.release(allocation_id, reason):
            self.log.info("gpuhub %s: released allocation %d (%s)", self._log_name, allocation_id, reason)

    async def stop(self, now=False):
        allocation_id = self.allocation_id  # DockerSpawner's stop clears the state, this id included
        await super().stop(now)
        if self._group_network:  # the last member's stop frees its addresses (an engine pool, or a /24 of group_subnets)
            await self.services.engine.remove_network(self._group_network)
        await self._release(allocation_id, "server stopped")
        await self.services.allocation.forget_waiter(self.user.name, self.name)  # a start cancelled in line

    async def server_status(self):
        """The engine's answer to "does the server still run?" (None: yes), as JupyterHub's ``poll``."""
        return await super().poll()

    async def poll(self):
        status = await self.server_status()
        if status is None and self._label_to_read:
            self._label_to_read = False
            adopted = self.services.engine.allocation_of(await self.get_object() or {})
            if adopted:
                self.allocation_id = adopted
                self.log.warning("gpuhub %s: adopted allocation %d from its container's label", self._log_name, adopted)
        if self.allocation_id:
            await self.services.allocation.ready()
            if status is None and not await self.services.allocation.still_held(self.allocation_id):
                status = f"its GPU allocation {self.allocation_id} was freed (by an admin, or its weekly GPU-hours ran out)"
            if status is not None:
                await self._release(self.allocation_id, f"server found stopped: {status}")
        return status
