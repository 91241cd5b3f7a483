"""Batch responses are filled in place; they must equal messages built field by field."""

from __future__ import annotations

from cdp.identity.v1 import identity_pb2
from cdp_errors import DomainError, FailedPrecondition, InvalidArgument
from cdp_grpc.errors import item_error
from cdp_identity.domain.model import MatchMethod, MergeOutcome, Resolution
from cdp_identity.entrypoints.grpc_servicer import to_batch_response, to_response

METHODS = {
    MatchMethod.DETERMINISTIC: identity_pb2.MATCH_METHOD_DETERMINISTIC,
    MatchMethod.PROBABILISTIC: identity_pb2.MATCH_METHOD_PROBABILISTIC,
    MatchMethod.NEW: identity_pb2.MATCH_METHOD_NEW,
}


def built_field_by_field(resolution: Resolution) -> identity_pb2.ResolveIdentityResponse:
    merge = resolution.merge
    return identity_pb2.ResolveIdentityResponse(
        customer_id=resolution.customer_id,
        confidence=resolution.confidence,
        method=METHODS[resolution.method],
        matched_on=resolution.matched_on,
        created=resolution.created,
        merge=identity_pb2.MergeOutcome(
            merge_ids=merge.merge_ids,
            merged_customer_ids=merge.merged_customer_ids,
            refused=merge.refused,
            refusal_reason=merge.refusal_reason,
        ) if merge.merge_ids or merge.refused else None,
    )


RESULTS: list[Resolution | DomainError] = [
    Resolution("c-new", MatchMethod.NEW, 1.0, (), created=True),
    Resolution("c-known", MatchMethod.DETERMINISTIC, 1.0, ("email", "phone"), created=False),
    InvalidArgument.single("items[2].identifiers.email", "is not a valid email address"),
    Resolution("c-alike", MatchMethod.PROBABILISTIC, 0.93, ("given_name",), created=False),
    Resolution("c-merged", MatchMethod.DETERMINISTIC, 1.0, ("email",), created=False,
               merge=MergeOutcome(("m-1", "m-2"), ("c-2", "c-3"))),
    Resolution("c-refused", MatchMethod.NEW, 1.0, (), created=True,
               merge=MergeOutcome(refused=True, refusal_reason="not merged with c-9: limit")),
    FailedPrecondition("suppressed", reason="IDENTIFIER_SUPPRESSED"),
    Resolution("c-zero", MatchMethod.PROBABILISTIC, 0.0, (), created=False),
]


def test_a_batch_response_filled_in_place_equals_one_built_field_by_field() -> None:
    expected = identity_pb2.BatchResolveIdentitiesResponse(results=[
        identity_pb2.ResolveIdentityResult(resolution=built_field_by_field(r))
        if isinstance(r, Resolution) else identity_pb2.ResolveIdentityResult(error=item_error(r))
        for r in RESULTS
    ])
    filled = to_batch_response(RESULTS)
    assert filled == expected
    assert filled.SerializeToString(deterministic=True) == expected.SerializeToString(
        deterministic=True)
    assert [r.HasField("resolution") for r in filled.results] == [
        isinstance(r, Resolution) for r in RESULTS]
    assert [r.resolution.HasField("merge") for r in filled.results] == [
        False, False, False, False, True, True, False, False]


def test_a_single_response_equals_one_built_field_by_field() -> None:
    for result in RESULTS:
        if isinstance(result, Resolution):
            assert to_response(result) == built_field_by_field(result)
