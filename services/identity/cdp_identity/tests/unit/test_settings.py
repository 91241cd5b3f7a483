from __future__ import annotations

import pytest

from cdp_identity.domain.identifiers import IdentityKind
from cdp_identity.settings import IdentitySettings
from cdp_settings import SettingsError, load_settings

BASE = {"DATABASE_URL": "postgresql://db/cdp", "NATS_URL": "nats://127.0.0.1:4222"}


def test_identity_limits_are_read_from_the_environment() -> None:
    settings = load_settings(IdentitySettings, {**BASE, "CDP_IDENTITY_LIMITS": "email=3, phone=2"})
    assert settings.limits == {IdentityKind.EMAIL: 3, IdentityKind.PHONE: 2}


@pytest.mark.parametrize(("raw", "message"), [
    ("mails=3", "unknown identity kind 'mails'"),
    ("email=0", "email needs a positive count"),
])
def test_malformed_limits_fail_at_start_naming_the_variable(raw: str, message: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(IdentitySettings, {**BASE, "CDP_IDENTITY_LIMITS": raw})
    (problem,) = caught.value.problems
    assert problem.startswith("CDP_IDENTITY_LIMITS=") and message in problem
