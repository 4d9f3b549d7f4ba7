"""Cloud API (API 3.0) error classes, each carrying its Tencent wire code for `Response.Error`."""

from __future__ import annotations

from emulator.core.redact import mask_url


class CloudApiError(Exception):
    """An error rendered as `{"Response": {"Error": {"Code", "Message"}, "RequestId"}}`.

    Subclasses fix `code`; the core may also raise any other documented code directly,
    e.g. `CloudApiError("...", code="UnauthorizedOperation.SdkAppId")`.
    """

    code: str = "InternalError"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, message={self.message!r})"


class SignatureFailure(CloudApiError):
    code = "AuthFailure.SignatureFailure"


class SignatureExpire(CloudApiError):
    code = "AuthFailure.SignatureExpire"


class SecretIdNotFound(CloudApiError):
    code = "AuthFailure.SecretIdNotFound"


class InvalidAuthorization(CloudApiError):
    code = "AuthFailure.InvalidAuthorization"


class InvalidAction(CloudApiError):
    code = "InvalidAction"


class NoSuchVersion(CloudApiError):
    code = "NoSuchVersion"


class MissingParameter(CloudApiError):
    code = "MissingParameter"


class UnknownParameter(CloudApiError):
    code = "UnknownParameter"


class InvalidParameter(CloudApiError):
    code = "InvalidParameter"


class BodyParameterTypeUnmatched(CloudApiError):
    code = "InvalidParameter.BodyParameterTypeUnmatched"


class InvalidParameterValue(CloudApiError):
    code = "InvalidParameterValue"


class TaskNotFound(CloudApiError):
    code = "InvalidParameter.TaskNotFound"


class CallbackAddressFormatError(CloudApiError):
    code = "InvalidParameter.CallbackAddressFormatError"


class TaskConcurrency(CloudApiError):
    code = "LimitExceeded.TaskConcurrency"


class RequestSizeLimitExceeded(CloudApiError):
    code = "RequestSizeLimitExceeded"


class InternalError(CloudApiError):
    code = "InternalError"


# Factories with the realistic messages; the parameter involved is always named.


def signature_failure(detail: str = "") -> SignatureFailure:
    suffix = f" ({detail})" if detail else ""
    return SignatureFailure(
        "The provided credentials could not be validated. "
        f"Please check your signature is correct{suffix}."
    )


def signature_expire(timestamp: int, server_time: int, max_skew_s: int) -> SignatureExpire:
    return SignatureExpire(
        f"Signature expired. Timestamp `{timestamp}` and server time `{server_time}` "
        f"cannot differ by more than {max_skew_s} seconds. "
        "Please ensure your current local time matches the standard time."
    )


def secret_id_not_found(secret_id: str) -> SecretIdNotFound:
    return SecretIdNotFound(
        f"The SecretId `{secret_id}` is not found, please ensure that your SecretId is correct."
    )


def invalid_authorization(detail: str) -> InvalidAuthorization:
    return InvalidAuthorization(f"Authorization header is invalid: {detail}.")


def invalid_action(action: str) -> InvalidAction:
    return InvalidAction(f"The requested action `{action}` does not exist for service `tiw`.")


def no_such_version(version: str) -> NoSuchVersion:
    return NoSuchVersion(
        f"The requested version `{version}` of service `tiw` does not exist; use `2019-09-19`."
    )


def missing_parameter(name: str) -> MissingParameter:
    return MissingParameter(f"The request is missing a required parameter `{name}`.")


def unknown_parameter(name: str) -> UnknownParameter:
    return UnknownParameter(f"The parameter `{name}` is not recognized.")


def invalid_parameter(detail: str) -> InvalidParameter:
    return InvalidParameter(detail)


def type_unmatched(name: str, expected: str, got: str) -> BodyParameterTypeUnmatched:
    return BodyParameterTypeUnmatched(
        f"The type of parameter `{name}` does not match: expected {expected}, got {got}."
    )


def invalid_value(name: str, value: object, reason: str) -> InvalidParameterValue:
    return InvalidParameterValue(
        f"The value `{value}` specified for parameter `{name}` is invalid: {reason}."
    )


def task_not_found(task_id: str) -> TaskNotFound:
    return TaskNotFound(f"The recording task `{task_id}` (parameter `TaskId`) does not exist.")


def callback_address_format_error(url: str, reason: str) -> CallbackAddressFormatError:
    return CallbackAddressFormatError(
        f"The callback address `{mask_url(url)}` (parameter `Callback`) is malformed: {reason}."
    )


def task_concurrency(room_id: int, task_id: str | None = None) -> TaskConcurrency:
    running = f" (task `{task_id}`)" if task_id else ""
    return TaskConcurrency(
        f"Room `{room_id}` already has an unfinished after-class recording task{running}; "
        "only one unfinished task per room is allowed."
    )


def request_size_limit_exceeded(size: int | None, limit: int) -> RequestSizeLimitExceeded:
    shown = f"{size} bytes" if size is not None else "the request body"
    return RequestSizeLimitExceeded(
        f"The request size ({shown}) exceeds the limit of {limit} bytes."
    )


def internal_error() -> InternalError:
    return InternalError("An internal error occurred; please retry later.")
