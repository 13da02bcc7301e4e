"""The world of the ACI tests: the fake, a registry that needs credentials, and the environment
the CLI runs with (the fixtures that make it are in ``tests/aci_fixtures.py``)."""

from __future__ import annotations

import os
from pathlib import Path

from conftest import BASE_IMAGE, engine_or_skip

from aci_fake import FakeAci

RESOURCE_GROUP = "aci-rg"
REGISTRY_USER = "aci-ci"


class AciWorld:
    """The fake, the registry and its credentials, for one test module."""

    def __init__(self, fake: FakeAci, registry: str, password: str) -> None:
        self.fake = fake
        self.registry = registry
        self.password = password

    def env(self, *, denied: bool = False) -> dict[str, str]:
        """The environment the CLI needs: the stand-in az first on PATH, only AzureCliCredential
        in DefaultAzureCredential's chain, and the registry and its credentials."""
        az = self.fake.denied_az_bin if denied else self.fake.az_bin
        return {
            "PATH": f"{az}{os.pathsep}{os.environ['PATH']}",
            "AZURE_TOKEN_CREDENTIALS": "AzureCliCredential",
            "MLCTL_REGISTRY": self.registry,
            "MLCTL_REGISTRY_USERNAME": REGISTRY_USER,
            "MLCTL_REGISTRY_PASSWORD": self.password,
            "MLCTL_BASE_IMAGE": BASE_IMAGE,
        }

    def target_options(self, **extra: str) -> list[str]:
        """``--option`` arguments of an aci target on the fake."""
        options = {
            "subscription_id": self.fake.subscription,
            "resource_group": RESOURCE_GROUP,
            "location": "westeurope",
            "base_url": self.fake.base_url,
            "ca_bundle": str(self.fake.ca_file),
            "polling_interval": "0.2",
            **extra,
        }
        return [arg for k, v in options.items() for arg in ("--option", f"{k}={v}")]


def push_base_image(world: AciWorld, repository: str) -> str:
    """Push the tests' base image to the world's registry as ``repository:1``; returns the reference."""
    engine = engine_or_skip()
    ref = f"{world.registry}/{repository}"
    engine.images.get(BASE_IMAGE).tag(ref, "1")
    auth = {"username": REGISTRY_USER, "password": world.password}
    for chunk in engine.api.push(ref, tag="1", stream=True, decode=True, auth_config=auth):
        assert "error" not in chunk, chunk
    return f"{ref}:1"


def certificate_for_groups(world: AciWorld, folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate (cert.pem, key.pem) valid for the addresses the fake gives its
    groups (``127.X.0.2`` to ``127.X.0.40``), so clients can check the host name."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "aci-group")])
    addresses = [x509.IPAddress(ipaddress.ip_address(f"127.{world.fake.octet}.0.{n}")) for n in range(2, 41)]
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(addresses), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "group-cert.pem", folder / "group-key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file
