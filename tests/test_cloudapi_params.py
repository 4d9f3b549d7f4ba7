"""Parameter parsing and validation for the four OfflineRecord actions."""

from __future__ import annotations

from typing import Any

import pytest

from emulator.cloudapi import errors
from emulator.cloudapi.params import ACTIONS, parse_query, validate_params

CREATE_JSON = {
    "SdkAppId": 1400000001,
    "RoomId": 8000,
    "GroupId": "8000",
    "MixStream": {"Enabled": True, "ModelId": 1, "DisableAudio": False, "TeacherId": "t1"},
    "Whiteboard": {"Width": 1280, "Height": 960, "InitParam": '{"ratio":"4:3"}'},
}


def create(**changes: Any) -> dict[str, Any]:
    return {**CREATE_JSON, **changes}


def test_actions() -> None:
    expected = {
        "CreateOfflineRecord",
        "DescribeOfflineRecord",
        "SetOfflineRecordCallback",
        "DescribeOfflineRecordCallback",
    }
    assert expected == ACTIONS


# --- parse_query ------------------------------------------------------------------------------


def test_parse_query_official_example() -> None:
    query = (
        "SdkAppId=1400000001&RoomId=8000&GroupId=8000&MixStream.Enabled=true"
        "&MixStream.ModelId=1&Whiteboard.Width=1280&Whiteboard.Height=960"
    )
    assert parse_query(query) == {
        "SdkAppId": "1400000001",
        "RoomId": "8000",
        "GroupId": "8000",
        "MixStream": {"Enabled": "true", "ModelId": "1"},
        "Whiteboard": {"Width": "1280", "Height": "960"},
    }


def test_parse_query_lists_urlencoding_and_blank_values() -> None:
    query = "Name.1=b&Name.0=a&Obj.List.0.X=1&Callback=&Text=%E4%B8%AD+x%26y"
    assert parse_query(query) == {
        "Name": ["a", "b"],
        "Obj": {"List": [{"X": "1"}]},
        "Callback": "",
        "Text": "中 x&y",
    }


@pytest.mark.parametrize(
    ("query", "needle"),
    [
        ("RoomId=1&RoomId=2", "RoomId"),
        ("MixStream=1&MixStream.Enabled=True", "MixStream"),
        ("MixStream.Enabled=True&MixStream=1", "MixStream"),
        ("Name.0=a&Name.2=c", "Name"),
        ("MixStream..Enabled=True", "MixStream..Enabled"),
    ],
)
def test_parse_query_rejects_ambiguous_input(query: str, needle: str) -> None:
    with pytest.raises(errors.InvalidParameter, match=needle.replace(".", r"\.")):
        parse_query(query)


# --- validate_params: JSON bodies ---------------------------------------------------------------


def test_create_json_is_returned_typed() -> None:
    assert validate_params("CreateOfflineRecord", CREATE_JSON, from_query=False) == CREATE_JSON


def test_only_given_fields_are_returned_and_null_is_absent() -> None:
    typed = validate_params(
        "CreateOfflineRecord",
        {"SdkAppId": 1, "RoomId": 2, "GroupId": None, "MixStream": None},
        from_query=False,
    )
    assert typed == {"SdkAppId": 1, "RoomId": 2}


@pytest.mark.parametrize(
    ("params", "path", "expected"),
    [
        (create(RoomId="8000"), "RoomId", "Integer"),
        (create(RoomId=True), "RoomId", "Integer"),
        (create(RoomId=8000.0), "RoomId", "Integer"),
        (create(SdkAppId=[1]), "SdkAppId", "Integer"),
        (create(GroupId=8000), "GroupId", "String"),
        (create(MixStream={"Enabled": True, "ModelId": True}), "MixStream.ModelId", "Integer"),
        (create(MixStream={"Enabled": "true", "ModelId": 1}), "MixStream.Enabled", "Boolean"),
        (create(MixStream={"Enabled": 1, "ModelId": 1}), "MixStream.Enabled", "Boolean"),
        (create(MixStream="on"), "MixStream", "Object"),
        (create(Whiteboard={"Width": "1280"}), "Whiteboard.Width", "Integer"),
    ],
)
def test_json_type_mismatch_names_the_field(
    params: dict[str, Any], path: str, expected: str
) -> None:
    with pytest.raises(errors.BodyParameterTypeUnmatched) as info:
        validate_params("CreateOfflineRecord", params, from_query=False)
    assert info.value.code == "InvalidParameter.BodyParameterTypeUnmatched"
    assert f"`{path}`" in info.value.message
    assert f"expected {expected}" in info.value.message


@pytest.mark.parametrize(
    ("action", "params", "missing"),
    [
        ("CreateOfflineRecord", {"SdkAppId": 1}, "RoomId"),
        ("CreateOfflineRecord", {"RoomId": 1}, "SdkAppId"),
        ("CreateOfflineRecord", create(MixStream={"ModelId": 1}), "MixStream.Enabled"),
        ("CreateOfflineRecord", create(MixStream={"Enabled": True}), "MixStream.ModelId"),
        ("DescribeOfflineRecord", {"SdkAppId": 1}, "TaskId"),
        ("SetOfflineRecordCallback", {"SdkAppId": 1}, "Callback"),
        ("DescribeOfflineRecordCallback", {}, "SdkAppId"),
    ],
)
def test_missing_parameter_is_named(action: str, params: dict[str, Any], missing: str) -> None:
    with pytest.raises(errors.MissingParameter, match=f"`{missing}`"):
        validate_params(action, params, from_query=False)


def test_model_id_is_optional_when_mixing_is_off() -> None:
    typed = validate_params(
        "CreateOfflineRecord", create(MixStream={"Enabled": False}), from_query=False
    )
    assert typed["MixStream"] == {"Enabled": False}


@pytest.mark.parametrize(
    ("params", "name"),
    [
        (create(RoomID=1), "RoomID"),
        (create(MixStream={"Enabled": True, "ModelId": 1, "Layout": 2}), "MixStream.Layout"),
        (create(Whiteboard={"Ratio": "4:3"}), "Whiteboard.Ratio"),
    ],
)
def test_unknown_parameter_is_named(params: dict[str, Any], name: str) -> None:
    with pytest.raises(errors.UnknownParameter, match=f"`{name}`"):
        validate_params("CreateOfflineRecord", params, from_query=False)


@pytest.mark.parametrize(
    ("params", "name"),
    [
        (create(RoomId=0), "RoomId"),
        (create(RoomId=4294967296), "RoomId"),
        (create(SdkAppId=0), "SdkAppId"),
        (create(SdkAppId=-5), "SdkAppId"),
        (create(MixStream={"Enabled": True, "ModelId": 3}), "MixStream.ModelId"),
        (create(Whiteboard={"Width": 1}), "Whiteboard.Width"),
        (create(Whiteboard={"Height": 0}), "Whiteboard.Height"),
        (create(MixStream={"Enabled": True, "Custom": {"Canvas": {}}}), "MixStream.Custom"),
    ],
)
def test_out_of_range_is_invalid_value(params: dict[str, Any], name: str) -> None:
    with pytest.raises(errors.InvalidParameterValue, match=f"`{name}`"):
        validate_params("CreateOfflineRecord", params, from_query=False)


def test_room_id_bounds_are_inclusive() -> None:
    for room in (1, 4294967295):
        assert validate_params("CreateOfflineRecord", create(RoomId=room), from_query=False)


def test_custom_layout_is_refused_with_a_hint() -> None:
    with pytest.raises(errors.InvalidParameterValue, match="not supported for offline recording"):
        validate_params(
            "CreateOfflineRecord",
            create(MixStream={"Enabled": True, "ModelId": 1, "Custom": {}}),
            from_query=False,
        )


def test_unknown_action() -> None:
    with pytest.raises(errors.InvalidAction, match="StartOnlineRecord"):
        validate_params("StartOnlineRecord", {}, from_query=False)


def test_non_object_params() -> None:
    with pytest.raises(errors.InvalidParameter):
        validate_params("DescribeOfflineRecordCallback", [1], from_query=False)  # type: ignore[arg-type]


# --- validate_params: query strings ----------------------------------------------------------


def test_query_strings_are_coerced() -> None:
    raw = parse_query(
        "SdkAppId=1400000001&RoomId=8000&MixStream.Enabled=True&MixStream.DisableAudio=false"
        "&MixStream.ModelId=2&Whiteboard.Width=1280"
    )
    assert validate_params("CreateOfflineRecord", raw, from_query=True) == {
        "SdkAppId": 1400000001,
        "RoomId": 8000,
        "MixStream": {"Enabled": True, "DisableAudio": False, "ModelId": 2},
        "Whiteboard": {"Width": 1280},
    }


@pytest.mark.parametrize("text", ["True", "true", "False", "false"])
def test_query_booleans_accept_python_and_json_spelling(text: str) -> None:
    raw = parse_query(f"SdkAppId=1&RoomId=2&MixStream.Enabled={text}&MixStream.ModelId=1")
    typed = validate_params("CreateOfflineRecord", raw, from_query=True)
    assert typed["MixStream"]["Enabled"] is (text.lower() == "true")


@pytest.mark.parametrize(
    ("query", "path"),
    [
        ("SdkAppId=abc&RoomId=1", "SdkAppId"),
        ("SdkAppId=1&RoomId=", "RoomId"),
        ("SdkAppId=1&RoomId=1.5", "RoomId"),
        ("SdkAppId=1&RoomId=1&MixStream.Enabled=yes&MixStream.ModelId=1", "MixStream.Enabled"),
        ("SdkAppId=1&RoomId=1&MixStream=on", "MixStream"),
        ("SdkAppId=1&RoomId=1&GroupId.0=x", "GroupId"),
    ],
)
def test_query_type_mismatch(query: str, path: str) -> None:
    with pytest.raises(errors.BodyParameterTypeUnmatched, match=f"`{path}`"):
        validate_params("CreateOfflineRecord", parse_query(query), from_query=True)


def test_query_range_still_applies() -> None:
    with pytest.raises(errors.InvalidParameterValue, match="RoomId"):
        validate_params(
            "CreateOfflineRecord", parse_query("SdkAppId=1&RoomId=4294967296"), from_query=True
        )


# --- SetOfflineRecordCallback -----------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "",
        "http://127.0.0.1:8080/tiw/callback",
        "https://example.com/offline/callback?x=1",
        "HTTPS://EXAMPLE.COM/cb",
        "http://[::1]:9000/cb",
    ],
)
def test_good_callback_addresses(url: str) -> None:
    typed = validate_params(
        "SetOfflineRecordCallback", {"SdkAppId": 1, "Callback": url}, from_query=False
    )
    assert typed["Callback"] == url


@pytest.mark.parametrize(
    "url",
    [
        "example.com/callback",
        "ftp://example.com/cb",
        "http://",
        "https:///path-only",
        "http://example.com:99999/cb",
        "http://example.com:port/cb",
        "http://exa mple.com/cb",
        "http://[::1/cb",
    ],
)
def test_bad_callback_addresses(url: str) -> None:
    with pytest.raises(errors.CallbackAddressFormatError) as info:
        validate_params(
            "SetOfflineRecordCallback", {"SdkAppId": 1, "Callback": url}, from_query=False
        )
    assert info.value.code == "InvalidParameter.CallbackAddressFormatError"
    assert "`Callback`" in info.value.message
