"""GPUSpawner: DockerSpawner applying gpuhub's profiles, quotas and GPU allocations. Thin glue:
policy lives in ``profiles``, ``quotas``, ``allocator``, ``form`` and ``containers``; the hub-wide
GPU state in ``allocations.GpuPool``; this class moves their results onto DockerSpawner's traits and
hooks them into the spawner's life: start (wait in line, allocate), stop and a dead poll (release),
state (the allocation id beside the container id)."""

from __future__ import annotations

from dockerspawner import DockerSpawner
from traitlets import Any, Instance, Integer, default

from jupyterhub.utils import wait_for_http_server

from . import containers, form
from .admission import StartGate
from .allocations import ALLOCATION_LABEL, GpuPool
from .errors import ServerDidNotAnswer
from .profiles import choose_profile, gpu_request, session_name
from .sessions import status_text
from .settings import Settings
from .slugs import user_slug

STATE_KEY = "gpuhub_allocation"


class GPUSpawner(DockerSpawner):
    """Spawn the profile a user picked, with gpuhub's security defaults, a per-user home volume and
    the GPUs the allocator assigned.

    Registered as the ``gpuhub`` entry point of ``jupyterhub.spawners``. ``gpuhub.hubconfig``
    configures it from the site settings file; nothing here needs setting by hand.
    """

    site_settings = Instance(
        Settings,
        allow_none=True,
        help="""The parsed site settings (``gpuhub.settings.Settings``). Set by
        ``gpuhub.hubconfig.apply_site_settings`` from the settings file; set it yourself only when
        embedding gpuhub in another config, e.g. ``c.GPUSpawner.site_settings = load_settings(path)``.""",
    ).tag(config=True)

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

    _profile = None
    _gpu_request = None
    _session = None
    _ticket = None
    _start_wait: str | None = None  # the place in the line for a turn to start
    _turn_taken = False
    _label_read = False  # whether a running container's allocation label was read (see poll)

    @property
    def settings(self) -> Settings:
        if self.site_settings is None:
            raise RuntimeError("GPUSpawner.site_settings is not set: load the hub config through gpuhub.hubconfig")
        return self.site_settings

    @property
    def pool(self) -> GpuPool:
        return GpuPool.for_settings(self.settings)

    def _user_groups(self) -> list[str]:
        return [g.name for g in self.user.groups]

    async def _labelled_containers(self) -> list[dict]:
        return await self.docker("containers", all=True, filters={"label": ALLOCATION_LABEL})

    async def _pool_ready(self) -> GpuPool:
        await self.pool.ready(self._labelled_containers)
        return self.pool

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
        pool = await self._pool_ready()
        groups = self._user_groups()
        quota = await pool.quota_for(self.user.name, groups)
        requests = {p.name: r for p in self.settings.profiles if (r := gpu_request(p)) is not None}
        availability = {
            name: form.Availability(cap.text, cap.total >= requests[name].count, waiting)
            for name, (cap, waiting) in (await pool.capacities(requests)).items()
        }
        inventory = await pool.inventory()
        return form.render_form(
            self.settings,
            groups,
            quota.profiles.value,
            availability,
            form.gpu_source_text(inventory.label(), inventory.simulated, self.settings.gpus.exposure),
            await self._session_choices(pool),
        )

    async def _session_choices(self, pool: GpuPool) -> list[form.SessionChoice]:
        now, choices = pool.store.clock(), []
        for s in await pool.run(pool.sessions.sessions_of, self.user.name):
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

    async def apply_profile(self, user_options: dict) -> None:
        """Validate the request against the profiles, the classroom session it names (roster, window)
        and the user's quota; refuse with a 4xx naming why."""
        groups = self._user_groups()
        pool = await self._pool_ready()
        session = None
        if (name := session_name(user_options)) is not None:
            session = await pool.session_for_start(self.user.name, name)
        options = {} if user_options is None else user_options
        profile = choose_profile(self.settings, options, groups, session.profile if session else None)
        image = profile.image
        if user_options and user_options.get("image"):
            image = await self.check_allowed(user_options["image"])
        request = gpu_request(profile)
        await pool.check_quota(self.user.name, self.name, groups, profile, request)
        self._profile, self._gpu_request, self._session, self.image = profile, request, session, image
        self._start_wait, self._turn_taken = None, False
        # waiting in line (for a GPU, for a turn to start) must not count against the start itself
        self.start_timeout = (
            self.settings.spawner.start_timeout
            + self.settings.admission.queue_timeout
            + (self.settings.gpus.queue_timeout if request else 0)
        )

    # --- start: wait in line and allocate, then create the container with exactly those devices ------
    def _set_ticket(self, ticket) -> None:
        self._ticket = ticket

    async def start(self):
        self._label_read = True  # this process starts it: the state will hold its allocation id
        assignment = None
        if self._gpu_request is not None:
            allocation = await self.pool.acquire(
                holder=self._log_name,
                username=self.user.name,
                server_name=self.name,
                groups=self._user_groups(),
                profile=self._profile,
                request=self._gpu_request,
                on_ticket=self._set_ticket,
                session=self._session,
            )
            self.allocation_id = allocation.id
            inventory = await self.pool.inventory()
            assignment = containers.GpuAssignment(
                allocation.id,
                allocation.mode,
                allocation.uuids,
                allocation.memory_bytes,
                self.settings.gpus.exposure,
                inventory.simulated,
            )
        try:
            spec = containers.build(
                self.settings, self._profile, self.user.name, self.image, assignment, self._session, self.name
            )
            self.log.info(
                "gpuhub %s: profile %s, image %s, home volume %s, GPUs %s",
                self._log_name,
                self._profile.name,
                spec.image,
                spec.home_volume,
                ",".join(assignment.uuids) if assignment else "none",
            )
            self.mem_limit = spec.mem_limit
            self.cpu_limit = spec.cpu_limit
            self.volumes = spec.volumes
            self.extra_host_config = spec.host_config
            self.extra_create_kwargs = spec.create_kwargs
            self.environment = {**self.environment, **spec.environment}
            gate = StartGate.for_process(self.settings.admission.max_concurrent_starts)
            async with gate.turn(self._log_name, self.settings.admission.queue_timeout, self._set_start_wait):
                self.log.info("gpuhub %s: start turn taken (%d of at most %d starting)", self._log_name, gate.running, gate.slots)
                ip, port = await super().start()
                # the turn ends when the server answers: booting it is most of a start's load
                try:
                    await wait_for_http_server(f"http://{ip}:{port}/", timeout=self.http_timeout)
                except TimeoutError:
                    raise ServerDidNotAnswer(
                        f"Your server's container started, but the server in it did not answer within"
                        f" {self.http_timeout} seconds, so it was stopped (files kept). Try again; if it"
                        f" happens again, tell an admin: the image {self.image!r} may be broken"
                    ) from None
            return ip, port
        except BaseException:
            await self._release("the server failed to start")
            raise

    def _set_start_wait(self, message: str | None) -> None:
        self._start_wait = message
        self._turn_taken = message is None

    async def progress(self):
        """Spawn-page progress: the place in the GPU line, then in the line for a turn to start."""
        last = None
        while True:
            if self._ticket is not None:
                event = {"progress": 10, "message": self.pool.queue.describe(self._ticket)}
            elif self._start_wait is not None:
                event = {"progress": 30, "message": self._start_wait}
            elif self.allocation_id:
                event = {"progress": 50, "message": "GPU assigned; starting your server"}
            else:
                event = {"progress": 50, "message": "Starting your server"}
            if event != last:
                yield event
                last = event
            if self._turn_taken:
                return
            await self.pool.queue.wait_for_change(1.0)

    # --- release: stop, a dead poll, a failed start; an admin's force-free stops the server -----------
    async def _release(self, reason: str) -> None:
        allocation_id, self.allocation_id = self.allocation_id, 0
        if allocation_id and await self.pool.release(allocation_id, reason):
            self.log.info("gpuhub %s: released allocation %d (%s)", self._log_name, allocation_id, reason)

    async def _adopt_labelled_allocation(self) -> None:
        """A start the hub did not see finish (it was killed while the container started) left no
        allocation id in the state; the container's label names it. Read once per spawner."""
        self._label_read = True
        container = await self.get_object() or {}
        label = ((container.get("Config") or {}).get("Labels") or {}).get(ALLOCATION_LABEL, "")
        if label.isdigit():
            self.allocation_id = int(label)
            self.log.warning("gpuhub %s: adopted allocation %d from its container's label", self._log_name, self.allocation_id)

    async def stop(self, now=False):
        allocation_id = self.allocation_id
        await super().stop(now)  # clears the state, allocation id included
        self.allocation_id = allocation_id
        await self._release("server stopped")

    async def poll(self):
        status = await super().poll()
        if status is None and not self.allocation_id and not self._label_read:
            await self._adopt_labelled_allocation()
        if self.allocation_id:
            pool = await self._pool_ready()
            if status is None and not await pool.still_held(self.allocation_id):
                status = f"its GPU allocation {self.allocation_id} was freed (by an admin, or its weekly GPU-hours ran out)"
            if status is not None:
                await self._release(f"server found stopped: {status}")
        return status
