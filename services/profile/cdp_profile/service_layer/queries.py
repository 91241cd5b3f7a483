"""Reading unified profiles."""

from __future__ import annotations

from collections.abc import Callable

from cdp_errors import NotFound
from cdp_profile.domain.ids import parse_customer_id
from cdp_profile.domain.model import UnifiedProfile
from cdp_profile.service_layer.ports import ProfileUnitOfWork


class ProfileQueries:
    def __init__(self, uow_factory: Callable[[], ProfileUnitOfWork]) -> None:
        self._uow_factory = uow_factory

    async def unified_profile(self, customer_id: str, field: str = "customer_id") -> UnifiedProfile:
        """The profile of `customer_id`, or of the customer it was merged into."""
        customer_id = parse_customer_id(customer_id, field)
        async with self._uow_factory() as uow:
            owner = (await uow.profiles.survivors([customer_id])).get(customer_id, customer_id)
            found = await uow.profiles.profile(owner)
        if found is None:
            raise NotFound("profile", customer_id)
        head, fields = found
        # A profile exists once a fragment has given it a value (rows are created while a
        # batch locks them, even for fragments it then refuses).
        if head.forgotten or (head.version == 0 and not fields):
            raise NotFound("profile", customer_id)
        return UnifiedProfile(
            customer_id=head.customer_id,
            version=head.version,
            attributes=head.attributes,
            fields=tuple(sorted(fields, key=lambda state: state.path)),
            updated_at=head.updated_at,
        )
