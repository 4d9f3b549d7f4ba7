"""Flask blueprint serving the TIW API 3.0 endpoint (`POST /`, `GET /?...`) for the Tencent SDK."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from flask import Blueprint, Response, request
from werkzeug.exceptions import RequestEntityTooLarge

from emulator.cloudapi import errors, incoming, params, sign_v1, tc3
from emulator.cloudapi.backend import CloudApiSettings, CloudBackend
from emulator.cloudapi.errors import CloudApiError
from emulator.cloudapi.hosts import SigningLeeway
from emulator.core.redact import mask_url, short_id
from emulator.web.wsgi_bridge import Held, hold_of, request_body, waited_s

logger = logging.getLogger(__name__)

# Content-Type must be exactly this: the SDK ignores `Response.Error` under any other value
# (e.g. with "; charset=utf-8") and would report a failed call as a success.
JSON_CONTENT_TYPE = "application/json"
_DESCRIBE_FIELDS = ("TaskId", "Status", "Progress", "RoomId", "GroupId")
_FINISHED_FIELDS = ("RecordStartTime", "TotalTime", "VideoInfos")

# One `backend.log_cloud_call` record per call, success or error. Keys:
#   at (float Unix s), request_id, action (header as sent, may be ""), method ("GET"/"POST"),
#   secret_id (masked or None), params (typed if valid, else as parsed, else None),
#   task_id (created or described TaskId, else None), ok (bool),
#   code (None on success, else the error code), message (None on success).
CallRecord = dict[str, Any]


def create_cloudapi_blueprint(
    backend: CloudBackend, settings_provider: Callable[[], CloudApiSettings]
) -> Blueprint:
    """Blueprint for `/`: a POST, or a GET with Authorization, X-TC-* headers or `Action`."""
    blueprint = Blueprint("cloudapi", __name__)

    @blueprint.route("/", methods=["GET", "POST"])
    def cloud_api() -> Response:
        if not incoming.is_cloud_call(request.method, request.headers.keys(), request.query_string):
            return _not_an_api_call()
        return _handle_call(backend, settings_provider)

    return blueprint


def _not_an_api_call() -> Response:
    hint = {
        "error": {
            "code": "not_found",
            "message": "GET / is the TIW cloud API endpoint and needs an X-TC-Action header "
            "(point the Tencent Cloud SDK here); the dashboard is at /ui/.",
            "details": {"dashboard": "/ui/", "health": "/healthz"},
        }
    }
    return _json_response(hint, status=404)


def _handle_call(
    backend: CloudBackend, settings_provider: Callable[[], CloudApiSettings]
) -> Response:
    request_id = _new_request_id(backend)
    record: CallRecord = {
        "at": None,
        "request_id": request_id,
        "action": request.headers.get("X-TC-Action", ""),
        "method": request.method,
        "secret_id": None,
        "params": None,
        "task_id": None,
        "ok": False,
        "code": None,
        "message": None,
    }
    error: CloudApiError | None = None
    held = Held()  # a creation's commit, when the server can hold the reply
    hold = hold_of(request.environ)
    try:
        settings = settings_provider()
        record["at"] = settings.now()
        fields = _process(backend, settings, record, held if hold else None)
    except CloudApiError as exc:
        error = exc
    except Exception:
        logger.exception("cloud API call %s (%s) failed", record["action"], request_id)
        error = errors.internal_error()
    if record["at"] is None:
        record["at"] = time.time()
    if error is None:
        record["ok"] = True
        body: dict[str, Any] = {"Response": {**fields, "RequestId": request_id}}
    else:
        record["code"], record["message"] = error.code, error.message
        body = {
            "Response": {
                "Error": {"Code": error.code, "Message": error.message},
                "RequestId": request_id,
            }
        }
    committing = held.future
    if hold is not None and committing is not None:
        # Logged once the task is committed: a refused call runs again and logs its own record.
        committing.add_done_callback(lambda done: _log_if_stored(done, backend, record))
        hold(committing)
    else:
        _log_call(backend, record)
    return _json_response(body)


def _log_if_stored(done: Future[None], backend: CloudBackend, record: CallRecord) -> None:
    if not done.cancelled() and done.exception() is None:
        _log_call(backend, record)


def _process(
    backend: CloudBackend,
    settings: CloudApiSettings,
    record: CallRecord,
    hold: Callable[[Future[None]], None] | None = None,
) -> dict[str, Any]:
    body = _read_body(settings.max_body_bytes)
    call = incoming.read_call(
        request.method, dict(request.headers.items()), request.query_string, body
    )
    record["action"] = call.action
    action = call.check_common(strict=settings.fidelity == "strict")
    if settings.verify_signature:
        secret_id: str | None = _verify(call, settings)
    else:
        secret_id = _claimed_secret_id(call)
    record["secret_id"] = short_id(secret_id) if secret_id else None

    raw = call.action_params()
    record["params"] = raw
    typed = params.validate_params(action, raw, from_query=call.params_from_query)
    record["params"] = typed
    if action == "DescribeOfflineRecord":
        record["task_id"] = typed["TaskId"]
    fields = _call_backend(backend, action, typed, record["request_id"], hold)
    if action == "CreateOfflineRecord":
        record["task_id"] = fields["TaskId"]
    return fields if settings.fidelity != "strict" else {}


def _verify(call: incoming.IncomingCall, settings: CloudApiSettings) -> str:
    """The caller's SecretId once its signature (TC3 or v1) checks out."""
    leeway = SigningLeeway.for_request(call.host, settings.fidelity)
    if call.style == "v1":
        return sign_v1.verify_params(
            method=call.method,
            host=call.host,
            path=request.path,
            params=call.form,
            secrets=settings.secrets,
            now=settings.now(),
            max_skew_s=settings.max_skew_s,
            leeway=leeway,
        )
    return tc3.verify_request(
        method=call.method,
        query_string=call.query_string,
        headers=call.headers,
        body=call.body,
        secrets=settings.secrets,
        now=settings.now(),
        max_skew_s=settings.max_skew_s,
        path=request.path,
        leeway=leeway,
    )


def _read_body(limit: int) -> bytes:
    size = request.content_length
    if size is not None and size > limit:
        raise errors.request_size_limit_exceeded(size, limit)
    try:
        body = request_body(request)
    except RequestEntityTooLarge:
        raise errors.request_size_limit_exceeded(size, limit) from None
    if len(body) > limit:
        raise errors.request_size_limit_exceeded(len(body), limit)
    return body


def _claimed_secret_id(call: incoming.IncomingCall) -> str | None:
    # Signature checks are off, but the log should still say who called.
    if call.style == "v1":
        return call.form.get("SecretId") or None
    try:
        return tc3.parse_authorization(call.headers.get("authorization")).secret_id
    except CloudApiError:
        return None


def _call_backend(
    backend: CloudBackend,
    action: str,
    typed: dict[str, Any],
    request_id: str,
    hold: Callable[[Future[None]], None] | None = None,
) -> dict[str, Any]:
    sdk_app_id: int = typed["SdkAppId"]
    if action == "CreateOfflineRecord":
        task_id = backend.create_offline_record(
            sdk_app_id=sdk_app_id,
            room_id=typed["RoomId"],
            group_id=typed.get("GroupId") or None,
            mix_stream=typed.get("MixStream"),
            whiteboard=typed.get("Whiteboard"),
            request_id=request_id,
            waited_s=waited_s(request.environ),
            **({"hold": hold} if hold is not None else {}),
        )
        return {"TaskId": task_id}
    if action == "DescribeOfflineRecord":
        task = backend.describe_offline_record(sdk_app_id=sdk_app_id, task_id=typed["TaskId"])
        return describe_fields(task)
    if action == "SetOfflineRecordCallback":
        backend.set_offline_record_callback(sdk_app_id=sdk_app_id, callback=typed["Callback"])
        return {}
    # Never CallbackKey: the real API documented only RequestId here, the key is a secret,
    # and a masked value in that field could pass for the key itself.
    settings = backend.describe_offline_record_callback(sdk_app_id=sdk_app_id)
    return {"Callback": mask_url(settings.get("Callback")) or ""}


def describe_fields(task: dict[str, Any]) -> dict[str, Any]:
    """The extra DescribeOfflineRecord fields: state always, the result once finished.

    A task that finished with `Error` is answered with that error as the API error, in
    both fidelities: FailedOperation.Transcode/.Record are documented codes of this action,
    and the SDK raises on any `Response.Error`, so it could not be returned as data anyway.
    """
    failure = task.get("Error")
    if task.get("Status") == "finished" and failure:
        if not isinstance(failure, dict):
            failure = {"Message": str(failure)}
        raise CloudApiError(
            str(failure.get("Message") or "The recording task failed."),
            code=str(failure.get("Code") or "FailedOperation"),
        )
    names: tuple[str, ...] = _DESCRIBE_FIELDS
    if task.get("Status") == "finished":
        names += _FINISHED_FIELDS
    return {name: task[name] for name in names if task.get(name) is not None}


def _new_request_id(backend: CloudBackend) -> str:
    try:
        return backend.new_request_id()
    except Exception:
        logger.exception("backend.new_request_id failed; using a random uuid")
        return str(uuid.uuid4())


def _log_call(backend: CloudBackend, record: CallRecord) -> None:
    params = record["params"]
    if isinstance(params, dict) and isinstance(params.get("Callback"), str):
        record["params"] = {**params, "Callback": mask_url(params["Callback"])}
    # A failing log store must not turn a good reply into an error.
    try:
        backend.log_cloud_call(record)
    except Exception:
        logger.exception("backend.log_cloud_call failed for %s", record["request_id"])


def _json_response(body: dict[str, Any], status: int = 200) -> Response:
    data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    response = Response(data, status=status, content_type=JSON_CONTENT_TYPE)
    # Werkzeug keeps an explicit content_type verbatim; re-assert it in case that ever changes.
    response.headers["Content-Type"] = JSON_CONTENT_TYPE
    return response
