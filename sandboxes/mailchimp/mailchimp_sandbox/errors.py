"""Mailchimp's error replies: RFC 7807 problem documents with the titles the real API uses."""

from __future__ import annotations

import uuid
from typing import Any

DOCS = "https://mailchimp.com/developer/marketing/docs/errors/"


class ApiError(Exception):
    """An error reply: status, title, detail and, for validation errors, `errors[]`."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        *,
        errors: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {title}: {detail}")
        self.status = status
        self.title = title
        self.detail = detail
        self.errors = errors
        self.headers = headers or {}

    def problem(self, instance: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": DOCS,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "instance": instance or str(uuid.uuid4()),
        }
        if self.errors is not None:
            body["errors"] = self.errors
        return body


def not_found(what: str = "resource") -> ApiError:
    return ApiError(
        404, "Resource Not Found", f"The requested {what} could not be found."
    )


def invalid(detail: str, errors: list[dict[str, str]] | None = None) -> ApiError:
    return ApiError(400, "Invalid Resource", detail, errors=errors)


def bad_request(detail: str) -> ApiError:
    return ApiError(400, "Bad Request", detail)


# X-Trigger-Error names the real API honours for testing, and what each answers.
TRIGGERED: dict[str, tuple[int, str, str]] = {
    "APIKeyMissing": (401, "API Key Missing", "Your request did not include an API key."),
    "APIKeyInvalid": (401, "API Key Invalid", "Your API key may be invalid, or you've attempted to access the wrong datacenter."),  # noqa: E501
    "Forbidden": (403, "Forbidden", "You don't have permission to access this resource."),
    "UserDisabled": (403, "User Disabled", "This account has been disabled."),
    "ResourceNotFound": (404, "Resource Not Found", "The requested resource could not be found."),  # noqa: E501
    "MethodNotAllowed": (405, "Method Not Allowed", "The requested method and resource are not compatible."),  # noqa: E501
    "TooManyRequests": (429, "Too Many Requests", "You have exceeded the limit of 10 simultaneous connections."),  # noqa: E501
    "InternalServerError": (500, "Internal Server Error", "An unexpected internal error has occurred."),  # noqa: E501
}
