"""The IoT Hub service API through ``azure-iot-hub`` (2.7, REST api-version 2021-04-12).

``azure-iot-hub`` is imported inside ``Hub`` only, so ``mlctl --help`` never loads it. It raises
``msrest.exceptions.HttpOperationError`` for every refused call without parsing the body; ``Hub``
reads ``ex.response`` (status, ``iothub-errorcode`` header, ``Message``) and raises the mlctl
error of that case: 404 -> NotFoundError, 409/412 -> ConflictError, others -> TargetError. The
connection string comes only from a named target of kind ``iot-edge`` (an environment variable or
a file) and appears in no message.
"""

from __future__ import annotations

import base64
import os
import re
import secrets
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from mlctl.errors import ConflictError, NotFoundError, TargetError

KIND = "iot-edge"
OPTIONS: dict[str, str] = {
    "connection_string_env": "environment variable holding the hub's connection string",
    "connection_string_file": "file holding the hub's connection string",
    "ca_file": "PEM bundle the hub's TLS certificate is checked against (default: the system's, or REQUESTS_CA_BUNDLE)",
    # registry_credentials given as registry_resource (an ACR read through ARM, as the aci target does)
    "subscription_id": "Azure subscription of specs' registry_resource registries (AZURE_SUBSCRIPTION_ID overrides)",
    "base_url": "Azure Resource Manager endpoint for registry_resource (default https://management.azure.com)",
    "ca_bundle": "PEM file of CAs to trust for the ARM endpoint (default: the system's)",
}
T = TypeVar("T")
_CODE = re.compile(r"ErrorCode:(\w+)")


def check_options(options: Mapping[str, str]) -> None:
    """Refuse unknown options, and anything but exactly one connection string source.

    Raises:
        TargetError: with the options this kind takes.
    """
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise TargetError(f"target kind {KIND!r} has no option {unknown[0]!r}", hint=f"options: {', '.join(OPTIONS)}")
    sources = [k for k in ("connection_string_env", "connection_string_file") if k in options]
    if len(sources) != 1:
        raise TargetError(
            f"a target of kind {KIND!r} needs exactly one of connection_string_env and connection_string_file",
            hint="e.g. `mlctl target add hub1 --kind iot-edge --option connection_string_env=IOTHUB_CONNECTION_STRING`",
        )


def target_options(target: str) -> Mapping[str, str]:
    """The options of configured target ``target`` (kind ``iot-edge``).

    Raises:
        TargetError: no such target, or another kind.
    """
    from mlctl import config

    targets = config.load().targets
    if target not in targets or targets[target].kind != KIND:
        raise TargetError(
            f"{target!r} is not a configured target of kind {KIND}",
            hint=f"add it: `mlctl target add {target} --kind {KIND} --option connection_string_env=VAR`",
        )
    return targets[target].options


def connect(target: str) -> Hub:
    """The hub of configured target ``target`` (kind ``iot-edge``).

    Raises:
        TargetError: no such target, another kind, or its connection string is missing or malformed.
    """
    options = target_options(target)
    return Hub(_read_connection_string(target, options), ca_file=options.get("ca_file"))


def _read_connection_string(target: str, options: Mapping[str, str]) -> str:
    if "connection_string_env" in options:
        value = os.environ.get(options["connection_string_env"], "").strip()
        where = f"environment variable {options['connection_string_env']}"
    else:
        try:
            value = Path(options["connection_string_file"]).read_text(encoding="utf-8").strip()
        except (OSError, KeyError) as exc:
            raise TargetError(
                f"target {target}: cannot read its connection string file: {getattr(exc, 'strerror', exc)}",
                hint="check the target's connection_string_file (`mlctl target show`)",
            ) from None
        where = f"file {options['connection_string_file']}"
    fields = dict(part.split("=", 1) for part in value.split(";") if "=" in part)
    if not {"HostName", "SharedAccessKeyName", "SharedAccessKey"} <= set(fields):
        raise TargetError(
            f"target {target}: the {where} does not hold an IoT Hub connection string",
            hint="it must be HostName=...;SharedAccessKeyName=...;SharedAccessKey=... "
            "(`az iot hub connection-string show`)",
        )
    return value


class Hub:
    """One IoT Hub (service side). Methods return wire-shaped dicts (camelCase, as in reference C.4).

    Raises (every method): NotFoundError (404), ConflictError (409, 412), TargetError (other
    refusals, unreachable hub, TLS failure).
    """

    def __init__(self, connection_string: str, *, ca_file: str | None = None) -> None:
        from azure.iot.hub import IoTHubConfigurationManager, IoTHubRegistryManager

        self.host = dict(p.split("=", 1) for p in connection_string.split(";") if "=" in p)["HostName"]
        try:
            self._registry = IoTHubRegistryManager.from_connection_string(connection_string)
            self._configs = IoTHubConfigurationManager.from_connection_string(connection_string)
        except ValueError:  # binascii.Error included: the key is not base64
            raise TargetError(
                f"the connection string of IoT Hub {self.host} is malformed (its key is not base64)",
                hint="copy it again from `az iot hub connection-string show`",
            ) from None
        for manager in (self._registry, self._configs):
            if ca_file:
                manager.protocol.config.connection.verify = ca_file
            manager.protocol.config.retry_policy.retries = 1

    # -- devices --------------------------------------------------------------------------
    def create_edge_device(self, device_id: str) -> dict[str, Any]:
        """Register an IoT Edge device (``capabilities.iotEdge``) with new SAS keys (32 random bytes)."""
        keys = [base64.b64encode(secrets.token_bytes(32)).decode() for _ in range(2)]
        device = self._call(
            lambda: self._registry.create_device_with_sas(device_id, keys[0], keys[1], "enabled", iot_edge=True),
            f"device {device_id}",
        )
        return _wire(device)

    def device(self, device_id: str) -> dict[str, Any]:
        """The device identity (with its keys: never print it whole)."""
        return _wire(self._call(lambda: self._registry.get_device(device_id), f"device {device_id}"))

    def devices(self) -> list[dict[str, Any]]:
        """Every device identity."""
        return [_wire(d) for d in self._call(lambda: self._registry.get_devices(), "devices")]

    def delete_device(self, device_id: str) -> bool:
        """Delete a device; False when there was none."""
        try:
            self._call(lambda: self._registry.delete_device(device_id), f"device {device_id}")
        except NotFoundError:
            return False
        return True

    def twin(self, device_id: str) -> dict[str, Any]:
        """The device twin (tags, properties)."""
        return _wire(self._call(lambda: self._registry.get_twin(device_id), f"device {device_id}"))

    def set_tags(self, device_id: str, tags: Mapping[str, Any]) -> dict[str, Any]:
        """Merge ``tags`` into the device twin's tags (a value None removes the tag)."""
        from azure.iot.hub.models import Twin

        patch = Twin(tags=dict(tags))
        return _wire(self._call(lambda: self._registry.update_twin(device_id, patch), f"device {device_id}"))

    def agent_twin(self, device_id: str) -> dict[str, Any]:
        """The ``$edgeAgent`` module twin (desired ``$version``, reported runtime state)."""
        return _wire(self._call(lambda: self._registry.get_module_twin(device_id, "$edgeAgent"), f"device {device_id}"))

    def module_twin(self, device_id: str, module_id: str) -> dict[str, Any]:
        """A module's twin (GET ``/twins/{id}/modules/{module}``); NotFoundError when it has none."""
        what = f"module {module_id} of device {device_id}"
        return _wire(self._call(lambda: self._registry.get_module_twin(device_id, module_id), what))

    # -- deployments ------------------------------------------------------------------------
    def apply_content(self, device_id: str, content: Mapping[str, Any]) -> None:
        """Set one device's modules (``applyConfigurationContent``, as ``az iot edge set-modules``)."""
        from azure.iot.hub.models import ConfigurationContent

        body = ConfigurationContent(modules_content=dict(content["modulesContent"]))
        self._call(lambda: self._configs.apply_configuration_on_edge_device(device_id, body), f"device {device_id}")

    def create_configuration(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Create an at-scale deployment (a Configuration); its content is immutable afterwards."""
        from azure.iot.hub.models import Configuration

        config = Configuration.from_dict(dict(body))
        return _wire(self._call(lambda: self._configs.create_configuration(config), f"deployment {body['id']}"))

    def configuration(self, config_id: str) -> dict[str, Any]:
        """One deployment with its system and custom metrics."""
        return _wire(self._call(lambda: self._configs.get_configuration(config_id), f"deployment {config_id}"))

    def configurations(self) -> list[dict[str, Any]]:
        """Every deployment (configuration) of the hub."""
        return [_wire(c) for c in self._call(lambda: self._configs.get_configurations(), "deployments")]

    def delete_configuration(self, config_id: str) -> bool:
        """Delete a deployment; False when there was none."""
        try:
            self._call(lambda: self._configs.delete_configuration(config_id), f"deployment {config_id}")
        except NotFoundError:
            return False
        return True

    # -- direct methods -----------------------------------------------------------------------
    def invoke_module_method(
        self, device_id: str, module_id: str, method: str, payload: Any, *, timeout_s: int, connect_timeout_s: int = 0
    ) -> tuple[int, Any]:
        """Invoke direct method ``method`` of module ``module_id`` (``$edgeAgent`` for the IoT Edge
        built-in methods), as ``az iot hub invoke-module-method``: ``POST
        /twins/{id}/modules/{module}/methods`` with ``responseTimeoutInSeconds`` ``timeout_s``
        (5..300) and ``connectTimeoutInSeconds`` ``connect_timeout_s`` (0..300).

        Returns:
            (the status the module answered, its payload as JSON data); a status other than 200 is
            the module's own refusal, not raised here.

        Raises:
            TargetError: the device is not connected (404103 DeviceNotOnline).
            WaitTimeout: it did not answer within ``timeout_s`` (504101 GatewayTimeout).
            NotFoundError: no such device or module identity; others as every method.
        """
        from azure.iot.hub.models import CloudToDeviceMethod

        request = CloudToDeviceMethod(
            method_name=method,
            payload=payload,
            response_timeout_in_seconds=timeout_s,
            connect_timeout_in_seconds=connect_timeout_s,
        )
        self._registry.protocol.config.connection.timeout = timeout_s + connect_timeout_s + 30
        invoke = self._registry.invoke_device_module_method
        try:
            result = self._call(
                lambda: self._raising(lambda: invoke(device_id, module_id, request)), f"device {device_id}"
            )
        except _MethodRefused as refused:
            raise _method_error(refused.response, device_id, self.host, timeout_s) from None
        return int(result.status), result.payload

    @staticmethod
    def _raising(call: Callable[[], T]) -> T:
        """``call``, with a refusal of a direct method kept apart from other refusals."""
        from msrest.exceptions import HttpOperationError

        try:
            return call()
        except HttpOperationError as exc:
            if _error_code(exc.response) in _METHOD_CODES:
                raise _MethodRefused(exc.response) from None
            raise

    # -- errors -----------------------------------------------------------------------------
    def _call(self, call: Callable[[], T], what: str) -> T:
        from msrest.exceptions import ClientRequestError, HttpOperationError

        try:
            return call()
        except HttpOperationError as exc:
            raise _translate(exc.response, what, self.host) from None
        except ClientRequestError as exc:
            reason = "its TLS certificate is not trusted" if "SSL" in str(exc) else "it does not answer"
            raise TargetError(
                f"cannot reach the IoT Hub {self.host}: {reason}",
                hint="check the target's connection string and network; a private CA goes in its ca_file option",
            ) from None


def _translate(response: Any, what: str, host: str) -> Exception:
    status = getattr(response, "status_code", 0)
    text = getattr(response, "text", "") or ""
    found = _CODE.search(text)
    code = getattr(response, "headers", {}).get("iothub-errorcode") or (found.group(1) if found else "")
    detail = f"{status} {code}".strip()
    if status == 404:
        group = "deployment" if what.startswith("deployment") else "device"
        return NotFoundError(
            f"{what} does not exist in IoT Hub {host} ({detail})", hint=f"list them: `mlctl edge {group} list`"
        )
    if status in (409, 412):
        return ConflictError(
            f"{what}: refused by IoT Hub {host} ({detail})", hint="it exists already, or changed meanwhile"
        )
    if status in (401, 403):
        return TargetError(
            f"IoT Hub {host} refused the credentials ({detail})",
            hint="the target's connection string needs a policy with registry write and service connect rights",
        )
    return TargetError(
        f"{what}: IoT Hub {host} answered {detail}: {_message(text)}", hint="rerun with --debug for details"
    )


class _MethodRefused(Exception):
    def __init__(self, response: Any) -> None:
        super().__init__("direct method refused")
        self.response = response


_METHOD_CODES = {"DeviceNotOnline", "404103", "GatewayTimeout", "504101"}


def _error_code(response: Any) -> str:
    """``iothub-errorcode`` or, in the newer body (maybe JSON inside ``Message``), ``errorCode``."""
    import json

    header = str(getattr(response, "headers", {}).get("iothub-errorcode") or "")
    if header:
        return header
    try:
        body = json.loads(getattr(response, "text", "") or "")
        if isinstance(body, dict) and isinstance(body.get("Message"), str) and body["Message"].startswith("{"):
            body = json.loads(body["Message"])
    except ValueError:
        return ""
    return str(body.get("errorCode", "")) if isinstance(body, dict) else ""


def _method_error(response: Any, device_id: str, host: str, timeout_s: int) -> Exception:
    from mlctl.errors import WaitTimeout

    if _error_code(response) in ("GatewayTimeout", "504101"):
        return WaitTimeout(
            f"device {device_id} did not answer within {timeout_s}s (IoT Hub {host}: 504101 GatewayTimeout)",
            hint="its IoT Edge agent may be busy or restarting: retry with a larger --timeout",
        )
    return TargetError(
        f"device {device_id} is not connected to IoT Hub {host} (404103 DeviceNotOnline)",
        hint=f"start the IoT Edge runtime on the device (`sudo iotedge system status` there); "
        f"`mlctl edge device show {device_id}` shows its connection state; --connect-timeout waits for it",
    )


def _message(text: str) -> str:
    import json

    try:
        body = json.loads(text)
    except ValueError:
        return text[:200]
    return str(body.get("Message") or body.get("message") or text)[:200] if isinstance(body, dict) else text[:200]


def _wire(model: Any) -> dict[str, Any]:
    """A msrest model as its wire JSON (camelCase), read-only fields included."""
    return model.serialize(keep_readonly=True)  # type: ignore[no-any-return]


def device_connection_string(host: str, device: Mapping[str, Any]) -> str:
    """``HostName=...;DeviceId=...;SharedAccessKey=...`` of a device (its primary key): a secret."""
    key = device["authentication"]["symmetricKey"]["primaryKey"]
    return f"HostName={host};DeviceId={device['deviceId']};SharedAccessKey={key}"
