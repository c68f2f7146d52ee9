"""Turning a PUT body into an agreement, and a validation failure into problem+json details."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypedDict

from pydantic import ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

from helpdesk.shared.agreements.models import UNION_TAGS, Agreement
from helpdesk.shared.agreements.presets import (
    DEFAULT_BUSINESS_TIMEZONE,
    DEFAULT_COUNTRY,
    END_USER_CATEGORIES,
    _registry,
    preset_names,
)


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Merge `override` into `base` like an RFC 7396 JSON Merge Patch; neither is modified.

    Objects merge key by key, recursively; lists and scalars in `override` replace what `base`
    has; a `None` in `override` removes the key. Removal is what lets an account drop a preset's
    calendar or availability class; for every nullable agreement field the default is null, so
    removing it and setting it to null mean the same thing.
    """
    merged: dict[str, Any] = {key: _copy(value) for key, value in base.items()}
    for key, value in override.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = _strip_nulls(value)
    return merged


def _copy(value: Any) -> Any:
    """A copy of nested dicts and lists, so the merge result shares nothing with its inputs."""
    if isinstance(value, Mapping):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def _strip_nulls(value: Any) -> Any:
    # RFC 7396: an object that replaces a non-object is itself merged into {} so its nulls vanish.
    if isinstance(value, Mapping):
        return deep_merge({}, value)
    return _copy(value)


def _refuse(loc: tuple[str | int, ...], kind: str, message: str, value: Any) -> ValidationError:
    # The same exception type as every other agreement error, so callers handle one thing.
    return ValidationError.from_exception_data(
        "Agreement",
        [InitErrorDetails(type=PydanticCustomError(kind, message), loc=loc, input=value)],
    )


def resolve_agreement(
    preset_name: str | None,
    overrides: Mapping[str, Any] | None = None,
    *,
    local_timezone: str | None = None,
    local_country: str | None = None,
) -> Agreement:
    """The agreement that a preset plus an account's overrides describe, validated.

    Start from the preset's agreement (or from nothing when `preset_name` is None), switch to the
    plan of `overrides["plan_variant"]` when the preset has variants, then `deep_merge` the
    overrides and validate. `overrides` may also carry `preset` (a PUT body does); it must then
    agree with `preset_name`. Raises pydantic's ValidationError, located at `preset` for an
    unknown preset, at `plan_variant` for an unknown variant and at each of the preset's
    `operator_must_set` paths the body leaves out; `agreement_errors` turns it into field/reason
    pairs.

    `local_timezone` (the account's zone) moves the preset's business-hours calendars, kept in
    America/New_York, to that zone before the overrides apply: "Mon-Fri 08:30-17:30" is the
    customer's local day, and a calendar timezone in `overrides` still wins. `local_country`
    (the account's country) likewise replaces the preset's US public holidays.

    A partner with `partner_rules.end_user_support_plan` has the seed-001 end-user categories
    moved from unsupported to in_scope, whatever catalogue the preset and overrides gave.
    """
    if overrides is not None and not isinstance(overrides, Mapping):
        raise _refuse((), "dict_type", "the agreement must be a JSON object", overrides)
    body: dict[str, Any] = dict(overrides or {})
    body_preset = body.pop("preset", None)
    if preset_name is None:
        preset_name = body_preset
    elif body_preset is not None and body_preset != preset_name:
        raise _refuse(
            ("preset",),
            "preset_mismatch",
            f"the body names preset '{body_preset}' but '{preset_name}' was requested",
            body_preset,
        )
    if preset_name is None:
        if body.get("plan_variant") is not None:
            raise _refuse(
                ("plan_variant",),
                "unknown_plan_variant",
                "plan_variant needs a preset that has plan variants",
                body["plan_variant"],
            )
        return Agreement.model_validate(deep_merge({}, body))

    preset = _registry().get(preset_name) if isinstance(preset_name, str) else None
    if preset is None:
        raise _refuse(
            ("preset",),
            "unknown_preset",
            f"unknown preset '{preset_name}'; known presets: {', '.join(preset_names())}",
            preset_name,
        )
    missing = [
        InitErrorDetails(
            type=PydanticCustomError("required_by_preset", f"preset '{preset_name}': {why}"),
            loc=tuple(path.split(".")),
            input=None,
        )
        for path, why in preset.operator_must_set.items()
        if not _is_set(body, path)
    ]
    if missing:
        raise ValidationError.from_exception_data("Agreement", missing)
    base = preset.agreement.model_dump(mode="json")
    if local_timezone is not None:
        for calendar in base.get("calendars", {}).values():
            if calendar.get("timezone") == DEFAULT_BUSINESS_TIMEZONE:
                calendar["timezone"] = local_timezone
    if local_country is not None:
        for calendar in base.get("calendars", {}).values():
            if calendar.get("country") == DEFAULT_COUNTRY:
                calendar["country"] = local_country
    variant = body.get("plan_variant")
    if variant is not None:
        chosen = preset.plan_variants.get(variant) if isinstance(variant, str) else None
        if chosen is None:
            known = ", ".join(preset.plan_variants) or "none"
            raise _refuse(
                ("plan_variant",),
                "unknown_plan_variant",
                f"preset '{preset_name}' has no plan variant '{variant}' (variants: {known})",
                variant,
            )
        # The variant replaces the whole plan, so a field set only by the default variant
        # (Pro's designated engineer, say) cannot leak into another; overrides still apply.
        base["plan"] = chosen.plan.model_dump(mode="json")
    return _with_end_user_plan(Agreement.model_validate(deep_merge(base, body)))


def _with_end_user_plan(agreement: Agreement) -> Agreement:
    """Seed 001: 'Unless signed up for a ... partner end-user support plan ... end-customer
    calls ... will be directed back to the partner': with the plan they are in scope."""
    rules = agreement.partner_rules
    if rules is None or not rules.end_user_support_plan:
        return agreement
    scope = agreement.scope_catalogue
    moved = [c for c in scope.unsupported if c in END_USER_CATEGORIES]
    if not moved:
        return agreement
    catalogue = scope.model_copy(
        update={
            "in_scope": [*scope.in_scope, *moved],
            "unsupported": [c for c in scope.unsupported if c not in moved],
        }
    )
    return agreement.model_copy(update={"scope_catalogue": catalogue})


def _is_set(body: Mapping[str, Any], path: str) -> bool:
    """Whether the PUT body gives the dotted `path` a value (null is no value)."""
    value: Any = body
    for key in path.split("."):
        if not isinstance(value, Mapping) or value.get(key) is None:
            return False
        value = value[key]
    return True


class FieldError(TypedDict):
    """One entry of a problem+json `errors` list: which field, and what is wrong with it."""

    field: str
    reason: str


def field_path(loc: tuple[str | int, ...]) -> str:
    """A pydantic error location as a dotted path, e.g. "targets.P1.calendar".

    Union tags and the "[key]" marker of a dict-key error are pydantic's bookkeeping, not fields
    a client sent, so they are left out. An empty path means the body as a whole.
    """
    parts = [str(p) for p in loc if p != "[key]" and not (isinstance(p, str) and p in UNION_TAGS)]
    return ".".join(parts)


def agreement_errors(exc: ValidationError) -> list[FieldError]:
    """Field/reason pairs of a failed agreement validation, for an RFC 9457 problem+json body."""
    return [{"field": field_path(err["loc"]), "reason": err["msg"]} for err in exc.errors()]
