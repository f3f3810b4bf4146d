"""GPUSpawner: DockerSpawner applying gpuhub's profiles. Thin glue: policy lives in ``profiles``,
``form`` and ``containers``; this class only moves their results onto DockerSpawner's traits."""

from __future__ import annotations

from dockerspawner import DockerSpawner
from traitlets import Instance, default

from . import containers, form
from .profiles import choose_profile
from .settings import Settings
from .slugs import user_slug


class GPUSpawner(DockerSpawner):
    """Spawn the profile a user picked, with gpuhub's security defaults and a per-user home volume.

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

    @property
    def settings(self) -> Settings:
        if self.site_settings is None:
            raise RuntimeError("GPUSpawner.site_settings is not set: load the hub config through gpuhub.hubconfig")
        return self.site_settings

    def _user_groups(self) -> list[str]:
        return [g.name for g in self.user.groups]

    def template_namespace(self):
        return {**super().template_namespace(), "slug": user_slug(self.user.name)}

    @default("name_template")
    def _default_name_template(self):
        name = self.settings.spawner.container_name
        return name + "--{servername}" if self.name else name

    @default("options_form")
    def _default_options_form(self):
        return lambda spawner: form.render_form(spawner.settings, spawner._user_groups())

    def options_from_form(self, formdata):
        return form.options_from_form(formdata)

    @default("apply_user_options")
    def _default_apply_user_options(self):
        return GPUSpawner.apply_profile

    async def apply_profile(self, user_options: dict) -> None:
        """Validate the request, then set image, caps, volumes and security options for the container."""
        profile = choose_profile(self.settings, user_options or {}, self._user_groups())
        image = profile.image
        if user_options and user_options.get("image"):
            image = await self.check_allowed(user_options["image"])
        spec = containers.build(self.settings, profile, self.user.name, image)
        self.log.info(
            "gpuhub %s: profile %s, image %s, home volume %s", self._log_name, profile.name, spec.image, spec.home_volume
        )
        self.image = spec.image
        self.mem_limit = spec.mem_limit
        self.cpu_limit = spec.cpu_limit
        self.volumes = spec.volumes
        self.extra_host_config = spec.host_config
        self.extra_create_kwargs = spec.create_kwargs
        self.environment = {**self.environment, **spec.environment}
