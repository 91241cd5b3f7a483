"""The sample data `cdp demo` runs on (`samples/demo.json`), and the requests it becomes.

Pure: no channel, no clock of its own (`now` is passed in), so the tests can check what the
demo sends without a suite.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from importlib import resources
from typing import Any

from google.protobuf.struct_pb2 import Struct
from google.protobuf.timestamp_pb2 import Timestamp

from cdp.common.v1 import common_pb2
from cdp.events.v1 import events_pb2
from cdp.identity.v1 import identity_pb2
from cdp.profile.v1 import profile_pb2

SAMPLE_RESOURCE = "samples/demo.json"
CRM = "crm"
SHOP = "shopify"
EMAIL_PLATFORM = "mailchimp"
CURRENCY = "USD"
SHOP_URL = "https://shop.larch-and-lake.example"


@dataclass(frozen=True)
class CrmContact:
    id: str
    first_name: str
    last_name: str
    email: str
    phone: str
    birth_date: str
    postcode: str
    lifetime_value: float
    tags: tuple[str, ...]
    updated_hours_ago: float
    company: str = ""


@dataclass(frozen=True)
class ShopCustomer:
    id: str
    first_name: str
    last_name: str
    email: str
    postcode: str
    order_count: int
    total_spent: float
    last_order_days_ago: float
    updated_hours_ago: float
    phone: str = ""
    birth_date: str = ""


@dataclass(frozen=True)
class Order:
    shop_id: str
    order_id: str
    days_ago: float
    total: float
    items: int


@dataclass(frozen=True)
class CartChange:
    shop_id: str
    type: str
    cart_id: str
    days_ago: float
    value: float
    items: int


@dataclass(frozen=True)
class EmailOpen:
    email: str
    campaign_id: str
    days_ago: float


@dataclass(frozen=True)
class WebIdentify:
    shop_id: str
    days_ago: float


@dataclass(frozen=True)
class WebView:
    shop_id: str
    kind: str
    days_ago: float
    sku: str = ""
    name: str = ""
    price: float = 0.0
    path: str = ""


@dataclass(frozen=True)
class Sample:
    about: str
    crm: tuple[CrmContact, ...]
    shop: tuple[ShopCustomer, ...]
    orders: tuple[Order, ...]
    carts: tuple[CartChange, ...]
    email_opens: tuple[EmailOpen, ...]
    identifies: tuple[WebIdentify, ...]
    views: tuple[WebView, ...]
    # Members who click "unsubscribe" once they are in Mailchimp.
    unsubscribes: tuple[str, ...]
    # The CRM id of the customer whose profile the summary shows.
    profile_example: str

    def shop_by_id(self) -> dict[str, ShopCustomer]:
        return {customer.id: customer for customer in self.shop}


def _records(document: Mapping[str, Any], key: str, kind: type[Any]) -> tuple[Any, ...]:
    items = document.get(key)
    if not isinstance(items, list):
        raise ValueError(f"{SAMPLE_RESOURCE}: {key} must be a list")
    records = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise ValueError(f"{SAMPLE_RESOURCE}: {key}[{index}] must be an object")
        if isinstance(item.get("tags"), list):
            item = {**item, "tags": tuple(item["tags"])}
        try:
            records.append(kind(**item))
        except TypeError as error:
            raise ValueError(f"{SAMPLE_RESOURCE}: {key}[{index}]: {error}") from None
    return tuple(records)


def parse_sample(text: str) -> Sample:
    document = json.loads(text)
    web = document.get("web") or {}
    return Sample(
        about=str(document.get("about", "")),
        crm=_records(document, "crm", CrmContact),
        shop=_records(document, "shop", ShopCustomer),
        orders=_records(document, "orders", Order),
        carts=_records(document, "carts", CartChange),
        email_opens=_records(document, "email_opens", EmailOpen),
        identifies=_records(web, "identify", WebIdentify),
        views=_records(web, "views", WebView),
        unsubscribes=tuple(document.get("unsubscribes") or ()),
        profile_example=str(document.get("profile_example", "")),
    )


def load_sample() -> Sample:
    """The sample shipped inside the CLI (a resource of the `cdp_cli` package)."""
    return parse_sample(resources.files("cdp_cli").joinpath(SAMPLE_RESOURCE).read_text())


def member_email(record: CrmContact | ShopCustomer) -> str:
    """The address Mailchimp keys the person by: profiles carry it lower-cased."""
    return record.email.strip().lower()


def _stamp(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def _struct(document: Mapping[str, Any]) -> Struct:
    struct = Struct()
    struct.update(dict(document))
    return struct


def _ago(now: datetime, *, days: float = 0.0, hours: float = 0.0) -> datetime:
    return now - timedelta(days=days, hours=hours)


def identifiers_of(record: CrmContact | ShopCustomer) -> common_pb2.Identifiers:
    platform = CRM if isinstance(record, CrmContact) else SHOP
    return common_pb2.Identifiers(
        email=record.email,
        phone=record.phone,
        platform_ids=[common_pb2.PlatformId(platform=platform, id=record.id)],
    )


def resolve_request(record: CrmContact | ShopCustomer) -> identity_pb2.ResolveIdentityRequest:
    """Identifiers plus what probabilistic matching compares when none of them is known."""
    return identity_pb2.ResolveIdentityRequest(
        identifiers=identifiers_of(record),
        attributes=identity_pb2.PersonAttributes(
            given_name=record.first_name,
            family_name=record.last_name,
            birth_date=record.birth_date,
            postcode=record.postcode,
        ),
        source_platform=CRM if isinstance(record, CrmContact) else SHOP,
        allow_probabilistic=True,
    )


def crm_fragment(contact: CrmContact, now: datetime) -> profile_pb2.ProfileFragment:
    attributes: dict[str, Any] = {
        "user": {"firstName": contact.first_name, "lastName": contact.last_name,
                 "email": contact.email},
        "customer": {"lifetime_value": contact.lifetime_value},
    }
    if contact.tags:
        attributes["user"]["tags"] = list(contact.tags)
    if contact.company:
        attributes["account"] = {"companyName": contact.company}
    return profile_pb2.ProfileFragment(
        source=CRM, identifiers=identifiers_of(contact), attributes=_struct(attributes),
        observed_at=_stamp(_ago(now, hours=contact.updated_hours_ago)),
    )


def shop_fragment(customer: ShopCustomer, now: datetime) -> profile_pb2.ProfileFragment:
    last_order = _ago(now, days=customer.last_order_days_ago).date().isoformat()
    attributes = {
        "user": {"firstName": customer.first_name, "lastName": customer.last_name,
                 "email": customer.email},
        "customer": {"totalSpent": customer.total_spent, "orderCount": customer.order_count,
                     "lastOrderDate": last_order},
    }
    return profile_pb2.ProfileFragment(
        source=SHOP, identifiers=identifiers_of(customer), attributes=_struct(attributes),
        observed_at=_stamp(_ago(now, hours=customer.updated_hours_ago)),
    )


def fragments_request(sample: Sample, now: datetime) -> profile_pb2.IngestProfileFragmentsRequest:
    """Every CRM contact and shop customer as what its platform observed, in one batch: the
    fragments name people by identifiers only, and the profile service has identity resolve
    them."""
    return profile_pb2.IngestProfileFragmentsRequest(
        fragments=[crm_fragment(c, now) for c in sample.crm]
        + [shop_fragment(s, now) for s in sample.shop]
    )


def _shop_identifiers(shop_id: str) -> common_pb2.Identifiers:
    # The shop names its own customer id, as a Shopify order webhook does.
    return common_pb2.Identifiers(platform_ids=[common_pb2.PlatformId(platform=SHOP, id=shop_id)])


def grpc_events(sample: Sample, now: datetime) -> list[events_pb2.Event]:
    """Orders and carts from the shop, opens from Mailchimp: what goes through PublishEvents."""
    events: list[events_pb2.Event] = []
    for order in sample.orders:
        events.append(events_pb2.Event(
            id=f"demo-{order.order_id}", type="order.completed", source=SHOP,
            timestamp=_stamp(_ago(now, days=order.days_ago)),
            identifiers=_shop_identifiers(order.shop_id),
            properties=_struct({"order_id": order.order_id, "total": order.total,
                                "currency": CURRENCY, "items": order.items}),
        ))
    for index, cart in enumerate(sample.carts):
        events.append(events_pb2.Event(
            id=f"demo-{cart.cart_id}-{index}", type=cart.type, source=SHOP,
            timestamp=_stamp(_ago(now, days=cart.days_ago)),
            identifiers=_shop_identifiers(cart.shop_id),
            properties=_struct({"cart_id": cart.cart_id, "value": cart.value,
                                "currency": CURRENCY, "items": cart.items}),
        ))
    for index, opened in enumerate(sample.email_opens):
        events.append(events_pb2.Event(
            id=f"demo-open-{index}", type="email.opened", source=EMAIL_PLATFORM,
            timestamp=_stamp(_ago(now, days=opened.days_ago)),
            identifiers=common_pb2.Identifiers(email=opened.email),
            properties=_struct({"campaign_id": opened.campaign_id}),
        ))
    return events


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def tracking_batches(sample: Sample, now: datetime) -> tuple[dict[str, Any], dict[str, Any]]:
    """Two Segment `/v1/batch` bodies: the identifies first (each ties a shop user id to an
    email), then the page and product views that name only the user id."""
    shop = sample.shop_by_id()
    identifies = [
        {"type": "identify", "messageId": f"demo-identify-{entry.shop_id}",
         "userId": entry.shop_id, "timestamp": _iso(_ago(now, days=entry.days_ago)),
         "traits": {"email": shop[entry.shop_id].email,
                    "firstName": shop[entry.shop_id].first_name}}
        for entry in sample.identifies
    ]
    views: list[dict[str, Any]] = []
    for index, view in enumerate(sample.views):
        message: dict[str, Any] = {"messageId": f"demo-view-{index}", "userId": view.shop_id,
                                   "timestamp": _iso(_ago(now, days=view.days_ago))}
        if view.kind == "product":
            message.update(type="track", event="Product Viewed",
                           properties={"sku": view.sku, "name": view.name, "price": view.price,
                                       "currency": CURRENCY})
        else:
            url = SHOP_URL + view.path
            message.update(type="page", name=view.path, properties={"path": view.path, "url": url},
                           context={"page": {"url": url}})
        views.append(message)
    sent_at = _iso(now)
    return {"batch": identifies, "sentAt": sent_at}, {"batch": views, "sentAt": sent_at}


def expected_order_counts(sample: Sample) -> dict[str, int]:
    """Orders per shop customer id: what the router's order trigger must count."""
    counts: dict[str, int] = {}
    for order in sample.orders:
        counts[order.shop_id] = counts.get(order.shop_id, 0) + 1
    return counts


def latest_by_email(opens: Sequence[EmailOpen]) -> dict[str, float]:
    """Days since each member's latest open."""
    latest: dict[str, float] = {}
    for opened in opens:
        latest[opened.email] = min(latest.get(opened.email, opened.days_ago), opened.days_ago)
    return latest
