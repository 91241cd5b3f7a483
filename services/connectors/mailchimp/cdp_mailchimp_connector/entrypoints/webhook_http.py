"""The HTTP endpoint Mailchimp's audience webhooks call.

GET answers Mailchimp's validator (sent when a webhook is saved) with 200. POST takes the
form-encoded delivery, checks the signature when a secret is configured, and answers 200
only once the items are stored, so Mailchimp retries anything not yet safe. Bodies and
addresses never reach a log line.
"""

from __future__ import annotations

import logging

from aiohttp import web

from cdp_errors import InvalidArgument, Unauthenticated
from cdp_mailchimp_connector.service_layer.inbound import WebhookReceiver

logger = logging.getLogger(__name__)

PATH = "/webhooks/mailchimp"
MAX_BODY = 1024 * 1024


def build_webhook_app(receiver: WebhookReceiver) -> web.Application:
    async def validate(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def deliver(request: web.Request) -> web.Response:
        raw = await request.read()
        try:
            body = raw.decode("utf-8")
            stored = await receiver.receive(body, request.headers.get("X-Mailchimp-Signature", ""))
        except UnicodeDecodeError:
            return web.json_response({"error": "body is not UTF-8"}, status=400)
        except Unauthenticated as error:
            logger.warning("webhook refused: %s", error)
            return web.json_response({"error": str(error)}, status=401)
        except InvalidArgument as error:
            return web.json_response({"error": str(error)}, status=400)
        return web.json_response({"stored": stored})

    async def health(_: web.Request) -> web.Response:
        return web.json_response({"status": "SERVING"})

    app = web.Application(client_max_size=MAX_BODY)
    app.router.add_get(PATH, validate)
    app.router.add_post(PATH, deliver)
    app.router.add_get("/healthz", health)
    return app
