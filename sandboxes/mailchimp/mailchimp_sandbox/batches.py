"""Batch operations (`/batches`): many API calls in one request, run in the background,
with results as a gzipped tar of JSON arrays, as Mailchimp serves them."""

from __future__ import annotations

import asyncio
import io
import json
import secrets
import tarfile
from typing import Any

from mailchimp_sandbox.account import Account, links, now_text, page
from mailchimp_sandbox.errors import ApiError, invalid, not_found

MAX_PENDING = 500
RESULTS_PER_FILE = 1000
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


class Batches:
    def __init__(self, account: Account) -> None:
        self.account = account
        self.batches: dict[str, dict[str, Any]] = {}
        self.archives: dict[str, bytes] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def view(self, batch: dict[str, Any], base_url: str) -> dict[str, Any]:
        view = {key: value for key, value in batch.items() if not key.startswith("_op")}
        if batch["status"] == "finished":
            view["response_body_url"] = f"{base_url}/_sandbox/batch-results/{batch['id']}.tar.gz"
        return view

    def start(self, body: Any, base_url: str) -> dict[str, Any]:
        operations = body.get("operations") if isinstance(body, dict) else None
        if not isinstance(operations, list) or not operations:
            raise invalid(
                "The resource submitted could not be validated.",
                [{"field": "operations", "message": "This value should not be blank."}],
            )
        for index, operation in enumerate(operations):
            if (
                not isinstance(operation, dict)
                or operation.get("method") not in METHODS
                or not isinstance(operation.get("path"), str)
                or not isinstance(operation.get("body", ""), str)
            ):
                raise invalid(
                    "The resource submitted could not be validated.",
                    [{"field": f"operations[{index}]", "message": "needs a method, a path and "
                      "a body that is a JSON string"}],
                )
        pending = sum(1 for b in self.batches.values() if b["status"] != "finished")
        if pending >= MAX_PENDING:
            raise ApiError(429, "Too Many Requests",
                           f"You have more than {MAX_PENDING} pending batches.")
        batch_id = secrets.token_hex(5)
        batch: dict[str, Any] = {
            "id": batch_id,
            "status": "pending",
            "total_operations": len(operations),
            "finished_operations": 0,
            "errored_operations": 0,
            "submitted_at": now_text(),
            "completed_at": "",
            "response_body_url": "",
            "_links": links(f"/batches/{batch_id}"),
            "_operations": operations,
        }
        self.batches[batch_id] = batch
        task = asyncio.create_task(self._run(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return self.view(batch, base_url)

    async def _run(self, batch: dict[str, Any]) -> None:
        await asyncio.sleep(0)
        batch["status"] = "started"
        results = []
        for index, operation in enumerate(batch["_operations"]):
            results.append(self._one(operation))
            batch["finished_operations"] += 1
            if results[-1]["status_code"] >= 400:
                batch["errored_operations"] += 1
            if index % 20 == 19:
                # Other calls (status polls, the webhook dispatcher) get the loop meanwhile.
                await asyncio.sleep(0)
        batch["status"] = "finalizing"
        self.archives[batch["id"]] = archive(batch["id"], results)
        batch["status"] = "finished"
        batch["completed_at"] = now_text()
        del batch["_operations"]

    def _one(self, operation: dict[str, Any]) -> dict[str, Any]:
        operation_id = str(operation.get("operation_id", ""))
        try:
            raw = operation.get("body") or ""
            body = json.loads(raw) if raw else None
            params = {k: str(v) for k, v in (operation.get("params") or {}).items()}
            path = operation["path"].split("?", 1)[0].rstrip("/") or "/"
            status, reply = self.account.dispatch(operation["method"], path, params, body)
            response = json.dumps(reply) if reply is not None else ""
        except json.JSONDecodeError:
            status, response = 400, json.dumps(
                ApiError(400, "JSON Parse Exception", "The operation body is not JSON.").problem()
            )
        except ApiError as error:
            status, response = error.status, json.dumps(error.problem())
        return {"status_code": status, "operation_id": operation_id, "response": response}

    def status(self, batch_id: str, base_url: str) -> dict[str, Any]:
        batch = self.batches.get(batch_id)
        if batch is None:
            raise not_found("batch")
        return self.view(batch, base_url)

    def list(self, query: dict[str, str], base_url: str) -> dict[str, Any]:
        count, offset = page(query)
        views = [self.view(b, base_url) for b in self.batches.values()]
        return {"batches": views[offset : offset + count], "total_items": len(views),
                "_links": links("/batches")}

    def delete(self, batch_id: str) -> None:
        if self.batches.pop(batch_id, None) is None:
            raise not_found("batch")
        self.archives.pop(batch_id, None)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()


def archive(batch_id: str, results: list[dict[str, Any]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for number, start in enumerate(range(0, max(len(results), 1), RESULTS_PER_FILE)):
            data = json.dumps(results[start : start + RESULTS_PER_FILE]).encode()
            info = tarfile.TarInfo(f"{batch_id}/{number}.json")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()
