"""The generic loader of gpuhub's TOML files (the site settings, a simulated inventory): no schema.

A table of a file is a ``Section``, a ``HasTraits`` class whose traits are its keys: each key has a
type, help text and an ``accepted`` note, and a bad value fails at assignment. ``from_dict`` builds
one from a parsed TOML table (nested tables and lists of tables through the ``section`` tag), names
an unknown key with the keys accepted, and turns traitlets' errors into one message: the key's
path, the value, why, and what is accepted. Numbers are bounded by traitlets' own ``min``/``max``
(``Size`` adds them to byte sizes). Rules that span keys live in each table's ``check``, which the
root runs over the whole tree once everything is loaded (``check_tree``).
"""

from __future__ import annotations

import re
import tomllib
from numbers import Number

from jupyterhub.traitlets import ByteSpecification
from traitlets import Float, HasTraits, Integer, TraitError

MiB = 1024**2


def group_integers(value: dict, low: int, high: int, what: str) -> dict:
    """``value``, a table of JupyterHub group names to integers from ``low`` to ``high`` (``what`` each
    is, for the message), else ``TraitError`` naming the group: ``[fairness] group_priority``,
    ``[jobs] group_wall_time``."""
    for group, number in value.items():
        if not isinstance(group, str) or not group:
            raise TraitError(f"group name {group!r} is empty")
        if isinstance(number, bool) or not isinstance(number, int) or not low <= number <= high:
            raise TraitError(f"the {what} of {group!r}, {number!r}, is not an integer from {low} to {high}")
    return dict(value)


def optional_absolute_path(value: str) -> str:
    """``value`` if it is empty or an absolute path, else ``TraitError``: the check of a path setting
    that may be left out (``[hub] state_dir``, ``[https] certificate``, ``[ldap] ca_certificate``)."""
    if value and not value.startswith("/"):
        raise TraitError("not an absolute path")
    return value


class SettingsError(ValueError):
    """A file that cannot be used; the message names the key, the value and what is accepted.
    ``key`` is that key's path (``"quotas[0].max_gpus"``) where one key is to blame, else ``""``."""

    def __init__(self, message: str, key: str = ""):
        super().__init__(message)
        self.key = key


def size_text(n: int) -> str:
    for unit, factor in (("P", 1024**5), ("T", 1024**4), ("G", 1024**3), ("M", MiB)):
        if n >= factor and n % factor == 0:
            return f"{n // factor}{unit}"
    return f"{n} bytes"


class Size(ByteSpecification):
    """A size in bytes (``"4G"``, ``"512M"`` or a number of bytes), bounded by ``min``/``max`` as
    traitlets' ``Integer`` is."""

    def __init__(self, *args, min: int | None = None, max: int | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.min, self.max = min, max

    def validate(self, obj, value):
        value = super().validate(obj, value)
        if value is None:
            return value
        if self.min is not None and value < self.min:
            raise TraitError(f"must be at least {size_text(self.min)}" if self.max is None else self._outside())
        if self.max is not None and value > self.max:
            raise TraitError(self._outside())
        return value

    def _outside(self) -> str:
        return f"outside {size_text(self.min or 0)} to {size_text(self.max)}"


def accepted(trait) -> str:
    """What a key accepts, for messages and the reference: its ``accepted`` tag, or for a bounded
    integer with no tag, its bounds."""
    text = trait.metadata.get("accepted")
    if text is None and isinstance(trait, Integer) and not isinstance(trait, ByteSpecification) and None not in (trait.min, trait.max):
        return f"an integer from {trait.min} to {trait.max}"
    return text or ""


def _reason(trait, value, error: Exception) -> str:
    bounds = (getattr(trait, "min", None), getattr(trait, "max", None))
    if isinstance(trait, (Integer, Float)) and isinstance(value, Number) and bounds != (None, None):
        low, high = bounds
        if (low is not None and value < low) or (high is not None and not value <= high):
            return f"outside {low} to {high}" if low is not None and high is not None else str(error)
    text = str(error)
    # traitlets' own messages start with "The 'x' trait of a Y instance expected ..."
    m = re.search(r"expected (.*)", text)
    return (("expected " + m.group(1)) if m else text).rstrip(".")


class Section(HasTraits):
    """A table of a file: known keys only, each validated as it is assigned."""

    section_help = ""

    @classmethod
    def from_dict(cls, data, where: str):
        if not isinstance(data, dict):
            raise SettingsError(f"{where or 'settings'}: expected a table (key = value pairs), got {data!r}")
        known = cls.class_trait_names()
        section = cls()
        for key, value in data.items():
            path = f"{where}.{key}" if where else key
            if key not in known:
                raise SettingsError(
                    f"{path}: unknown key. Accepted keys in {where or 'the file'}: {', '.join(sorted(known))}",
                    path,
                )
            trait = cls.class_traits()[key]
            sub = trait.metadata.get("section")
            try:
                if sub is not None:
                    value = _build_nested(sub, value, path)
                elif isinstance(value, bool) and isinstance(trait, (Integer, Float, ByteSpecification)):
                    raise TraitError("a true/false value is not a number")
                setattr(section, key, value)
            except (TraitError, TypeError, ValueError, OverflowError) as e:
                # traitlets' own checks raise TraitError; some (sizes) let TypeError or OverflowError through
                if isinstance(e, SettingsError):
                    raise
                raise SettingsError(
                    f"{path} = {value!r} is not accepted: {_reason(trait, value, e)}. Accepted: {accepted(trait)}", path
                ) from None
        return section

    def check(self, root: Section, where: str) -> None:
        """Rules of this table that span its keys or name other tables (``root`` is the whole file);
        raise SettingsError naming the key. Run by ``check_tree`` once the whole file is loaded."""

    def check_tree(self, root: Section | None = None, where: str = "") -> None:
        """``check`` this table, then every table nested in it, in the order of the schema."""
        root = root or self
        self.check(root, where)
        for name, trait in self.class_traits().items():
            if trait.metadata.get("section") is None:
                continue
            value = getattr(self, name)
            path = f"{where}.{name}" if where else name
            for i, item in enumerate(value if isinstance(value, list) else [value]):
                item.check_tree(root, item.where(path, i) if isinstance(value, list) else path)

    def where(self, path: str, index: int) -> str:
        """How messages name this item of a list of tables (``profiles[0] (gpu-1)``)."""
        return f"{path}[{index}]"


def _build_nested(section_cls, value, path):
    if isinstance(section_cls, list):  # a list of tables
        (item_cls,) = section_cls
        if not isinstance(value, list):
            raise SettingsError(f"{path}: expected a list of tables ([[{path}]] blocks), got {value!r}")
        return [item_cls.from_dict(item, f"{path}[{i}]") for i, item in enumerate(value)]
    return section_cls.from_dict(value, path)


def parse_toml(cls: type[Section], text: str, source: str) -> Section:
    """A whole file's TOML text → its root table, loaded and checked; SettingsError prefixed with
    ``source`` (the path) otherwise."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SettingsError(f"{source}: not valid TOML: {e}") from None
    try:
        root = cls.from_dict(data, "")
        root.check_tree()
    except SettingsError as e:
        raise SettingsError(f"{source}: {e}", e.key) from None
    return root
