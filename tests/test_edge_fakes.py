"""The edge test fakes checked against the wire reference's recorded shapes (section C), through the
real ``azure-iot-hub`` client where it can be used and raw HTTPS where the SDK hides the wire."""

from __future__ import annotations

import base64
import json
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import pytest
from conftest import self_signed_certificate
from edge_fakes.device import _joined, _schema_problem
from edge_fakes.hub import device_token, sas_signature
from edge_fakes.hub_http import RunningHub, serve
from edge_fakes.query import parse_condition, parse_query

from mlctl.edge.hub import Hub
from mlctl.errors import ConflictError, NotFoundError, TargetError

AGENT = {"$edgeAgent": {"properties.desired": {"schemaVersion": "1.1", "modules": {"m": {"image": "a"}}}}}


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningHub]:
    cert, key = self_signed_certificate(tmp_path_factory.mktemp("tls"))
    with serve(cert, key) as running:
        yield running


@pytest.fixture
def hub(fake: RunningHub) -> Iterator[Hub]:
    yield Hub(fake.connection_string, ca_file=str(fake.ca_file))
    with fake.state.lock:
        fake.state.devices.clear()
        fake.state.configs.clear()


def _raw(fake: RunningHub, method: str, path: str, *, auth: str | None = None, body: Any = None, **headers: str) -> Any:
    """(status, headers, JSON body) of a raw call, signed like the SDK unless ``auth`` is given."""
    if auth is None:
        sr = quote_plus(fake.host)
        se = "9999999999"
        key = fake.connection_string.split("SharedAccessKey=")[1]
        auth = f"SharedAccessSignature sr={sr}&sig={quote_plus(sas_signature(key, sr, se))}&se={se}&skn=iothubowner"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        f"https://{fake.host}{path}", data=data, method=method, headers={"Authorization": auth, **headers}
    )
    context = ssl.create_default_context(cafile=str(fake.ca_file))
    try:
        with urllib.request.urlopen(request, context=context, timeout=10) as response:
            raw = response.read()
            return response.status, dict(response.headers), json.loads(raw) if raw else None
    except urllib.error.HTTPError as error:
        with error:
            return error.code, dict(error.headers), json.loads(error.read() or b"null")


def test_devices_follow_the_recorded_statuses_and_error_bodies(hub: Hub, fake: RunningHub) -> None:
    device = hub.create_edge_device("d1")
    assert device["capabilities"] == {"iotEdge": True} and device["connectionState"] == "Disconnected"
    with pytest.raises(ConflictError, match="409 DeviceAlreadyExists"):
        hub.create_edge_device("d1")
    status, headers, body = _raw(fake, "GET", "/devices/nope?api-version=2021-04-12")
    assert status == 404 and headers["iothub-errorcode"] == "DeviceNotFound"
    assert body["Message"] == "ErrorCode:DeviceNotFound;nope" and body["ExceptionMessage"].startswith("Tracking ID:")
    assert _raw(fake, "GET", "/devices/d1?api-version=2020-01-01")[0] == 400
    assert _raw(fake, "DELETE", "/devices/d1?api-version=2021-04-12")[0] == 412  # If-Match is required
    assert _raw(fake, "DELETE", "/devices/d1?api-version=2021-04-12", **{"If-Match": '"*"'})[0] == 204
    assert hub.delete_device("d1") is False
    with pytest.raises(NotFoundError, match="404 DeviceNotFound"):
        hub.agent_twin("d1")


def test_the_sas_token_is_verified(fake: RunningHub) -> None:
    sr, se = quote_plus(fake.host), "9999999999"
    wrong_key = base64.b64encode(b"x" * 32).decode()
    forged = f"SharedAccessSignature sr={sr}&sig={quote_plus(sas_signature(wrong_key, sr, se))}&se={se}&skn=iothubowner"
    assert _raw(fake, "GET", "/devices?api-version=2021-04-12", auth=forged)[0] == 401
    key = fake.connection_string.split("SharedAccessKey=")[1]
    expired = f"SharedAccessSignature sr={sr}&sig={quote_plus(sas_signature(key, sr, '1'))}&se=1&skn=iothubowner"
    assert _raw(fake, "GET", "/devices?api-version=2021-04-12", auth=expired)[0] == 401
    assert _raw(fake, "GET", "/devices?api-version=2021-04-12")[0] == 200
    with pytest.raises(TargetError, match="refused the credentials"):
        Hub(fake.connection_string.replace(key, wrong_key), ca_file=str(fake.ca_file)).devices()
    for other_sr in (quote_plus("other-hub.azure-devices.net"), quote_plus(f"{fake.host}/devices/d1")):
        signed = f"SharedAccessSignature sr={other_sr}&sig={quote_plus(sas_signature(key, other_sr, se))}&se={se}"
        assert _raw(fake, "GET", "/devices?api-version=2021-04-12", auth=f"{signed}&skn=iothubowner")[0] == 401
    good = f"SharedAccessSignature sr={sr}&sig={quote_plus(sas_signature(key, sr, se))}&se={se}"
    assert _raw(fake, "GET", "/devices?api-version=2021-04-12", auth=f"{good}&skn=registryRead")[0] == 401
    assert _raw(fake, "GET", "/devices?api-version=2021-04-12", auth=f"Bearer {key}")[0] == 401


def test_if_match_rules_of_devices_twins_and_configurations(hub: Hub, fake: RunningHub) -> None:
    """Devices: the SDK quotes the etag (``"*"`` when None); configurations: sent as given (``*``
    bare on delete); a stale etag is 412 PreconditionFailed, which mlctl reports as a conflict."""
    from azure.iot.hub import IoTHubConfigurationManager, IoTHubRegistryManager

    device = hub.create_edge_device("d3")
    keys = device["authentication"]["symmetricKey"]
    registry = IoTHubRegistryManager.from_connection_string(fake.connection_string)
    registry.protocol.config.connection.verify = str(fake.ca_file)
    update = registry.update_device_with_sas
    assert update("d3", device["etag"], keys["primaryKey"], keys["secondaryKey"], "disabled", iot_edge=True)
    assert hub.device("d3")["status"] == "disabled"
    body = {"deviceId": "d3", "status": "enabled"}
    stale = _raw(fake, "PUT", "/devices/d3?api-version=2021-04-12", body=body, **{"If-Match": f'"{device["etag"]}"'})
    assert stale[0] == 412 and stale[1]["iothub-errorcode"] == "PreconditionFailed"
    twin_etag = hub.twin("d3")["etag"]
    patch = {"tags": {"ring": "a"}}
    assert _raw(fake, "PATCH", "/twins/d3?api-version=2021-04-12", body=patch, **{"If-Match": '"nope"'})[0] == 412
    assert _raw(fake, "PATCH", "/twins/d3?api-version=2021-04-12", body=patch, **{"If-Match": twin_etag})[0] == 200
    assert hub.twin("d3")["tags"] == {"ring": "a"}

    hub.create_configuration({"id": "cfg", "content": {"modulesContent": AGENT}, "targetCondition": "tags.ring='a'"})
    configs = IoTHubConfigurationManager.from_connection_string(fake.connection_string)
    configs.protocol.config.connection.verify = str(fake.ca_file)
    current = configs.get_configuration("cfg")
    current.priority = 7
    assert configs.update_configuration(current, current.etag).priority == 7  # If-Match: <etag>, unquoted
    with pytest.raises(ConflictError, match="412 PreconditionFailed"):
        Hub(fake.connection_string, ca_file=str(fake.ca_file))._call(
            lambda: configs.update_configuration(current, current.etag), "deployment cfg"
        )  # the etag changed with the update
    assert _raw(fake, "DELETE", "/configurations/cfg?api-version=2021-04-12")[0] == 412  # If-Match is required
    assert _raw(fake, "DELETE", "/configurations/cfg?api-version=2021-04-12", **{"If-Match": "*"})[0] == 204


def test_configurations_are_immutable_prioritised_layered_and_counted(hub: Hub, fake: RunningHub) -> None:
    for name, tags in (("a", {"fleet": "x", "ring": "canary"}), ("b", {"fleet": "x"}), ("c", {"fleet": "y"})):
        hub.create_edge_device(name)
        hub.set_tags(name, tags)
    hub.apply_content("c", {"modulesContent": AGENT})
    base = {"content": {"modulesContent": AGENT}, "targetCondition": "tags.fleet='x'", "schemaVersion": "1.0"}
    hub.create_configuration({**base, "id": "low", "priority": 1})
    newer = {"$edgeAgent": {"properties.desired": {"schemaVersion": "1.1", "modules": {"m": {"image": "b"}}}}}
    hub.create_configuration({**base, "id": "high", "priority": 5, "content": {"modulesContent": newer}})
    layer = {"$edgeAgent": {"properties.desired.modules.extra": {"image": "e"}}}
    hub.create_configuration(
        {
            **base,
            "id": "layer",
            "priority": 9,
            "content": {"modulesContent": layer},
            "targetCondition": "tags.fleet='x' AND tags.ring='canary'",
            "metrics": {"queries": {"canaries": "SELECT deviceId FROM devices WHERE tags.ring='canary'"}},
        }
    )
    desired = {d: hub.agent_twin(d)["properties"]["desired"]["modules"] for d in ("a", "b", "c")}
    assert desired == {
        "a": {"m": {"image": "b"}, "extra": {"image": "e"}},
        "b": {"m": {"image": "b"}},
        "c": {"m": {"image": "a"}},
    }
    counts = {c: hub.configuration(c) for c in ("low", "high", "layer")}
    assert {c: v["systemMetrics"]["results"] for c, v in counts.items()} == {
        "low": {"targetedCount": 2, "appliedCount": 0},
        "high": {"targetedCount": 2, "appliedCount": 2},
        "layer": {"targetedCount": 1, "appliedCount": 1},
    }
    assert counts["layer"]["metrics"]["results"] == {"canaries": 1}
    status, _, _ = _raw(
        fake,
        "PUT",
        "/configurations/high?api-version=2021-04-12",
        body={"id": "high", "content": {"modulesContent": AGENT}, "priority": 6},
        **{"If-Match": "*", "Content-Type": "application/json"},
    )
    assert status == 400  # content is immutable
    with pytest.raises(ConflictError, match="409"):
        hub.create_configuration({**base, "id": "low", "priority": 1})
    assert hub.delete_configuration("high") is True and hub.delete_configuration("high") is False
    assert hub.agent_twin("b")["properties"]["desired"]["modules"] == {"m": {"image": "a"}}  # "low" wins now


def test_the_device_side_door_needs_the_device_key_and_reports_land_on_the_module_twin(
    hub: Hub, fake: RunningHub
) -> None:
    device = hub.create_edge_device("d2")
    key = device["authentication"]["symmetricKey"]["primaryKey"]
    path = "/_device/d2/twin/%24edgeAgent"
    assert _raw(fake, "GET", path, auth=device_token(fake.host, "d2", base64.b64encode(b"k" * 32).decode()))[0] == 401
    hub.apply_content("d2", {"modulesContent": AGENT})
    status, _, twin = _raw(fake, "GET", path, auth=device_token(fake.host, "d2", key))
    assert status == 200 and twin["content"] == AGENT and twin["desired"]["$version"] == 2
    reported = {"lastDesiredVersion": 2, "lastDesiredStatus": {"code": 200, "description": ""}}
    assert _raw(fake, "PATCH", f"{path}/reported", auth=device_token(fake.host, "d2", key), body=reported)[0] == 200
    twin = hub.agent_twin("d2")
    assert twin["properties"]["reported"]["lastDesiredStatus"]["code"] == 200
    assert hub.device("d2")["connectionState"] == "Connected"


def test_the_query_subset_and_the_agents_rules() -> None:
    row: dict[str, Any] = {
        "deviceId": "d1",
        "tags": {"env": "test", "n": 2},
        "configurations": {"x-v1": {"status": "Applied"}},
    }
    assert parse_condition("tags.env='test' AND (deviceId='d2' OR tags.n >= 2)")(row)
    assert not parse_condition("NOT tags.env='test' OR tags.missing='x'")(row)
    collection, predicate = parse_query("SELECT deviceId FROM devices WHERE configurations.[[x-v1]].status='Applied'")
    assert collection == "devices" and predicate(row)
    assert _schema_problem({"schemaVersion": "1.2"}) == {
        "code": 412,
        "description": "Desired properties schema version 1.2 is not supported",
    }
    assert _schema_problem({"schemaVersion": "1.1"}) is None
    assert _joined({"image": "x", "createOptions": '{"a":', "createOptions01": "1}"}) == '{"a":1}'
    with pytest.raises(ValueError, match="out of order"):
        _joined({"createOptions": "{", "createOptions2": "}"})


def test_missing_ca_is_a_tls_error(fake: RunningHub, tmp_path: Path) -> None:
    with pytest.raises(TargetError, match="TLS certificate is not trusted"):
        Hub(fake.connection_string).devices()
