"""The schema of the site settings file: every table, every key with its type, help text, an example
and what is accepted, and each table's rules that span keys (``check``).

One TOML file (``settings.toml``; ``GPUHUB_SETTINGS`` names another) holds what a site decides:
profiles, allowed images, the home volume, dataset mounts, GPUs, quotas, the authenticator and the
database. The reference in ``docs/admin.md`` is generated from this module
(``python -m gpuhub.config.docgen``); the loading is ``gpuhub.config.sections``.

Validate a file without starting the hub::

    gpuhub-settings check settings.toml
"""

from __future__ import annotations

import os
import re
from pathlib import PurePosixPath

from traitlets import Bool, Enum, Float, Instance, Integer, List, TraitError, TraitType, Unicode, validate

from .access import Https
from .directory import Ldap, Oidc
from .borrowing import Borrowing
from .fairness import Fairness
from .ssh import Ssh
from .jobs import Jobs
from .network import GROUP_SUBNET_PREFIX, Network, ipv4_network
from .sections import MiB, Section, SettingsError, Size, optional_absolute_path, parse_toml

__all__ = ["Settings", "SettingsError", "load_settings", "parse_settings"]

SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
SLUG_ACCEPTED = "lowercase letters, digits and '-', starting with a letter or digit, at most 63 characters"
# Docker's rule for volume names.
VOLUME_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
FORBIDDEN_SOURCES = ("/var/run/docker.sock", "/run/docker.sock")
MIG_PROFILE = re.compile(r"^\d+g\.\d+gb(\+me)?$")


def _slug(proposal, what):
    value = proposal["value"]
    if not SLUG.match(value):
        raise TraitError(f"{what} {value!r} is not a slug")
    return value


class Hub(Section):
    section_help = "The hub process: where it listens, its database, who logs in and how."

    bind_url = Unicode(
        "http://:8000",
        help="""Public URL the proxy listens on. Example: ``"http://:8000"`` (every interface, port 8000),
        ``"http://127.0.0.1:8000/jupyter/"`` (loopback, under a prefix). Put TLS in front of it
        (a reverse proxy) for any deployment reachable from other machines.""",
    ).tag(accepted="an http:// or https:// URL, e.g. \"http://:8000\"")

    hub_bind_url = Unicode(
        "http://127.0.0.1:8081",
        help="""Where the hub's own API listens. The single-user containers call it, so it must be
        reachable from the Docker network they run on: in docker-compose this is
        ``"http://0.0.0.0:8081"``; for a hub on the host, the bridge gateway, e.g.
        ``"http://172.17.0.1:8081"``.""",
    ).tag(accepted="an http:// URL with host and port, e.g. \"http://0.0.0.0:8081\"")

    hub_connect_url = Unicode(
        "",
        help="""URL the single-user containers use to reach the hub API, when it differs from
        ``hub_bind_url``. Example: ``"http://hub:8081"`` (the hub's service name on the compose network).
        Empty: the containers use ``hub_bind_url``.""",
    ).tag(accepted="empty, or an http:// URL with host and port")

    db_url = Unicode(
        "sqlite:///jupyterhub.sqlite",
        help="""The hub's database (users, servers, tokens, and gpuhub's allocations, quotas, sessions and
        usage records). SQLite by default; PostgreSQL for larger sites. Examples: ``"sqlite:////srv/gpuhub/data/jupyterhub.sqlite"``,
        ``"postgresql://gpuhub:secret@postgres:5432/gpuhub"``. A relative SQLite path is relative
        to the hub's working directory.""",
    ).tag(accepted="a sqlite:/// or postgresql:// URL")

    state_dir = Unicode(
        "",
        help="""Directory for the hub's secrets and state (cookie secret, proxy pid). It must survive
        restarts. Example: ``"/srv/gpuhub/data"``. Empty: the working directory.""",
    ).tag(accepted="empty or an absolute path")

    authenticator = Unicode(
        "native",
        help="""How people log in. ``"native"`` (the default): gpuhub's NativeAuthenticator with a first
        admin bootstrapped at start (see ``admin_users``); people sign up and an admin approves them.
        ``"ldap"``: LDAP or Active Directory, set in ``[ldap]``; ``"oidc"``: an OpenID Connect
        provider, set in ``[oidc]``; with both, the directory's groups become JupyterHub groups at
        each login (group quotas, profiles and sessions follow them).
        Any other JupyterHub authenticator by entry-point name or import path, e.g. ``"github"``:
        configure it in a ``jupyterhub_config.d/*.py`` file (docs/admin.md). ``"dummy"`` is refused:
        it lets anyone in with any password.""",
    ).tag(accepted='"native", "ldap", "oidc", or an authenticator entry-point name or import path other than "dummy"')

    admin_users = List(
        Unicode(),
        default_value=["admin"],
        help="""Usernames with JupyterHub admin rights. With the native authenticator the first of them is
        created at the hub's first start with the password in ``GPUHUB_ADMIN_PASSWORD``, or a generated
        one printed once in the hub log. Example: ``["admin", "alice"]``.""",
    ).tag(accepted="a list of usernames, e.g. [\"admin\"]")

    gpu_admins = List(
        Unicode(),
        default_value=None,
        allow_none=True,
        help="""Users given the ``gpuhub-admin`` role: the GPU admin page and API (see every GPU, set
        quotas, force-free a GPU, take a spawn out of the line) and the hub's ``/metrics``. Unset: the
        ``admin_users``. Example: ``["admin", "lab-manager"]``.""",
    ).tag(accepted="a list of usernames")

    gpu_viewers = List(
        Unicode(),
        default_value=[],
        help="""Users given the ``gpuhub-viewer`` role: the GPU admin page and API read-only (GPUs, quotas,
        usage and its CSV, the line). Example: ``["finance"]``.""",
    ).tag(accepted="a list of usernames")

    instructors = List(
        Unicode(),
        default_value=[],
        help="""Users given the ``gpuhub-instructor`` role: they create classroom sessions (roster, time
        windows, profile, reserved GPUs) on the sessions page (``/hub/gpuhub/sessions``), the API and
        ``gpuhub session``, and manage the sessions they are instructors of (prewarm, stop all). GPU
        admins manage every session. Example: ``["prof-smith"]``.""",
    ).tag(accepted="a list of usernames")

    @validate("bind_url", "hub_bind_url")
    def _validate_url(self, proposal):
        value = proposal["value"]
        if not re.match(r"^https?://[^/\s]*(:\d+)?(/.*)?$", value):
            raise TraitError("not an http(s) URL")
        return value

    @validate("hub_connect_url")
    def _validate_connect_url(self, proposal):
        value = proposal["value"]
        if value and not re.match(r"^https?://[^/\s:]+:\d+/?$", value):
            raise TraitError("not an http(s) URL with host and port")
        return value

    @validate("db_url")
    def _validate_db_url(self, proposal):
        value = proposal["value"]
        if not re.match(r"^(sqlite|postgresql(\+\w+)?)://", value):
            raise TraitError("not a database URL gpuhub supports")
        return value

    @validate("state_dir")
    def _validate_state_dir(self, proposal):
        return optional_absolute_path(proposal["value"])

    @validate("authenticator")
    def _validate_authenticator(self, proposal):
        value = proposal["value"].strip()
        if value.lower() in {"dummy", "jupyterhub.auth.dummyauthenticator"} or value.endswith(
            "DummyAuthenticator"
        ):
            raise TraitError(
                "the dummy authenticator accepts any password; it is for tests only"
                " (a test's jupyterhub_config.d file may set it)"
            )
        if not value:
            raise TraitError("empty")
        return value

    @validate("admin_users")
    def _validate_admin_users(self, proposal):
        value = proposal["value"]
        for name in value:
            if not name.strip() or name != name.strip():
                raise TraitError(f"admin username {name!r} is empty or has surrounding spaces")
        return value


class Spawner(Section):
    section_help = "How single-user containers are made: network, images, home volume, limits."

    network = Unicode(
        "gpuhub",
        help="""Docker network the single-user containers join; the hub must reach them on it.
        Example: ``"gpuhub"`` (docker-compose's network), ``"bridge"`` (a hub on the host).
        ``"host"`` is refused: a user container must not share the host's network.""",
    ).tag(accepted="a Docker network name other than \"host\"")

    allowed_images = List(
        Unicode(),
        default_value=["gpuhub/pytorch-cuda:cpu"],
        help="""The only images a server may run. Every profile's image must be listed; a spawn request
        naming any other image is refused with 400 (cf. CVE-2023-48311: any pullable image).
        Example: ``["gpuhub/pytorch-cuda:2.7-cuda12.6", "gpuhub/pytorch-cuda:cpu"]``.""",
    ).tag(accepted="a non-empty list of image references")

    pull_policy = Enum(
        ["ifnotpresent", "always", "never"],
        default_value="ifnotpresent",
        help="""When to pull an image before a spawn: ``"ifnotpresent"`` (default), ``"always"``, or
        ``"never"`` (hosts with no registry: images must be built locally).""",
    ).tag(accepted='"ifnotpresent", "always" or "never"')

    home_volume = Unicode(
        "gpuhub-home-{slug}",
        help="""Name of the persistent Docker volume holding each user's home. ``{slug}`` is replaced by a
        name made from the username that is safe for Docker and unique per user (a readable part plus a
        hash of the exact username), so two usernames never share a volume. Example:
        ``"gpuhub-home-{slug}"`` gives ``gpuhub-home-alice-2bd806c9b4a1f3e2``.""",
    ).tag(accepted='a Docker volume name containing "{slug}"')

    container_name = Unicode(
        "gpuhub-{slug}",
        help="""Name of each user's container, with ``{slug}`` as in ``home_volume``.
        Example: ``"gpuhub-{slug}"``.""",
    ).tag(accepted='a Docker container name containing "{slug}"')

    home_path = Unicode(
        "/home/jovyan",
        help="""Where the home volume is mounted in the container: the image user's home.
        Example: ``"/home/jovyan"`` (gpuhub's images).""",
    ).tag(accepted="an absolute path")

    uid = Integer(
        1000,
        help="""User id the single-user server runs as. Root (0) is refused. Example: ``1000``.""",
        min=1,
        max=65534,
    )

    pids_limit = Integer(
        4096,
        help="""Maximum number of processes in a user container (a fork bomb stops there).
        Example: ``4096``.""",
        min=64,
        max=1048576,
    )

    start_timeout = Integer(
        180,
        help="""Seconds a spawn may take before it fails (image start plus JupyterLab start).""",
        min=10,
        max=3600,
    )

    default_url = Unicode(
        "/lab",
        help="""Page users land on in their server. Example: ``"/lab"``.""",
    ).tag(accepted="a path starting with /")

    @validate("network")
    def _validate_network(self, proposal):
        value = proposal["value"]
        if value == "host" or not VOLUME_NAME.match(value):
            raise TraitError("not a usable network name")
        return value

    @validate("allowed_images")
    def _validate_allowed_images(self, proposal):
        value = proposal["value"]
        if not value:
            raise TraitError("the list is empty")
        for image in value:
            if not re.match(r"^[a-z0-9][a-z0-9._/:@-]*$", image):
                raise TraitError(f"{image!r} is not an image reference")
        return value

    @validate("home_volume", "container_name")
    def _validate_name_template(self, proposal):
        value = proposal["value"]
        if "{slug}" not in value or not VOLUME_NAME.match(value.replace("{slug}", "x")):
            raise TraitError("not a Docker name template with {slug}")
        return value

    @validate("home_path")
    def _validate_home_path(self, proposal):
        return _absolute_path(proposal["value"])


    @validate("default_url")
    def _validate_default_url(self, proposal):
        if not proposal["value"].startswith("/"):
            raise TraitError("not a path")
        return proposal["value"]


def _absolute_path(value):
    path = PurePosixPath(value)
    if not path.is_absolute() or ".." in path.parts:
        raise TraitError("not an absolute path without '..'")
    return value


class Dataset(Section):
    section_help = "A read-only dataset mounted into the servers of the profiles that name it."

    name = Unicode(help="Name profiles use to refer to it. Example: ``\"imagenet\"``.").tag(
        accepted=SLUG_ACCEPTED
    )
    source = Unicode(
        help="""A Docker volume name, or an absolute host path. Example: ``"imagenet-v2"`` or
        ``"/srv/datasets/imagenet"``. The Docker socket is refused.""",
    ).tag(accepted="a Docker volume name or an absolute host path (not the Docker socket)")
    target = Unicode(
        help="Mount point in the container. Example: ``\"/datasets/imagenet\"``.",
    ).tag(accepted="an absolute path")

    @validate("name")
    def _validate_name(self, proposal):
        return _slug(proposal, "dataset name")

    @validate("source")
    def _validate_source(self, proposal):
        value = proposal["value"]
        if value.startswith("/"):
            _absolute_path(value)
            if value.rstrip("/") in FORBIDDEN_SOURCES or value == "/" or "docker.sock" in value:
                raise TraitError("mounting the host root or the Docker socket would give users the host")
        elif not VOLUME_NAME.match(value):
            raise TraitError("neither a volume name nor an absolute path")
        return value

    @validate("target")
    def _validate_target(self, proposal):
        return _absolute_path(proposal["value"])

    def check(self, root: Settings, where: str) -> None:
        if not self.source or not self.target:
            raise SettingsError(f"datasets[{self.name}]: source and target are required")


class Profile(Section):
    section_help = "A choice on the spawn form: image, memory, CPU, shared memory, GPUs, datasets."

    name = Unicode(help="Identifier used in the form and the API. Example: ``\"cpu-small\"``.").tag(
        accepted=SLUG_ACCEPTED
    )
    display_name = Unicode(
        "", help="Title shown on the spawn form. Example: ``\"CPU · 2 cores · 4 GB\"``. Default: the name."
    ).tag(accepted="text")
    description = Unicode("", help="One line under the title on the form.").tag(accepted="text")
    image = Unicode(
        help="Image the server runs; must be in ``spawner.allowed_images``. Example: ``\"gpuhub/pytorch-cuda:cpu\"``.",
    ).tag(accepted="an image listed in spawner.allowed_images")
    mem_limit = Size(
        allow_none=False,
        default_value=4 * 1024**3,
        help="""Memory cap of the container (no swap beyond it). Example: ``"16G"``, ``"512M"``.""",
        min=128 * MiB,
    ).tag(accepted="a size of at least 128M, e.g. \"4G\" or \"512M\"")
    cpu_limit = Float(
        2.0, help="""CPUs the container may use (a CFS quota). Example: ``8`` or ``0.5``.""",
        min=0.01,
        max=1024,
    ).tag(accepted="a number of CPUs from 0.01 to 1024")
    shm_size = Size(
        allow_none=False,
        default_value=1024**3,
        min=64 * MiB,
        help="""Size of ``/dev/shm``: PyTorch DataLoader workers pass batches through it (Docker's 64M
        default breaks them). At most ``mem_limit``. Example: ``"2G"``.""",
    ).tag(accepted="a size of at least 64M and at most mem_limit")
    gpus = Integer(
        0,
        help="""GPUs the profile asks for: 0 for CPU only. ``"exclusive"`` profiles may ask for several
        whole GPUs (NVLink-connected sets are preferred); ``"shared"`` and ``"mig"`` profiles take
        exactly 1. Example: ``1``.""",
        min=0,
        max=64,
    )
    gpu_mode = Enum(
        ["none", "exclusive", "shared", "mig"],
        default_value="none",
        help="""How GPUs are given: ``"exclusive"`` (whole GPUs nobody else holds), ``"shared"`` (a memory
        budget on a GPU shared by up to ``gpus.max_shares_per_gpu`` users: soft isolation, the budget
        is applied to PyTorch at kernel start), ``"mig"`` (a MIG instance, by UUID: hard isolation) or
        ``"none"`` (CPU only: the container sees no GPU, ``NVIDIA_VISIBLE_DEVICES=void``).""",
    ).tag(accepted='"none", "exclusive", "shared" or "mig"')
    gpu_memory = Size(
        allow_none=True,
        default_value=None,
        help="""For ``gpu_mode = "shared"``: the GPU memory budget. Example: ``"20G"``.""",
    ).tag(accepted="a size, e.g. \"20G\"")
    mig_profile = Unicode(
        "",
        help="""For ``gpu_mode = "mig"``: the MIG profile to hand out, as NVML names it. Example:
        ``"1g.10gb"``, ``"3g.40gb"``. Empty: any free MIG slice.""",
    ).tag(accepted='empty or a MIG profile such as "1g.10gb"')
    datasets = List(
        Unicode(),
        help="Names of ``[[datasets]]`` mounted read-only. Example: ``[\"imagenet\"]``.",
    ).tag(accepted="a list of dataset names defined in [[datasets]]")
    groups = List(
        Unicode(),
        help="""JupyterHub groups whose members may use the profile; empty means everyone.
        Example: ``["ml-lab"]``.""",
    ).tag(accepted="a list of group names")
    default = Bool(False, help="Preselected on the form. At most one profile sets it.").tag(
        accepted="true or false"
    )

    @validate("name")
    def _validate_name(self, proposal):
        return _slug(proposal, "profile name")

    @validate("mig_profile")
    def _validate_mig_profile(self, proposal):
        value = proposal["value"]
        if value and not MIG_PROFILE.match(value):
            raise TraitError("not a MIG profile name")
        return value

    def where(self, path: str, index: int) -> str:
        return f"{path}[{index}] ({self.name})" if self.name else f"{path}[{index}]"

    def check(self, root: Settings, where: str) -> None:
        if not self.name:
            raise SettingsError(f"{where}.name: missing. Accepted: {SLUG_ACCEPTED}")
        earlier = root.profiles[: root.profiles.index(self)]
        if any(p.name == self.name for p in earlier):
            raise SettingsError(f"{where}.name: {self.name!r} is used by two profiles; names must be unique")
        allowed = root.spawner.allowed_images
        if self.image not in allowed:
            raise SettingsError(
                f"{where}.image = {self.image!r} is not accepted: not in spawner.allowed_images."
                f" Accepted: {', '.join(allowed)}"
            )
        if self.shm_size > self.mem_limit:
            raise SettingsError(
                f"{where}.shm_size = {self.shm_size} bytes is not accepted: larger than mem_limit"
                f" ({self.mem_limit} bytes). Accepted: a size from 64M to mem_limit"
            )
        if (self.gpus > 0) != (self.gpu_mode != "none"):
            raise SettingsError(
                f"{where}: gpus = {self.gpus} with gpu_mode = {self.gpu_mode!r} is not accepted."
                ' Accepted: gpus = 0 with gpu_mode = "none", or gpus >= 1 with "exclusive", "shared" or "mig"'
            )
        if self.gpu_mode == "shared" and not self.gpu_memory:
            raise SettingsError(f'{where}.gpu_memory: required when gpu_mode = "shared", e.g. "20G"')
        if self.gpu_mode in ("shared", "mig") and self.gpus != 1:
            raise SettingsError(f"{where}.gpus = {self.gpus} is not accepted with gpu_mode = {self.gpu_mode!r}. Accepted: 1")
        if self.mig_profile and self.gpu_mode != "mig":
            raise SettingsError(f'{where}.mig_profile: only used with gpu_mode = "mig"; remove it or set the mode')
        dataset_names = sorted(d.name for d in root.datasets)
        for name in self.datasets:
            if name not in dataset_names:
                raise SettingsError(
                    f"{where}.datasets: {name!r} is not a [[datasets]] name."
                    f" Accepted: {', '.join(dataset_names) or 'none defined'}"
                )
        if self.default and any(p.default for p in earlier):
            raise SettingsError("profiles: more than one profile sets default = true; at most one may")

    @property
    def title(self) -> str:
        return self.display_name or self.name

    @property
    def wants_gpu(self) -> bool:
        return self.gpus > 0 or self.gpu_mode != "none"


class Gpus(Section):
    section_help = "The GPUs the hub hands out: where their inventory comes from and how containers get them."

    inventory = Unicode(
        "auto",
        help="""Where the hub learns which GPUs (and MIG slices) this host has.
        ``"nvml"``: NVIDIA's management library (nvidia-ml-py) on the hub's host; the hub does not start
        without it. ``"auto"`` (default): NVML when it loads, else no GPUs (GPU profiles show "no GPU on
        this host"). ``"none"``: no GPUs. ``"file:/srv/gpuhub/inventory.toml"``: an inventory file
        describing GPUs the host may not have, for CI and demos; everything fed from it is labelled
        *simulated* (see docs/admin.md, "Simulated inventory").""",
    ).tag(accepted='"auto", "nvml", "none" or "file:" followed by an absolute path')

    exposure = Enum(
        ["device_requests", "env-only"],
        default_value="device_requests",
        help="""How a container is given its GPUs. ``"device_requests"`` (production): Docker device
        requests naming the assigned device UUIDs (never a count), for the NVIDIA container runtime,
        plus matching ``NVIDIA_VISIBLE_DEVICES`` and ``CUDA_VISIBLE_DEVICES``. ``"env-only"``: only the
        variables, for hosts without the NVIDIA runtime (CI, demos); the container does not really get
        the device, and the spawn form and labels say so.""",
    ).tag(accepted='"device_requests" or "env-only"')

    max_shares_per_gpu = Integer(
        4,
        help="""How many ``shared`` servers may share one GPU (each also needs its memory budget to fit).
        Example: ``4``.""",
        min=1,
        max=64,
    )

    queue_timeout = Integer(
        600,
        help="""Seconds a GPU spawn may wait in line for a device before it is given up with a message.
        The spawn's own ``spawner.start_timeout`` starts counting after the GPU is assigned.
        Example: ``600`` (10 minutes); ``0`` refuses at once when nothing is free.""",
        min=0,
        max=86400,
    )

    overtake_limit = Integer(
        3,
        help="""How many later GPU requests of another kind may start ahead of one that waits, before
        what frees up is kept for it. The lines (exclusive, shared, each MIG profile) are served in
        arrival order across kinds; a later request that fits (a shared slot on a half-used GPU) may go
        ahead of an earlier one that does not (an exclusive request needing a whole GPU), but only this
        many times: after that, nobody behind the earlier request on the same GPUs starts until it has
        its GPU. ``0``: strict arrival order across kinds (a free shared slot stays unused while an
        earlier exclusive request waits). Example: ``3``.""",
        min=0,
        max=1000,
    )

    @validate("inventory")
    def _validate_inventory(self, proposal):
        value = proposal["value"]
        if value in ("auto", "nvml", "none"):
            return value
        if value.startswith("file:"):
            _absolute_path(value[len("file:"):])
            return value
        raise TraitError("not an inventory source")


class Quota(Section):
    section_help = """Limits on what a user may hold: the default (no ``user`` or ``group``), a group's,
    or one user's. A user's limit comes from their own block, else the most generous of their groups',
    else the default, else none; the database (set by admins through gpuhub's API) overrides this file
    at each level."""

    user = Unicode("", help="The user this block limits. Example: ``\"alice\"``.").tag(accepted="a username")
    group = Unicode("", help="The JupyterHub group this block limits. Example: ``\"ml-lab\"``.").tag(
        accepted="a group name"
    )
    max_gpus = Integer(
        None,
        allow_none=True,
        help="""Whole GPUs (exclusive mode) a user may hold at once, over all their servers.
        Example: ``2``. Unset: inherited from the next level.""",
        min=0,
        max=1024,
    ).tag(label="Max GPUs")
    max_shared_slices = Integer(
        None,
        allow_none=True,
        help="""Shared-GPU slices and MIG slices a user may hold at once. Example: ``1``. Unset: inherited.""",
        min=0,
        max=1024,
    ).tag(label="Max slices")
    gpu_hours_per_week = Float(
        None,
        allow_none=True,
        help="""GPU-hours a user may use per week, over all their servers: one whole GPU for one hour is
        1 GPU-hour; a MIG slice or a shared-GPU budget counts its fraction of the GPU (see
        ``[accounting] week`` for which week). A start is refused once it is used up, with what remains
        in the message; running servers are warned, then stopped, as ``[accounting] running_servers``
        says. Example: ``40``. Unset: inherited.""",
        min=0,
        max=168000,
    ).tag(accepted="a number of hours from 0 to 168000", label="GPU-hours/week")
    max_memory = Size(
        None,
        allow_none=True,
        help="""Memory ceiling: profiles whose ``mem_limit`` is above it cannot be started. Example:
        ``"64G"``. Unset: inherited.""",
        min=0,
        max=1024**5,
    ).tag(accepted='a size from 0 to 1P, e.g. "64G"', label="Max memory", placeholder="64G")
    max_cpus = Float(
        None,
        allow_none=True,
        help="""CPU ceiling: profiles whose ``cpu_limit`` is above it cannot be started. Example: ``16``.
        Unset: inherited.""",
        min=0,
        max=1024,
    ).tag(accepted="a number of CPUs from 0 to 1024", label="Max CPUs")
    profiles = List(
        Unicode(),
        default_value=None,
        allow_none=True,
        help="""The profiles a user may start. Example: ``["cpu-small", "gpu-shared"]``. Unset: inherited
        (at the last level: every profile their groups open).""",
    ).tag(accepted="a list of profile names", label="Profiles", placeholder="all: leave empty")

    @classmethod
    def limit_names(cls) -> tuple[str, ...]:
        """The limits a quota sets (every key but ``user`` and ``group``), in the order they are written
        here, which is the order pages and tables show them."""
        return tuple(n for n, v in vars(cls).items() if isinstance(v, TraitType) and n not in ("user", "group"))

    @property
    def scope(self) -> tuple[str, str]:
        if self.user:
            return ("user", self.user)
        if self.group:
            return ("group", self.group)
        return ("default", "")

    def describe(self) -> str:
        kind, name = self.scope
        return f"{kind} {name!r}" if name else "the default"

    def check(self, root: Settings, where: str) -> None:
        if self.user and self.group:
            raise SettingsError(f"{where}: sets both user and group. Accepted: one of them, or neither (the default)")
        if any(q.scope == self.scope for q in root.quotas[: root.quotas.index(self)]):
            raise SettingsError(f"{where}: a second [[quotas]] block for {self.describe()}; merge them into one")
        names = sorted(p.name for p in root.profiles)
        for name in self.profiles or ():
            if name not in names:
                raise SettingsError(f"{where}.profiles: {name!r} is not a profile name. Accepted: {', '.join(names)}")


class Accounting(Section):
    section_help = """GPU-hours accounting: which week the ``gpu_hours_per_week`` quotas count, what happens
    to running servers that use up their hours, and the labels of the Prometheus metrics."""

    week = Enum(
        ["rolling", "calendar"],
        default_value="rolling",
        help="""Which week ``gpu_hours_per_week`` counts: ``"rolling"`` (default): the last 7 × 24 hours,
        so hours come back a week after they were used; ``"calendar"``: since Monday 00:00 UTC, so
        every budget starts afresh each Monday.""",
    ).tag(accepted='"rolling" or "calendar"')

    running_servers = Enum(
        ["off", "warn", "stop"],
        default_value="warn",
        help="""What happens to a running GPU server whose user's weekly GPU-hours run out. ``"off"``:
        nothing (only new starts are refused). ``"warn"`` (default): the user is warned
        ``warn_before`` seconds ahead and when the hours are used up (in JupyterLab's status bar and
        the hub log). ``"stop"``: warned, then stopped when the hours are used up, its GPU freed;
        the files in its home stay.""",
    ).tag(accepted='"off", "warn" or "stop"')

    warn_before = Integer(
        900,
        help="""Seconds before the weekly GPU-hours run out (at the current rate) when the user is
        warned. Example: ``900`` (15 minutes).""",
        min=0,
        max=86400,
    )

    check_interval = Integer(
        60,
        help="""Seconds between two checks of running servers against the weekly GPU-hours; also how
        often the Prometheus figures are refreshed. Example: ``60``.""",
        min=2,
        max=3600,
    )

    metrics_max_users = Integer(
        100,
        help="""The ``user`` label of ``gpuhub_gpu_seconds_total`` names at most this many users, those
        with the most GPU-seconds; the rest are summed under ``user="(others)"``. Bounds the metric's
        cardinality on hubs with thousands of accounts. Example: ``100``.""",
        min=0,
        max=10000,
    )

    metrics_max_groups = Integer(
        50,
        help="""The same bound for the ``group`` label (the rest under ``group="(others)"``). Example: ``50``.""",
        min=0,
        max=10000,
    )


class Admission(Section):
    section_help = """Admission control: how many servers may be starting at once. A class of 30 pressing
    Start together otherwise makes the engine create 30 containers and boot 30 Python servers at
    once, and every one of them gets slower; further starts wait in line, with their place shown on
    the spawn page, and get their server in turn instead of an error."""

    max_concurrent_starts = Integer(
        4,
        help="""Servers that may be starting at once: from container creation until the server answers
        HTTP. Size it to the host: about the number of CPU cores the hub's host can spare for starting
        servers. Example: ``4``.""",
        min=1,
        max=256,
    )

    queue_timeout = Integer(
        900,
        help="""Seconds a start may wait for its turn before it is given up with a message (on top of
        ``spawner.start_timeout``, which counts from its turn). Example: ``900``.""",
        min=10,
        max=7200,
    )


class Sessions(Section):
    section_help = """Classroom and lab sessions (made by instructors at run time, stored in the database):
    how their rosters are read and how their servers are prewarmed and stopped by the
    ``gpuhub-agent`` service."""

    prewarm_concurrency = Integer(
        8,
        help="""Servers the agent asks the hub to start at once when it prewarms a session (each also
        waits its turn under ``[admission]``). Example: ``8``.""",
        min=1,
        max=128,
    )

    max_roster_rows = Integer(
        20000,
        help="""The most rows a roster CSV may have; a longer file is refused whole. Example: ``20000``.""",
        min=1,
        max=100000,
    )

    check_interval = Integer(
        15,
        help="""Seconds between two rounds of the ``gpuhub-agent`` service: due prewarms, requested
        prewarms and stops, and the ends of windows. Example: ``15``.""",
        min=1,
        max=600,
    )

    course_volume = Unicode(
        "gpuhub-course-{session}",
        help="""The Docker volume of a session's shared course folder (sessions with ``shared_folder``),
        mounted at ``/srv/course``: read-write for the session's instructors, read-only for its
        students. ``{session}`` is the session's name. On a Swarm with ``[engine] homes = "shared"``
        it is a folder of that name beside the homes (one for every node); with homes on the nodes,
        each node has its own volume. Example: ``"gpuhub-course-{session}"``.""",
    ).tag(accepted="a Docker volume name containing {session}")


    group_network = Unicode(
        "gpuhub-group-{session}",
        help="""The Docker network of a session with ``group_work`` (``[network] isolation``): its members'
        servers join it besides the users' network, and their rules let them reach each other there,
        and nobody else. Made at the first such start, removed with the session. ``{session}`` is the
        session's name. Example: ``"lab-group-{session}"``.""",
    ).tag(accepted="a Docker network name containing {session}")

    group_subnets = Unicode(
        "",
        help="""An IPv4 range the group networks' subnets are taken from, a /24 each (the first one no
        network of the engine overlaps), instead of the engine's default address pools: each network
        takes one of those whole, and Docker's defaults hold about 30 networks on a host (the users'
        network and compose's among them), so many group-work sessions at once need a range of their
        own. Empty: the engine's pools. Example: ``"10.199.0.0/16"`` (256 group networks at once).""",
    ).tag(accepted="empty, or an IPv4 network in CIDR form of /24 or larger, e.g. \"10.199.0.0/16\"")

    @validate("group_subnets")
    def _validate_group_subnets(self, proposal):
        if not proposal["value"]:
            return ""
        network = ipv4_network(proposal["value"])
        if int(network.split("/")[1]) > GROUP_SUBNET_PREFIX:
            raise TraitError(f"{network} is smaller than one group network (a /{GROUP_SUBNET_PREFIX})")
        return network

    @validate("course_volume", "group_network")
    def _validate_per_session_name(self, proposal):
        value = proposal["value"]
        if "{session}" not in value or not VOLUME_NAME.match(value.replace("{session}", "x")):
            raise TraitError(f"not a {'volume' if proposal['trait'].name == 'course_volume' else 'network'} name with {{session}} in it")
        return value


class Reclaim(Section):
    section_help = """GPU-idle reclaim by the ``gpuhub-agent`` service: a GPU server whose GPUs stayed idle
    (NVML utilisation) is warned in JupyterLab, then stopped and its GPU freed; its files stay.
    Unlike an HTTP-inactivity culler, this sees a notebook left holding a GPU with a browser tab
    open. CPU-only servers are never touched here (``[culling]`` stops any server after HTTP
    inactivity)."""

    idle_timeout = Integer(
        7200,
        help="""Seconds a GPU server's GPUs may stay idle before it is stopped; ``0`` turns reclaim off.
        Idle: each of its devices at or below ``busy_utilisation`` at every check. Example: ``7200``.""",
        min=0,
        max=2592000,
    ).tag(accepted="0 (off) or an integer from 60 to 2592000")

    session_idle_timeout = Integer(
        1800,
        help="""The same for servers started for a classroom session (the GPUs are wanted by the rest of
        the class); ``0``: as ``idle_timeout``. Example: ``1800``.""",
        min=0,
        max=2592000,
    ).tag(accepted="0 or an integer from 60 to 2592000")

    warn_before = Integer(
        600,
        help="""Seconds before the stop when the user is warned (JupyterLab's status bar, the hub log);
        using the GPU again cancels it. Example: ``600``.""",
        min=0,
        max=86400,
    )

    busy_utilisation = Integer(
        5,
        help="""A device above this utilisation (percent, NVML's over its last sample period) counts as
        busy. Example: ``5``.""",
        min=0,
        max=100,
    )

    require_inactive = Integer(
        0,
        help="""Also require this many seconds without JupyterHub activity (the user's browser, kernels)
        before a stop: protects someone editing code between GPU runs. ``0``: the GPU alone decides.
        Example: ``900``.""",
        min=0,
        max=2592000,
    )

    check_interval = Integer(
        60,
        help="""Seconds between two readings of the devices. Example: ``60``.""",
        min=1,
        max=3600,
    )

    activity = Unicode(
        "nvml",
        help="""Where device utilisation and per-process memory come from: ``"nvml"`` (the host's
        GPUs, processes mapped to containers through the engine), or ``"file:/path/activity.json"``,
        a SIMULATED reading for CI and demos, labelled as such in every message (see docs/admin.md,
        "GPU-idle reclaim"). On a Swarm (``[engine] kind = "swarm"``) every node's reporter reads it
        on its own node (``{node}`` in a file path is the node's hostname, e.g.
        ``"file:/srv/sim/{node}-activity.json"``) and the hub merges the readings; a node's
        per-process memory is not mapped to servers there.""",
    ).tag(accepted='"nvml" or "file:" followed by an absolute path')

    @validate("idle_timeout", "session_idle_timeout")
    def _validate_timeout(self, proposal):
        value = proposal["value"]
        if 0 < value < 60:
            raise TraitError("below 60 seconds (0 turns it off)")
        return value


    @validate("activity")
    def _validate_activity(self, proposal):
        value = proposal["value"]
        if value == "nvml":
            return value
        if value.startswith("file:"):
            _absolute_path(value[len("file:"):])
            return value
        raise TraitError("not an activity source")


class Culling(Section):
    section_help = """Plain inactivity culling by jupyterhub-idle-culler (run by the hub as the ``idle-culler``
    service, with only the scopes it needs): any server, CPU-only included, with no JupyterHub
    activity for ``timeout`` seconds is stopped; its files stay."""

    timeout = Integer(
        3600,
        help="""Seconds without activity before a server is stopped; ``0`` runs no culler. Example: ``3600``.""",
        min=0,
        max=2592000,
    ).tag(accepted="0 (off) or an integer from 60 to 2592000")

    every = Integer(
        300,
        help="""Seconds between two checks. Example: ``300``.""",
        min=10,
        max=86400,
    )

    max_age = Integer(
        0,
        help="""Stop servers older than this many seconds even when active; ``0``: no limit. Example: ``86400``.""",
        min=0,
        max=31536000,
    )

    concurrency = Integer(
        5,
        help="""Requests to the hub the culler makes at once. Example: ``5``.""",
        min=1,
        max=100,
    )

    @validate("timeout")
    def _validate_timeout(self, proposal):
        value = proposal["value"]
        if 0 < value < 60:
            raise TraitError("below 60 seconds (0 turns it off)")
        return value


class Engine(Section):
    section_help = """Where users' servers run: this host's Docker engine (default), or the nodes of a Docker
    Swarm whose manager the hub runs on (docs/scale-out.md)."""

    kind = Enum(
        ["docker", "swarm"],
        default_value="docker",
        help="""``"docker"`` (default): every server is a container on the hub's own Docker host.
        ``"swarm"``: every server is a Swarm service pinned to the node the allocator chose (its GPUs
        exposed by UUID through the nodes' default NVIDIA runtime); each GPU node runs gpuhub's node
        reporter (a global service the hub deploys), which reads ``[gpus] inventory`` on that node and
        reports it. ``[spawner] network`` must then be an attachable overlay network that the hub is
        on. Example: ``"swarm"``.""",
    ).tag(accepted='"docker" or "swarm"')

    report_interval = Integer(
        10,
        help="""Swarm: seconds between a node reporter's reports (its GPUs, their health and memory in
        use). A node that has not reported for three intervals gets no new servers until it reports
        again; node joins, drains and losses are seen at the same pace. Example: ``10``.""",
        min=2,
        max=300,
    )

    homes = Enum(
        ["node", "shared"],
        default_value="node",
        help="""Swarm: where users' homes live. ``"node"`` (default): the home volume
        (``[spawner] home_volume``) on the node a user's first server ran on; their later servers
        run on that node too (``gpuhub home move`` moves a home to another node).
        ``"shared"``: a folder per user under ``shared_homes``, a path every node mounts from shared
        storage (NFS, CephFS): servers may run on any node. Example: ``"shared"``.""",
    ).tag(accepted='"node" or "shared"')

    shared_homes = Unicode(
        "",
        help="""Swarm with ``homes = "shared"``: the path, the same on every node, of the shared
        storage holding one folder per user (created by the hub, owned by ``[spawner] uid``).
        Example: ``"/srv/nfs/gpuhub-homes"``.""",
    ).tag(accepted="an absolute path")

    reporter_image = Unicode(
        "",
        help="""Swarm: the image the hub's own services on the nodes run: the node reporter and, with
        ``[network] isolation``, gpuhub-netguard (they need gpuhub, nvidia-ml-py, docker-py and
        iptables: gpuhub's single-user images have all four). Default: the default profile's image,
        which the nodes pull anyway. Example: ``"registry.example.org:5000/gpuhub/pytorch-cuda:2.7-cuda12.6"``.""",
    ).tag(accepted="an image reference")

    node_docker_socket = Unicode(
        "/var/run/docker.sock",
        help="""Swarm with ``[network] isolation``: the Docker engine's socket on every node, as a path on
        the node. gpuhub-netguard, the global service the hub deploys on every node but its own
        (docker-compose.yml's ``netguard`` serves the hub's node), mounts it to see the users'
        containers start and to mark them once their network rules are in place. ``{node}`` is the
        node's hostname, for nodes whose engines listen on paths of their own (the test cluster's).
        Example: ``"/run/docker.sock"``.""",
    ).tag(accepted="an absolute path; {node} for the node's hostname")

    @validate("shared_homes")
    def _validate_shared_homes(self, proposal):
        value = proposal["value"]
        if value:
            _absolute_path(value)
        return value

    @validate("node_docker_socket")
    def _validate_node_docker_socket(self, proposal):
        _absolute_path(proposal["value"].replace("{node}", "node"))
        return proposal["value"]

    def check(self, root, where: str) -> None:
        if self.kind == "swarm" and self.homes == "shared" and not self.shared_homes:
            raise SettingsError(
                f"{where}.shared_homes: homes = \"shared\" needs the shared storage's path. Accepted: an absolute path", f"{where}.shared_homes"
            )


class Settings(Section):
    section_help = "The whole file."

    hub = Instance(Hub, args=(), help="The ``[hub]`` table.").tag(section=Hub, accepted="a [hub] table")
    spawner = Instance(Spawner, args=(), help="The ``[spawner]`` table.").tag(
        section=Spawner, accepted="a [spawner] table"
    )
    datasets = List(Instance(Dataset), help="``[[datasets]]`` blocks.").tag(
        section=[Dataset], accepted="[[datasets]] blocks"
    )
    profiles = List(Instance(Profile), help="``[[profiles]]`` blocks; at least one.").tag(
        section=[Profile], accepted="[[profiles]] blocks"
    )
    gpus = Instance(Gpus, args=(), help="The ``[gpus]`` table.").tag(section=Gpus, accepted="a [gpus] table")
    engine = Instance(Engine, args=(), help="The ``[engine]`` table.").tag(section=Engine, accepted="an [engine] table")
    quotas = List(Instance(Quota), help="``[[quotas]]`` blocks.").tag(section=[Quota], accepted="[[quotas]] blocks")
    accounting = Instance(Accounting, args=(), help="The ``[accounting]`` table.").tag(
        section=Accounting, accepted="an [accounting] table"
    )
    admission = Instance(Admission, args=(), help="The ``[admission]`` table.").tag(
        section=Admission, accepted="an [admission] table"
    )
    fairness = Instance(Fairness, args=(), help="The ``[fairness]`` table.").tag(
        section=Fairness, accepted="a [fairness] table"
    )
    borrowing = Instance(Borrowing, args=(), help="The ``[borrowing]`` table.").tag(
        section=Borrowing, accepted="a [borrowing] table"
    )
    sessions = Instance(Sessions, args=(), help="The ``[sessions]`` table.").tag(
        section=Sessions, accepted="a [sessions] table"
    )
    reclaim = Instance(Reclaim, args=(), help="The ``[reclaim]`` table.").tag(section=Reclaim, accepted="a [reclaim] table")
    culling = Instance(Culling, args=(), help="The ``[culling]`` table.").tag(section=Culling, accepted="a [culling] table")
    https = Instance(Https, args=(), help="The ``[https]`` table.").tag(section=Https, accepted="an [https] table")
    ssh = Instance(Ssh, args=(), help="The ``[ssh]`` table.").tag(section=Ssh, accepted="an [ssh] table")
    jobs = Instance(Jobs, args=(), help="The ``[jobs]`` table.").tag(section=Jobs, accepted="a [jobs] table")
    network = Instance(Network, args=(), help="The ``[network]`` table.").tag(
        section=Network, accepted="a [network] table"
    )
    ldap = Instance(Ldap, args=(), help="The ``[ldap]`` table.").tag(section=Ldap, accepted="an [ldap] table")
    oidc = Instance(Oidc, args=(), help="The ``[oidc]`` table.").tag(section=Oidc, accepted="an [oidc] table")

    def check(self, root: Settings, where: str) -> None:
        """Rules over whole lists; each table checks its own keys (``Dataset.check``, ``Profile.check``,
        ``Quota.check``), run after this by ``check_tree``."""
        if not self.profiles:
            raise SettingsError("profiles: no [[profiles]] block. Accepted: at least one profile")
        if len({d.name for d in self.datasets}) != len(self.datasets):
            raise SettingsError("datasets: two [[datasets]] blocks have the same name; names must be unique")

    def profile(self, name: str) -> Profile | None:
        return next((p for p in self.profiles if p.name == name), None)

    def dataset(self, name: str) -> Dataset:
        return next(d for d in self.datasets if d.name == name)


SETTINGS_ENV = "GPUHUB_SETTINGS"  # the settings file's path, where it is not beside the config


def settings_path(config_dir: str) -> str:
    """The site settings file: ``$GPUHUB_SETTINGS``, else ``settings.toml`` in ``config_dir``."""
    return os.environ.get(SETTINGS_ENV) or os.path.join(config_dir, "settings.toml")


def parse_settings(text: str, source: str = "settings") -> Settings:
    """Parse and validate settings from TOML text; raise SettingsError naming what is wrong."""
    return parse_toml(Settings, text, source)


def load_settings(path: str) -> Settings:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise SettingsError(
            f"{path}: cannot read the settings file ({e.strerror}). Set GPUHUB_SETTINGS to its path,"
            " or copy settings.toml from the gpuhub repository"
        ) from None
    return parse_settings(text, path)
