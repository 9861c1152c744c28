"""Polygon trade conditions and their consolidated update rules.

The table comes from ``GET /v3/reference/conditions?asset_class=stocks&data_type=trade`` at
start-up (:meth:`PolygonRestClient.conditions`), or from the bundled copy of that response in
``data/conditions.json`` when there is no API key or the call fails. Rules combine as a logical
AND over a trade's conditions; a trade without conditions is regular; an unknown code counts as
regular and is reported by :meth:`ConditionTable.unknown` so callers can count it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, Final

ODD_LOT: Final = 37


@dataclass(frozen=True, slots=True)
class ConditionRule:
    id: int
    name: str
    updates_high_low: bool
    updates_open_close: bool
    updates_volume: bool


class ConditionTable:
    """Lookup of consolidated update rules by condition id."""

    def __init__(self, rules: Iterable[ConditionRule], source: str = "bundled") -> None:
        self.rules: dict[int, ConditionRule] = {r.id: r for r in rules}
        self.source = source
        self._no_volume = frozenset(i for i, r in self.rules.items() if not r.updates_volume)
        self._no_last = frozenset(i for i, r in self.rules.items() if not r.updates_open_close)
        self._no_hl = frozenset(i for i, r in self.rules.items() if not r.updates_high_low)

    def __contains__(self, code: object) -> bool:
        return code in self.rules

    def __len__(self) -> int:
        return len(self.rules)

    @property
    def ids(self) -> frozenset[int]:
        return frozenset(self.rules)

    def unknown(self, conditions: Sequence[int]) -> list[int]:
        """The codes of ``conditions`` missing from the table (they count as regular)."""
        return [c for c in conditions if c not in self.rules]

    def updates_volume(self, conditions: Sequence[int]) -> bool:
        return not any(c in self._no_volume for c in conditions)

    def updates_open_close(self, conditions: Sequence[int]) -> bool:
        return not any(c in self._no_last for c in conditions)

    def updates_high_low(self, conditions: Sequence[int]) -> bool:
        return not any(c in self._no_hl for c in conditions)

    def vwap_eligible(self, conditions: Sequence[int]) -> bool:
        """Volume- and last-eligible once the odd-lot condition is disregarded (DESIGN.md)."""
        rest = [c for c in conditions if c != ODD_LOT]
        return self.updates_volume(rest) and self.updates_open_close(rest)

    @classmethod
    def from_response(cls, body: Mapping[str, Any], source: str = "rest") -> ConditionTable:
        """Build from a ``/v3/reference/conditions`` response body (one page or merged)."""
        rules = parse_rules(body)
        if not rules:
            raise ValueError("conditions response has no trade conditions")
        return cls(rules, source=source)


def parse_rules(body: Mapping[str, Any]) -> list[ConditionRule]:
    """The trade conditions of a ``/v3/reference/conditions`` response body: the one parser of
    that table (the feature library's eligibility rules are built from it too). A missing
    consolidated rule counts as "updates" (regular), the same default as an unknown code."""
    rules = []
    for r in body.get("results") or ():
        if "trade" not in (r.get("data_types") or ["trade"]):
            continue
        cons = (r.get("update_rules") or {}).get("consolidated") or {}
        rules.append(
            ConditionRule(
                id=int(r["id"]),
                name=str(r.get("name", "")),
                updates_high_low=bool(cons.get("updates_high_low", True)),
                updates_open_close=bool(cons.get("updates_open_close", True)),
                updates_volume=bool(cons.get("updates_volume", True)),
            )
        )
    return rules


def bundled_conditions_response() -> dict[str, Any]:
    """The bundled copy of the endpoint's response (used offline and by the fake server)."""
    text = resources.files("signalstack.marketdata").joinpath("data/conditions.json").read_text()
    body: dict[str, Any] = json.loads(text)
    return body


def load_bundled_conditions() -> ConditionTable:
    return ConditionTable.from_response(bundled_conditions_response(), source="bundled")
