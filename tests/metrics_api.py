"""The test cluster's metrics APIs (test infrastructure, not part of mlctl): a small HTTPS server
on 127.0.0.1 serving the two aggregated APIs an HPA reads, registered with ``APIService`` objects
whose Service is an ``ExternalName`` naming 127.0.0.1 (the API server runs on the host and can
dial it; pods cannot): see scripts/k8s/README.md, "Serving a metrics API".

* ``metrics.k8s.io/v1beta1`` (what metrics-server serves): per pod and container, ``usage.cpu``
  (the rate of the kubelet's cumulative ``usageCoreNanoSeconds`` in ``/stats/summary`` between two
  of our samples (every ``SAMPLE_S``) ~``WINDOW_S`` apart, as metrics-server computes it) and ``usage.memory`` (working
  set); the kubelet is read with the API server's kubelet client certificate
  (``/tmp/k8s/pki/apiserver-kubelet-client.*``).
* ``custom.metrics.k8s.io/v1beta1`` (what prometheus-adapter serves): the Pods metric
  ``mlctl_requests_in_flight`` (any gauge of the pod's ``/metrics``, by name), scraped when asked
  from each pod's IP on its ``http`` container port (the CNI relays 5001/8080/8890 into the pod).

Run as ``python tests/metrics_api.py [--port N]``; the ``metrics_api`` fixture starts it (unless
one answers already), registers the APIServices, waits until both are ``Available``, and at the
end of the session unregisters them (an unavailable aggregated API would stall namespace
deletion cluster-wide) and stops the process it started, by PID.
"""

from __future__ import annotations

import argparse
import json
import re
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from collections import deque
from collections.abc import Iterator
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

ROOT = Path("/tmp/k8s")
KUBECONFIG = ROOT / "kubeconfig"
KUBELET = "https://127.0.0.1:10250/stats/summary"
CLIENT_CERT = (ROOT / "pki" / "apiserver-kubelet-client.crt", ROOT / "pki" / "apiserver-kubelet-client.key")
PORT = 6446  # fixed, so a later session re-serves what an interrupted one left registered
WINDOW_S = 5.0
SAMPLE_S = 2.0
SERVICE = ("kube-system", "mlctl-test-metrics")
GROUPS = ("metrics.k8s.io", "custom.metrics.k8s.io")
_PODS = re.compile(r"^/apis/metrics\.k8s\.io/v1beta1/namespaces/(?P<ns>[^/]+)/pods(?:/(?P<name>[^/]+))?$")
_CUSTOM = re.compile(
    r"^/apis/custom\.metrics\.k8s\.io/v1beta1/namespaces/(?P<ns>[^/]+)/pods/(?P<name>[^/]+)/(?P<metric>[^/]+)$"
)


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Samples:
    """The kubelet's per-container cumulative CPU and working set, sampled every ``SAMPLE_S``."""

    def __init__(self) -> None:
        self.context = ssl.create_default_context()
        self.context.check_hostname = False
        self.context.verify_mode = ssl.CERT_NONE  # the kubelet's self-signed serving certificate
        self.context.load_cert_chain(*map(str, CLIENT_CERT))
        self.history: dict[tuple[str, str, str], deque[tuple[float, int, int]]] = {}
        self.lock = threading.Lock()

    def run(self) -> None:
        """Sample forever (a daemon thread)."""
        while True:
            try:
                self.sample()
            except Exception as error:  # noqa: BLE001 - keep sampling; say why once per failure
                print(f"metrics-api: kubelet: {error!r}", file=sys.stderr, flush=True)
            time.sleep(SAMPLE_S)

    def sample(self) -> None:
        """One ``/stats/summary`` read into the history (entries older than 3 windows dropped)."""
        with urllib.request.urlopen(KUBELET, context=self.context, timeout=5) as answer:
            summary = json.load(answer)
        now = time.monotonic()
        with self.lock:
            for pod in summary.get("pods") or []:
                ref = pod["podRef"]
                for c in pod.get("containers") or []:
                    cpu = (c.get("cpu") or {}).get("usageCoreNanoSeconds")
                    if cpu is None:
                        continue
                    memory = (c.get("memory") or {}).get("workingSetBytes") or 0
                    key = (ref["namespace"], ref["name"], c["name"])
                    found = self.history.setdefault(key, deque())
                    found.append((now, int(cpu), int(memory)))
                    while found and found[0][0] < now - 3 * WINDOW_S:
                        found.popleft()

    def usage(self, namespace: str, pod: str) -> list[dict[str, Any]]:
        """``[{name, usage: {cpu, memory}}]`` of the pod's containers with two samples ~a window apart."""
        found = []
        with self.lock:
            for (ns, name, container), samples in self.history.items():
                if (ns, name) != (namespace, pod) or len(samples) < 2:
                    continue
                last = samples[-1]
                first = next((s for s in samples if s[0] >= last[0] - WINDOW_S), samples[0])
                if first is last:
                    first = samples[-2]
                rate = max(0, last[1] - first[1]) / (last[0] - first[0])
                found.append({"name": container, "usage": {"cpu": f"{int(rate)}n", "memory": f"{last[2] // 1024}Ki"}})
        return found


class Server:
    """The state behind the handler: the samples and an API client for pod look-ups."""

    def __init__(self, kubeconfig: Path) -> None:
        from kubernetes import client, config

        self.core = client.CoreV1Api(config.new_client_from_config(str(kubeconfig)))
        self.samples = Samples()
        threading.Thread(target=self.samples.run, daemon=True).start()

    def pods(self, namespace: str, name: str, selector: str | None) -> list[Any]:
        """Running pods of the namespace (one by name, or by label selector)."""
        if name not in ("", "*"):
            pods = [self.core.read_namespaced_pod(name, namespace, _request_timeout=5)]
        else:
            pods = self.core.list_namespaced_pod(namespace, label_selector=selector or "", _request_timeout=5).items
        return [p for p in pods if p.status.phase == "Running" and p.status.pod_ip]

    def pod_metrics(self, namespace: str, name: str, selector: str | None) -> list[dict[str, Any]]:
        """PodMetrics items (metrics.k8s.io/v1beta1) of pods with samples."""
        items = []
        for pod in self.pods(namespace, name, selector):
            containers = self.samples.usage(namespace, pod.metadata.name)
            if containers:
                meta = {"name": pod.metadata.name, "namespace": namespace, "labels": pod.metadata.labels or {},
                        "creationTimestamp": _now()}  # fmt: skip
                items.append({"metadata": meta, "timestamp": _now(), "window": f"{int(WINDOW_S)}s",
                              "containers": containers})  # fmt: skip
        return items

    def custom(self, namespace: str, name: str, metric: str, selector: str | None) -> list[dict[str, Any]]:
        """MetricValue items (custom.metrics.k8s.io/v1beta1): gauge ``metric`` of each pod's /metrics."""
        items = []
        for pod in self.pods(namespace, name, selector):
            value = scrape(pod, metric)
            if value is not None:
                items.append({
                    "describedObject": {"kind": "Pod", "namespace": namespace, "name": pod.metadata.name,
                                        "apiVersion": "/v1"},
                    "metricName": metric, "timestamp": _now(), "value": f"{round(value * 1000)}m",
                })  # fmt: skip
        return items


def scrape(pod: Any, metric: str) -> float | None:
    """The sum of ``metric``'s samples on the pod's ``/metrics`` (its ``http`` port), None when unreadable."""
    container = pod.spec.containers[0]
    port = next((p.container_port for p in container.ports or [] if p.name == "http"), None)
    if port is None:
        return None
    probe = container.readiness_probe
    scheme = (probe.http_get.scheme or "HTTP").lower() if probe and probe.http_get else "http"
    context = ssl._create_unverified_context() if scheme == "https" else None  # noqa: S323 - test certificates
    try:
        with urllib.request.urlopen(f"{scheme}://{pod.status.pod_ip}:{port}/metrics", timeout=2, context=context) as r:
            text = r.read().decode()
    except OSError:
        return None
    values = [float(line.split()[-1]) for line in text.splitlines() if re.match(rf"^{metric}(\{{.*\}})?\s", line)]
    return sum(values) if values else None


def _resources(group: str) -> dict[str, Any]:
    if group == "metrics.k8s.io":
        resources = [{"name": "pods", "singularName": "", "namespaced": True, "kind": "PodMetrics",
                      "verbs": ["get", "list"]},
                     {"name": "nodes", "singularName": "", "namespaced": False, "kind": "NodeMetrics",
                      "verbs": ["get", "list"]}]  # fmt: skip
    else:
        resources = [{"name": "pods/mlctl_requests_in_flight", "singularName": "", "namespaced": True,
                      "kind": "MetricValueList", "verbs": ["get"]}]  # fmt: skip
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": f"{group}/v1beta1", "resources": resources}


class Handler(BaseHTTPRequestHandler):
    """GET only; the aggregator proxies the API server's requests here."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        server: Server = self.server.state  # type: ignore[attr-defined]
        url = urlsplit(self.path)
        selector = (parse_qs(url.query).get("labelSelector") or [None])[0]
        try:
            self._answer(server, unquote(url.path), selector)  # the HPA asks for pods/%2A/METRIC
        except Exception as error:  # noqa: BLE001 - the API server shows the message
            self._send(500, _status(500, f"metrics-api: {error!r}"))

    def _answer(self, server: Server, path: str, selector: str | None) -> None:
        for group in GROUPS:
            if path.rstrip("/") == f"/apis/{group}/v1beta1":
                return self._send(200, _resources(group))
        if path in ("/healthz", "/readyz", "/livez"):
            return self._send(200, "ok")
        pods = _PODS.match(path)
        if pods is not None:
            items = server.pod_metrics(pods["ns"], pods["name"] or "", selector)
            if pods["name"]:
                return self._send(200, items[0]) if items else self._send(404, _status(404, "no metrics"))
            return self._send(200, {"kind": "PodMetricsList", "apiVersion": "metrics.k8s.io/v1beta1",
                                    "metadata": {}, "items": items})  # fmt: skip
        custom = _CUSTOM.match(path)
        if custom is not None:
            items = server.custom(custom["ns"], custom["name"], custom["metric"], selector)
            return self._send(200, {"kind": "MetricValueList", "apiVersion": "custom.metrics.k8s.io/v1beta1",
                                    "metadata": {}, "items": items})  # fmt: skip
        return self._send(404, _status(404, f"no route for {path}"))

    def _send(self, status: int, doc: Any) -> None:
        data = (doc if isinstance(doc, str) else json.dumps(doc)).encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain" if isinstance(doc, str) else "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def _status(code: int, message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message, "code": code}


def certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (openssl; the APIService skips verification)."""
    folder.mkdir(parents=True, exist_ok=True)
    cert, key = folder / "metrics-api.crt", folder / "metrics-api.key"
    if not cert.exists():
        command = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30", "-subj", "/CN=127.0.0.1",
                   "-keyout", str(key), "-out", str(cert)]  # fmt: skip
        subprocess.run(command, check=True, capture_output=True)
    return cert, key


def serve(port: int, kubeconfig: Path, folder: Path) -> None:
    """Serve until killed."""
    cert, key = certificate(folder)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    http = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    http.daemon_threads = True
    http.socket = context.wrap_socket(http.socket, server_side=True)
    http.state = Server(kubeconfig)  # type: ignore[attr-defined]
    print(f"metrics-api: serving on https://127.0.0.1:{port}", flush=True)
    http.serve_forever()


# -- registration (the fixture's side) --------------------------------------------------------------
def answers(port: int) -> bool:
    """Whether a metrics API answers on ``port``."""
    context = ssl._create_unverified_context()  # noqa: S323 - our own self-signed certificate
    try:
        with urllib.request.urlopen(f"https://127.0.0.1:{port}/apis/metrics.k8s.io/v1beta1", context=context,
                                    timeout=2) as answer:  # fmt: skip
            return bool(answer.status == 200)
    except OSError:
        return False


def objects(port: int) -> list[dict[str, Any]]:
    """The ExternalName Service and the two APIServices."""
    namespace, name = SERVICE
    found: list[dict[str, Any]] = [{
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace},
        "spec": {"type": "ExternalName", "externalName": "127.0.0.1", "ports": [{"port": port, "protocol": "TCP"}]},
    }]  # fmt: skip
    for group in GROUPS:
        found.append({
            "apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
            "metadata": {"name": f"v1beta1.{group}", "labels": {"mlctl.io/test": "metrics-api"}},
            "spec": {"group": group, "version": "v1beta1", "insecureSkipTLSVerify": True,
                     "service": {"name": name, "namespace": namespace, "port": port},
                     "groupPriorityMinimum": 100, "versionPriority": 100},
        })  # fmt: skip
    return found


def register(api: Any, port: int) -> None:
    """Create, or replace, the objects (not server-side apply: v1.20's API server panics applying
    an APIService)."""
    from kubernetes import dynamic
    from kubernetes.client.exceptions import ApiException

    client = dynamic.DynamicClient(api)
    for manifest in objects(port):
        resource = client.resources.get(api_version=manifest["apiVersion"], kind=manifest["kind"])
        name, namespace = manifest["metadata"]["name"], manifest["metadata"].get("namespace")
        try:
            resource.create(body=manifest, namespace=namespace)
        except ApiException as error:
            if error.status != 409:
                raise
            live = resource.get(name=name, namespace=namespace)
            manifest["metadata"]["resourceVersion"] = live.metadata.resourceVersion
            resource.replace(body=manifest, name=name, namespace=namespace)


def unregister(api: Any) -> None:
    """Delete the APIServices and the Service (absent ones are fine)."""
    from kubernetes import dynamic

    client = dynamic.DynamicClient(api)
    for manifest in reversed(objects(PORT)):
        resource = client.resources.get(api_version=manifest["apiVersion"], kind=manifest["kind"])
        try:
            resource.delete(name=manifest["metadata"]["name"], namespace=manifest["metadata"].get("namespace"))
        except Exception:  # noqa: BLE001,S110 - absent already
            pass


def available(api: Any) -> bool:
    """Whether both APIServices report Available."""
    from kubernetes import dynamic

    services = dynamic.DynamicClient(api).resources.get(api_version="apiregistration.k8s.io/v1", kind="APIService")
    for group in GROUPS:
        conditions = services.get(name=f"v1beta1.{group}").to_dict().get("status", {}).get("conditions") or []
        if not any(c["type"] == "Available" and c["status"] == "True" for c in conditions):
            return False
    return True


def running(api: Any, folder: Path) -> Iterator[None]:
    """The metrics APIs served and registered while the generator is suspended (see the module docstring)."""
    process = None
    if not answers(PORT):
        with (folder / "metrics-api.log").open("w") as log:
            process = subprocess.Popen([sys.executable, __file__, "--port", str(PORT), "--folder", str(folder)],
                                       stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
        deadline = time.monotonic() + 30
        while not answers(PORT):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the metrics API did not start: {(folder / 'metrics-api.log').read_text()[-500:]}")
            time.sleep(0.3)
    try:
        register(api, PORT)
        deadline = time.monotonic() + 60
        while not available(api):
            if time.monotonic() > deadline:
                raise RuntimeError("the metrics APIServices did not become Available within 60 s")
            time.sleep(1)
        yield
    finally:
        unregister(api)
        if process is not None:
            process.terminate()
            process.wait(timeout=10)


def main() -> None:
    """``python tests/metrics_api.py [--port N] [--folder DIR]``: serve until killed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=PORT)
    parser.add_argument("--kubeconfig", type=Path, default=KUBECONFIG)
    parser.add_argument("--folder", type=Path, default=ROOT / "metrics-api")
    args = parser.parse_args()
    serve(args.port, args.kubeconfig, args.folder)


if __name__ == "__main__":
    main()
