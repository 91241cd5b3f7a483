"""Loading the router's declarative files: routing rules, triggers, the tracking plan.

Each file is read with line numbers; every problem is reported at once, naming the file,
the line and the entry, and a file with any problem is not used (the service does not start).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from cdp_event_router.domain.routing import OPERATORS, Condition, Route, RoutingTable
from cdp_event_router.domain.triggers import AGGREGATES, Projection, Trigger, TriggerSet
from cdp_event_router.domain.validation import TYPE_PATTERN, TrackingPlan
from cdp_settings.config_files import (
    ConfigError,
    ConfigProblem,
    line_of,
    load_yaml,
    read_config_file,
)

DEFAULTS = Path(__file__).resolve().parent.parent / "config"


def _read(path: Path) -> Any:
    return load_yaml(read_config_file(path), str(path))


def _pattern_ok(pattern: Any) -> bool:
    if not isinstance(pattern, str):
        return False
    if pattern == "*":
        return True
    core = pattern[:-2] if pattern.endswith(".*") else pattern
    return bool(TYPE_PATTERN.match(core) or (pattern.endswith(".*") and core.isidentifier()))


def load_routing(path: Path) -> RoutingTable:
    document = _read(path)
    problems: list[ConfigProblem] = []
    name = str(path)
    if not isinstance(document, dict):
        raise ConfigError([ConfigProblem(name, 1, "", "must be a mapping with roles and routes")])
    roles = document.get("roles") or {}
    if not isinstance(roles, dict) or not all(isinstance(v, str) for v in roles.values()):
        problems.append(ConfigProblem(name, line_of(document, "roles"), "roles",
                                      "must map each role to a platform name"))
        roles = {}
    routes: list[Route] = []
    for index, raw in enumerate(document.get("routes") or []):
        entry = f"route {index + 1}"
        line = line_of(raw, default=line_of(document, "routes"))
        if not isinstance(raw, dict):
            problems.append(ConfigProblem(name, line, entry, "must be a mapping"))
            continue
        pattern = raw.get("type")
        if not _pattern_ok(pattern):
            problems.append(ConfigProblem(name, line_of(raw, "type"), entry,
                                          f"type {pattern!r} is not an event type, prefix.* or *"))
            continue
        targets = raw.get("targets")
        if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
            problems.append(ConfigProblem(name, line_of(raw, "targets"), entry,
                                          "targets must be a list of role names"))
            continue
        unknown = [t for t in targets if roles and t not in roles]
        if unknown:
            problems.append(ConfigProblem(name, line_of(raw, "targets"), entry,
                                          f"unknown role(s) {', '.join(unknown)}"))
            continue
        conditions: list[Condition] = []
        for number, condition in enumerate(raw.get("when") or []):
            where = f"{entry}, condition {number + 1}"
            if not isinstance(condition, dict) or "property" not in condition:
                problems.append(ConfigProblem(name, line_of(condition, default=line), where,
                                              "must name a property"))
                continue
            operators = [k for k in condition if k != "property"]
            if len(operators) != 1 or operators[0] not in OPERATORS:
                problems.append(ConfigProblem(
                    name, line_of(condition, default=line), where,
                    "needs exactly one operator of " + ", ".join(OPERATORS)))
                continue
            conditions.append(Condition(tuple(str(condition["property"]).split(".")),
                                        operators[0], condition[operators[0]]))
        routes.append(Route(str(pattern), tuple(targets), tuple(conditions)))
    realtime = document.get("realtime") or []
    for pattern in realtime:
        if not _pattern_ok(pattern):
            problems.append(ConfigProblem(name, line_of(document, "realtime"), "realtime",
                                          f"{pattern!r} is not an event type or prefix.*"))
    if problems:
        raise ConfigError(problems)
    return RoutingTable(roles=dict(roles), routes=routes, realtime=tuple(realtime))


def _field(raw: Any) -> tuple[tuple[str, ...], bool] | None:
    if raw == "timestamp":
        return (), True
    if raw in ("events", "properties"):
        return (), False
    if isinstance(raw, str) and raw.startswith("properties."):
        parts = tuple(raw.split(".")[1:])
        return (parts, False) if all(parts) else None
    return None


def load_triggers(path: Path) -> TriggerSet:
    document = _read(path)
    name = str(path)
    problems: list[ConfigProblem] = []
    triggers: list[Trigger] = []
    items = document.get("triggers") if isinstance(document, dict) else None
    if not isinstance(items, list):
        raise ConfigError([ConfigProblem(name, 1, "", "must have a list of triggers")])
    for index, raw in enumerate(items):
        entry = f"trigger {index + 1}"
        line = line_of(raw)
        if not isinstance(raw, dict):
            problems.append(ConfigProblem(name, line, entry, "must be a mapping"))
            continue
        entry = f"trigger {raw.get('name') or index + 1}"
        # `events`, not `on`: YAML 1.1 reads a bare `on` key as the boolean true.
        types = raw.get("events")
        types = [types] if isinstance(types, str) else types
        if not isinstance(types, list) or not types or not all(
                isinstance(t, str) and TYPE_PATTERN.match(t) for t in types):
            problems.append(ConfigProblem(name, line_of(raw, "events"), entry,
                                          "events must list event types"))
            continue
        projections: list[Projection] = []
        assignments = raw.get("set")
        if not isinstance(assignments, dict) or not assignments:
            problems.append(ConfigProblem(name, line_of(raw, "set"), entry,
                                          "set must map attributes to aggregates"))
            continue
        for attribute, spec in assignments.items():
            where = line_of(assignments, attribute)
            if not isinstance(spec, dict) or len(spec) != 1:
                problems.append(ConfigProblem(name, where, f"{entry}, {attribute}",
                                              "must be one aggregate, e.g. {max: timestamp}"))
                continue
            ((aggregate, field),) = spec.items()
            if aggregate not in AGGREGATES:
                problems.append(ConfigProblem(
                    name, where, f"{entry}, {attribute}",
                    f"unknown aggregate {aggregate!r}; known: " + ", ".join(AGGREGATES)))
                continue
            parsed = _field(field)
            if parsed is None or (aggregate == "count") != (field == "events"):
                problems.append(ConfigProblem(
                    name, where, f"{entry}, {attribute}",
                    f"{aggregate} needs " + ("events" if aggregate == "count" else
                                             "timestamp or properties.<path>")))
                continue
            if aggregate in ("sum",) and parsed[1]:
                problems.append(ConfigProblem(name, where, f"{entry}, {attribute}",
                                              "sum needs a numeric properties.<path>"))
                continue
            projections.append(Projection(str(attribute), aggregate, parsed[0], parsed[1]))
        triggers.append(Trigger(str(raw.get("name") or entry), tuple(types), tuple(projections)))
    if problems:
        raise ConfigError(problems)
    return TriggerSet(triggers)


def load_tracking_plan(path: Path | None) -> TrackingPlan:
    if path is None:
        return TrackingPlan()
    document = _read(path)
    name = str(path)
    if not isinstance(document, dict) or not isinstance(document.get("events"), dict):
        raise ConfigError([ConfigProblem(name, 1, "", "must have an `events` mapping")])
    problems: list[ConfigProblem] = []
    schemas: dict[str, Any] = {}
    for event_type, spec in document["events"].items():
        where = line_of(document["events"], event_type)
        if not isinstance(event_type, str) or not TYPE_PATTERN.match(event_type):
            problems.append(ConfigProblem(name, where, str(event_type), "is not an event type"))
            continue
        schema = (spec or {}).get("properties", {"type": "object"}) if isinstance(spec, dict) \
            else None
        try:
            if not isinstance(schema, dict):
                raise SchemaError("must be a mapping")
            Draft202012Validator.check_schema(schema)
        except SchemaError as error:
            problems.append(ConfigProblem(name, where, event_type,
                                          f"not a JSON Schema: {error.message[:120]}"))
            continue
        schemas[event_type] = schema
    unplanned = document.get("unplanned", "allow")
    if unplanned not in ("allow", "reject"):
        problems.append(ConfigProblem(name, line_of(document, "unplanned"), "unplanned",
                                      "must be allow or reject"))
    if problems:
        raise ConfigError(problems)
    return TrackingPlan(schemas=schemas, allow_unplanned=unplanned == "allow")
