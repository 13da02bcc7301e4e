"""The process target through the real CLI: deploy, test, show, logs, update, delete, and bad input."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import (
    ECHO_SCORE,
    following_logs,
    mlctl,
    post,
    requests_throughout,
    self_signed_certificate,
    serve_processes,
    service_spec,
    wait_for,
    write,
)


def _deploy(project: Path) -> dict[str, object]:
    result = mlctl("-o", "json", "service", "deploy", "-f", str(project / "service.yaml"))
    assert result.code == 0, result.err
    return result.json()  # type: ignore[no-any-return]


def test_deploy_test_show_logs_list_delete(echo_project: Path) -> None:
    state = _deploy(echo_project)
    assert state["state"] == "running" and state["models"] == ["model:1"]
    uri = str(state["scoring_uri"])
    status, _, body = post(uri, b'{"a": 1}')
    assert status == 200 and json.loads(body)["model"] == "v1"

    tested = mlctl("-o", "json", "service", "test", "echo")
    assert tested.code == 0 and tested.json()["prediction"]["echo"] == {"x": 1} and tested.json()["passed"] is None
    shown = mlctl("-o", "json", "service", "show", "echo").json()
    assert shown["scoring_uri"] == uri and shown["environment"] == "current"
    logs = mlctl("-o", "json", "service", "logs", "echo").json()
    assert any("init() completed" in line for line in logs["lines"])
    assert [s["name"] for s in mlctl("-o", "json", "service", "list").json()] == ["echo"]

    deleted = mlctl("-o", "json", "service", "delete", "echo")
    assert deleted.json() == {"name": "echo", "deleted": True}
    assert serve_processes() == []
    again = mlctl("-o", "json", "service", "delete", "echo")
    assert again.code == 0 and again.json()["deleted"] is False


def test_test_with_data_file_and_expected_output(echo_project: Path, tmp_path: Path) -> None:
    spec = service_spec(
        echo_project / "service.yaml",
        port=_port(echo_project),
        test_extra=('  expected: {"model": "v1", "echo": {"x": 1}, "pid": 0}\n  tolerance: 100000000\n'),
    )
    _deploy(echo_project)
    assert mlctl("service", "test", "-f", str(spec)).code == 0
    data = write(tmp_path / "sample.json", '{"y": 2}')
    assert mlctl("-o", "json", "service", "test", "echo", "--data", str(data)).json()["prediction"]["echo"] == {"y": 2}


def test_mismatch_beyond_tolerance_exits_8_with_the_result_on_stdout(echo_project: Path) -> None:
    service_spec(
        echo_project / "service.yaml",
        port=_port(echo_project),
        test_extra=('  expected: {"model": "v2", "echo": {"x": 1}, "pid": 0}\n  tolerance: 100000000\n'),
    )
    _deploy(echo_project)
    result = mlctl("-o", "json", "service", "test", "echo")
    assert result.code == 8
    assert result.json()["passed"] is False
    assert json.loads(result.err)["details"] == ['$.model: expected "v2", got "v1"']


@pytest.mark.parametrize("workers", [1, 2])
def test_update_switches_without_losing_a_request(echo_project: Path, workers: int) -> None:
    spec = echo_project / "service.yaml"
    spec.write_text(spec.read_text().replace("workers: 1", f"workers: {workers}"))
    uri = str(_deploy(echo_project)["scoring_uri"])
    old_pid = json.loads(post(uri, b"{}")[2])["pid"]
    (echo_project / "model.txt").write_text("v2")
    with requests_throughout(uri, until_model="v2") as (failures, answers):
        result = mlctl("-o", "json", "service", "update", "-f", str(echo_project / "service.yaml"))
    assert result.code == 0, result.err
    assert result.json()["models"] == ["model:2"]
    assert failures == []
    assert answers == {"v1", "v2"}
    assert json.loads(post(uri, b"{}")[2])["pid"] != old_pid
    assert len(set(serve_processes())) == 1  # one server (supervisor and worker share a command line)


def test_failed_update_keeps_the_old_service_serving(echo_project: Path) -> None:
    uri = str(_deploy(echo_project)["scoring_uri"])
    write(
        echo_project / "score.py", "def init():\n    raise RuntimeError('broken release')\ndef run(x):\n    return x\n"
    )
    result = mlctl("service", "update", "-f", str(echo_project / "service.yaml"))
    assert result.code == 7
    assert "RuntimeError: broken release" in result.err  # the new server's log is shown
    status, _, body = post(uri, b"{}")
    assert status == 200 and json.loads(body)["model"] == "v1"
    assert mlctl("-o", "json", "service", "show", "echo").json()["state"] == "running"
    assert len(set(serve_processes())) == 1  # one server (supervisor and worker share a command line)


def test_init_failure_names_the_phase_prints_the_log_and_leaves_nothing(echo_project: Path) -> None:
    write(
        echo_project / "score.py",
        "def init():\n    raise FileNotFoundError('weights.bin')\ndef run(x):\n    return x\n",
    )
    result = mlctl("-o", "json", "service", "deploy", "-f", str(echo_project / "service.yaml"))
    assert result.code == 7 and result.out == ""
    error = json.loads(result.err.strip().splitlines()[-1])
    assert error["phase"] == "init" and any("FileNotFoundError: weights.bin" in d for d in error["details"])
    assert serve_processes() == []
    assert mlctl("-o", "json", "service", "list").json() == []
    assert not any((Path(os.environ["MLCTL_HOME"]) / "services" / "echo").glob("*"))


def test_entry_script_without_init_fails_the_deploy(echo_project: Path) -> None:
    write(echo_project / "score.py", "def run(x):\n    return x\n")
    result = mlctl("service", "deploy", "-f", str(echo_project / "service.yaml"))
    assert result.code == 7 and "entry script error:" in result.err and "does not define init()" in result.err
    assert "Traceback" not in result.err
    assert serve_processes() == []


def test_missing_entry_script_is_a_spec_error(echo_project: Path) -> None:
    (echo_project / "score.py").unlink()
    result = mlctl("service", "deploy", "-f", str(echo_project / "service.yaml"))
    assert result.code == 3 and "$.inference_config.entry_script: file not found" in result.err


def test_port_in_use_is_a_target_error(echo_project: Path) -> None:
    with socket.socket() as busy:
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        busy.bind(("127.0.0.1", _port(echo_project)))
        busy.listen()
        result = mlctl("service", "deploy", "-f", str(echo_project / "service.yaml"))
    assert result.code == 6 and "already in use" in result.err and "deployment_config.port" in result.err


def test_a_key_the_target_cannot_honour_is_refused_before_anything_is_registered(echo_project: Path) -> None:
    spec = echo_project / "service.yaml"
    for verb in (["service", "deploy"], ["apply"], ["diff"]):
        result = mlctl(*verb, "-f", str(spec), "--set", "deployment_config.num_replicas=2")
        assert result.code == 6, (verb, result.err)
        assert "does not support deployment_config.num_replicas" in result.err
    assert mlctl("-o", "json", "model", "list").json() == []


def test_deploying_an_existing_name_is_a_conflict(echo_project: Path) -> None:
    _deploy(echo_project)
    result = mlctl("service", "deploy", "-f", str(echo_project / "service.yaml"))
    assert result.code == 5 and "service update" in result.err


def test_registered_model_that_does_not_exist(echo_project: Path) -> None:
    spec = write(
        echo_project / "svc.yaml",
        (echo_project / "service.yaml").read_text().replace("model_files: [model.txt]", "models: [ghost:3]"),
    )
    result = mlctl("service", "deploy", "-f", str(spec))
    assert result.code == 4 and "model 'ghost' is not registered" in result.err


def test_unknown_service_name_is_not_found() -> None:
    for verb in ("show", "logs", "test"):
        result = mlctl("service", verb, "nobody")
        assert result.code == 4, verb
        assert "service 'nobody' does not exist" in result.err


def test_deploy_from_a_registered_model_and_refuse_its_deletion(echo_project: Path) -> None:
    assert mlctl("model", "register", "--name", "echo-model", "--path", str(echo_project / "model.txt")).code == 0
    spec = write(
        echo_project / "svc.yaml",
        (echo_project / "service.yaml").read_text().replace("model_files: [model.txt]", "models: [echo-model@latest]"),
    )
    assert mlctl("-o", "json", "service", "deploy", "-f", str(spec)).json()["models"] == ["echo-model:1"]
    assert mlctl("model", "delete", "echo-model:1").code == 5
    assert mlctl("service", "delete", "echo").code == 0
    assert mlctl("model", "delete", "echo-model:1").code == 0


def test_slow_init_times_out_with_exit_9_and_nothing_left(echo_project: Path) -> None:
    write(echo_project / "score.py", "import time\ndef init():\n    time.sleep(60)\ndef run(x):\n    return x\n")
    result = mlctl("service", "deploy", "-f", str(echo_project / "service.yaml"), "--timeout", "2")
    assert result.code == 9 and "not ready after 2s" in result.err
    assert serve_processes() == []


def test_ctrl_c_during_deploy_leaves_no_process_and_no_state(echo_project: Path) -> None:
    write(echo_project / "score.py", "import time\ndef init():\n    time.sleep(60)\ndef run(x):\n    return x\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlctl", "service", "deploy", "-f", str(echo_project / "service.yaml")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ},
    )
    assert wait_for(lambda: len(serve_processes()) > 0, 30)
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert wait_for(lambda: serve_processes() == [], 10)
    assert mlctl("-o", "json", "service", "list").json() == []
    assert not any((Path(os.environ["MLCTL_HOME"]) / "services" / "echo").glob("*"))


def test_no_wait_returns_before_ready_and_show_catches_up(echo_project: Path) -> None:
    result = mlctl("-o", "json", "service", "deploy", "-f", str(echo_project / "service.yaml"), "--no-wait")
    assert result.code == 0, result.err
    assert wait_for(lambda: mlctl("-o", "json", "service", "show", "echo").json()["state"] == "running", 30)


def _port(project: Path) -> int:
    text = (project / "service.yaml").read_text()
    return int(text.split("port:")[1].split()[0])


def test_echo_fixture_is_the_shared_script() -> None:
    assert "def run(raw_data)" in ECHO_SCORE


def test_several_models_are_laid_out_as_azure_ml_does(echo_project: Path, tmp_path: Path) -> None:
    write(tmp_path / "a" / "weights.txt", "A")
    write(tmp_path / "b" / "vocab" / "words.txt", "B")
    for name, path in (("alpha", tmp_path / "a" / "weights.txt"), ("beta", tmp_path / "b" / "vocab")):
        assert mlctl("model", "register", "--name", name, "--path", str(path)).code == 0
    assert mlctl("model", "register", "--name", "alpha", "--path", str(tmp_path / "a" / "weights.txt")).code == 0
    write(
        echo_project / "score.py",
        """
        import os

        def init():
            pass

        def run(raw_data):
            root = os.environ["AZUREML_MODEL_DIR"]
            return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)
        """,
    )
    spec = write(
        echo_project / "svc.yaml",
        (echo_project / "service.yaml")
        .read_text()
        .replace("model_files: [model.txt]", "models: [alpha@latest, beta:1]"),
    )
    state = mlctl("-o", "json", "service", "deploy", "-f", str(spec)).json()
    assert state["models"] == ["alpha:2", "beta:1"]
    files = json.loads(post(state["scoring_uri"], b"{}")[2])
    assert files == ["alpha/2/weights.txt", "beta/1/vocab/words.txt"]


def test_logs_follow_streams_new_lines_and_ends_when_the_service_is_deleted(echo_project: Path) -> None:
    uri = str(_deploy(echo_project)["scoring_uri"])
    with following_logs("echo") as follower:
        assert follower.stdout is not None
        post(uri, b'{"fail": true}', {"x-request-id": "follow-me"})
        seen = [follower.stdout.readline() for _ in range(2)]
        assert any("request follow-me: run() raised ValueError" in line for line in seen)
        assert mlctl("service", "delete", "echo").code == 0
        assert follower.wait(10) == 0


def test_auth_enabled_needs_a_bearer_key_that_can_be_rotated(echo_project: Path) -> None:
    text = (echo_project / "service.yaml").read_text().replace("workers: 1", "workers: 1\n  auth_enabled: true")
    (echo_project / "service.yaml").write_text(text)
    deployed = mlctl("-o", "json", "service", "deploy", "-f", str(echo_project / "service.yaml"))
    assert deployed.code == 0, deployed.err
    uri = deployed.json()["scoring_uri"]
    assert deployed.json()["auth_enabled"] is True

    shown = mlctl("-o", "json", "service", "keys", "echo")
    assert "primary_key" not in shown.json() and len(shown.json()["primary"]["sha256"]) == 16
    keys = mlctl("-o", "json", "service", "keys", "echo", "--reveal").json()
    primary, secondary = keys["primary_key"], keys["secondary_key"]
    for secret in (primary, secondary):  # no other output shows a key
        for verb in (["service", "show", "echo"], ["service", "list"], ["service", "logs", "echo"]):
            assert secret not in mlctl("-o", "json", *verb).out
    assert oct(Path(keys["keys_file"]).stat().st_mode)[-3:] == "600"

    assert post(uri, b"{}")[0] == 401
    assert post(uri, b"{}", {"Authorization": "Bearer wrong"})[0] == 401
    assert post(uri, b"{}", {"Authorization": f"Bearer {primary}"})[0] == 200
    assert post(uri, b"{}", {"Authorization": f"Bearer {secondary}"})[0] == 200
    assert mlctl("service", "test", "echo").code == 0  # the CLI sends the primary key itself

    rotated = mlctl("-o", "json", "service", "keys", "echo", "--regenerate", "primary", "--reveal").json()
    assert rotated["primary_key"] != primary and rotated["secondary_key"] == secondary
    assert wait_for(lambda: post(uri, b"{}", {"Authorization": f"Bearer {primary}"})[0] == 401, 5)
    assert post(uri, b"{}", {"Authorization": f"Bearer {rotated['primary_key']}"})[0] == 200
    assert mlctl("service", "keys", "echo", "--regenerate", "tertiary").code == 2


def test_keys_of_a_service_without_auth_is_a_conflict(echo_project: Path) -> None:
    _deploy(echo_project)
    assert mlctl("service", "keys", "echo").code == 5


def test_tls_serves_https_with_the_given_certificate(echo_project: Path) -> None:
    self_signed_certificate(echo_project)
    text = (
        (echo_project / "service.yaml")
        .read_text()
        .replace("workers: 1", "workers: 1\n  ssl_cert_pem_file: cert.pem\n  ssl_key_pem_file: key.pem")
    )
    (echo_project / "service.yaml").write_text(text)
    state = mlctl("-o", "json", "service", "deploy", "-f", str(echo_project / "service.yaml"))
    assert state.code == 0, state.err
    uri = state.json()["scoring_uri"]
    assert uri.startswith("https://127.0.0.1:")
    assert mlctl("-o", "json", "service", "test", "echo").json()["prediction"]["model"] == "v1"
    import ssl
    import urllib.request

    context = ssl.create_default_context(cafile=str(echo_project / "cert.pem"))  # loaded now: may change later
    request = urllib.request.Request(uri, data=b"{}", method="POST")
    with urllib.request.urlopen(request, context=context, timeout=10) as response:
        assert response.status == 200
    with pytest.raises(OSError):  # plain HTTP is not served
        post(uri.replace("https", "http"), b"{}", timeout=3)

    (echo_project / "cert.pem").write_text("not a certificate")  # the server keeps its own copy
    failed = mlctl("service", "update", "-f", str(echo_project / "service.yaml"))
    assert failed.code == 7 and "cannot use the TLS certificate and key" in failed.err
    record = mlctl("-o", "json", "service", "show", "echo").json()
    assert Path(record["tls_cert"]).read_bytes() != b"not a certificate"
    assert oct(Path(record["tls_cert"]).with_name("tls-key.pem").stat().st_mode)[-3:] == "600"
    with urllib.request.urlopen(request, context=context, timeout=10) as response:
        assert response.status == 200


def test_an_unusable_certificate_fails_the_deploy_clearly(echo_project: Path) -> None:
    write(echo_project / "cert.pem", "not a certificate")
    write(echo_project / "key.pem", "not a key")
    text = (
        (echo_project / "service.yaml")
        .read_text()
        .replace("workers: 1", "workers: 1\n  ssl_cert_pem_file: cert.pem\n  ssl_key_pem_file: key.pem")
    )
    (echo_project / "service.yaml").write_text(text)
    result = mlctl("service", "deploy", "-f", str(echo_project / "service.yaml"))
    assert result.code == 7 and "cannot use the TLS certificate and key" in result.err
    assert serve_processes() == []


def test_key_regeneration_dry_run_changes_nothing(echo_project: Path) -> None:
    text = (echo_project / "service.yaml").read_text().replace("workers: 1", "workers: 1\n  auth_enabled: true")
    (echo_project / "service.yaml").write_text(text)
    assert mlctl("service", "deploy", "-f", str(echo_project / "service.yaml")).code == 0
    before = mlctl("-o", "json", "service", "keys", "echo").json()["primary"]
    planned = mlctl("-o", "json", "service", "keys", "echo", "--regenerate", "primary", "--dry-run").json()
    assert planned["dry_run"] is True and planned["primary"] == before
