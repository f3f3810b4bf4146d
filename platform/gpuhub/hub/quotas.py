"""The quota service: the rules (the settings file's ``[[quotas]]`` and the database's, set by admins),
a user's effective quota, and changes to the database's rules.

Any change to a rule can let a waiter in (a quota raised or removed), so ``set`` and ``unset`` wake
the GPU lines themselves (``changed``, the listeners ``Services`` wires); a handler never has to remember to.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from ..config.schema import Settings
from ..db.quotas import QuotaStore
from ..db.usage import UsageStore
from ..policy.accounting import HeldNow, week_start
from ..policy.quotas import EffectiveQuota, QuotaRule, resolve, rule_from
from ..worker import Worker
from .database import DatabaseOpener, StoreCalls
from .log import log
from .waitqueue import Listeners


class QuotaService:
    def __init__(self, settings: Settings, database: DatabaseOpener, clock: Callable[[], datetime]):
        self.settings = settings
        self.settings_rules = [rule_from(*q.scope, q, origin="settings") for q in settings.quotas]
        worker = Worker("gpuhub-quotas")
        self._rules = StoreCalls(database, QuotaStore, worker)
        self._usage = StoreCalls(database, UsageStore, worker)
        self._clock = clock
        self.changed = Listeners()  # called after every change (Services wires the GPU lines' wake-up)

    async def rules(self) -> list[QuotaRule]:
        """Every quota rule: the settings file's, then the database's."""
        return self.settings_rules + await self._rules("rules")

    async def effective(self, username: str, groups: list[str]) -> EffectiveQuota:
        return resolve(username, groups, await self.rules())

    async def used_this_week(self, username: str) -> float:
        """GPU-seconds ``username`` used in the current ``[accounting] week`` (what ``gpu_hours_per_week`` counts)."""
        return await self._usage("used_seconds", username, week_start(self._clock(), self.settings.accounting.week))

    async def weekly_hours_of(self, holders: dict[str, HeldNow]) -> dict[str, tuple[float, float]]:
        """Per person holding GPUs now (``policy.accounting.held_now``) whose ``gpu_hours_per_week`` is
        limited: (the limit, the GPU-hours used this week); one read of the rules for all of them."""
        rules, hours = await self.rules(), {}
        for username, held in holders.items():
            limit = resolve(username, sorted(held.groups), rules).gpu_hours_per_week.value
            if limit is not None:
                hours[username] = (limit, await self.used_this_week(username) / 3600)
        return hours

    async def set(self, rule: QuotaRule, by: str) -> None:
        await self._rules("set", rule)
        log.info("gpuhub quotas: %s set the %s quota %r", by, rule.scope, rule.name)
        self.changed()

    async def unset(self, scope: str, name: str, by: str) -> bool:
        """Remove the database's rule (the settings file's applies again); False if there was none."""
        removed = await self._rules("unset", scope, name)
        if removed:
            log.info("gpuhub quotas: %s removed the %s quota %r", by, scope, name)
            self.changed()
        return removed
