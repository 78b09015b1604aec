"""Real certificates (made by `namewire certs`' code) in a temporary directory, and name services
run in this process with a given `Security`."""

from __future__ import annotations

import contextlib
import datetime
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from namewire import Security, TlsConfig
from namewire.cli._certs import _key_pem, issue_certificate, make_ca, write_dev_certs
from namewire.nameservice import NameService

NAMES = ("nameservice", "PlusServer", "Caller", "Rogue")


@dataclass(frozen=True)
class Certs:
    dir: Path

    @property
    def ca(self) -> str:
        return str(self.dir / "ca.pem")

    @property
    def secret_file(self) -> str:
        return str(self.dir / "secret")

    def tls(self, name: str, *, ca: str | None = None, **options: object) -> TlsConfig:
        """``name``'s certificate and key, trusting our CA (or ``ca``)."""
        return TlsConfig(cert=str(self.dir / f"{name}.pem"), key=str(self.dir / f"{name}-key.pem"),
                         ca=ca or self.ca, **options)  # type: ignore[arg-type]

    def security(self, name: str, **options: object) -> Security:
        return Security(tls=self.tls(name), **options)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    root = tmp_path_factory.mktemp("certs")
    write_dev_certs(root, NAMES)
    # A second CA nobody trusts, one certificate that has expired, one for another host.
    other_ca, other_key = make_ca(name="someone else's CA")
    write(root / "other-ca.pem", other_ca.public_bytes(serialization.Encoding.PEM))
    untrusted, untrusted_key = issue_certificate(other_ca, other_key, "PlusServer")
    save(root, "untrusted", untrusted, untrusted_key)
    ca = load_ca(root)
    long_ago = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=30)
    expired, expired_key = issue_certificate(*ca, "PlusServer", not_before=long_ago, days=1)
    save(root, "expired", expired, expired_key)
    elsewhere, elsewhere_key = issue_certificate(*ca, "PlusServer", ["other.example"])
    save(root, "elsewhere", elsewhere, elsewhere_key)
    return Certs(root)


def load_ca(root: Path) -> tuple[object, object]:
    from cryptography import x509

    cert = x509.load_pem_x509_certificate((root / "ca.pem").read_bytes())
    key = serialization.load_pem_private_key((root / "ca-key.pem").read_bytes(), None)
    return cert, key


def save(root: Path, stem: str, cert: object, key: object) -> None:
    write(root / f"{stem}.pem", cert.public_bytes(serialization.Encoding.PEM))  # type: ignore[attr-defined]
    write(root / f"{stem}-key.pem", _key_pem(key))


def write(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    path.chmod(0o600)


@contextlib.asynccontextmanager
async def nameservice(security: Security, listen: str = "tcp://127.0.0.1:0") -> AsyncIterator[str]:
    """A name service in this process with ``security``: its URL."""
    async with NameService(security=security).serve(listen) as running:
        yield running.address
