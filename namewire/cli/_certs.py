"""``namewire certs DIR``: a development CA, node certificates and a shared secret.

Files written into DIR (private keys and the secret with mode 0600, made so from the start):

- ``ca.pem`` / ``ca-key.pem``: the CA (reused when DIR already has one, so nodes can be added later);
- ``NAME.pem`` / ``NAME-key.pem`` for every ``--name`` (default: ``node``): a certificate whose
  common name is NAME (the identity its peers see) and whose alternative names are the ``--host``
  names and addresses (default: localhost, 127.0.0.1, ::1), good for servers and clients alike;
- ``secret``: 32 random bytes as hex, for ``--secret-file`` (kept when it exists).

For development and tests: a production CA keeps its key off the hosts it certifies.
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import os
import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._common import fail

__all__ = ["add_parsers", "issue_certificate", "make_ca", "write_dev_certs"]

_DEFAULT_HOSTS = ("localhost", "127.0.0.1", "::1")


def add_parsers(commands: Any) -> None:
    certs = commands.add_parser(
        "certs", help="write a development CA, node certificates and a shared secret",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    certs.add_argument("dir", metavar="DIR", help="directory to write into (created)")
    certs.add_argument("--name", action="append", metavar="NAME",
                       help="a certificate for NAME, repeatable (default: node)")
    certs.add_argument("--host", action="append", metavar="HOST",
                       help="host name or address the certificates are valid for, repeatable "
                            "(default: localhost, 127.0.0.1, ::1)")
    certs.add_argument("--days", type=int, default=365, help="validity (default: 365)")
    certs.set_defaults(handler=cmd_certs)


def cmd_certs(args: argparse.Namespace) -> int:
    try:
        written = write_dev_certs(args.dir, args.name or ["node"], args.host or _DEFAULT_HOSTS,
                                  days=args.days)
    except ImportError:
        fail("`namewire certs` needs the cryptography package: pip install 'namewire[certs]'")
    except (OSError, ValueError) as exc:
        fail(f"cannot write certificates into {args.dir}: {exc}")
    for path in written:
        print(path)
    return 0


def write_dev_certs(
    directory: str | os.PathLike[str],
    names: Sequence[str],
    hosts: Sequence[str] = _DEFAULT_HOSTS,
    *,
    days: int = 365,
) -> list[Path]:
    """Write the files of the module docstring into ``directory``; return the paths written."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    ca_pem, ca_key_pem = root / "ca.pem", root / "ca-key.pem"
    if ca_pem.exists() and ca_key_pem.exists():
        ca = x509.load_pem_x509_certificate(ca_pem.read_bytes())
        ca_key = serialization.load_pem_private_key(ca_key_pem.read_bytes(), None)
        if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{ca_key_pem} is not an EC key made by `namewire certs`")
    else:
        ca, ca_key = make_ca(days=days)
        _write(ca_key_pem, _key_pem(ca_key), private=True)
        _write(ca_pem, ca.public_bytes(serialization.Encoding.PEM))
        written += [ca_pem, ca_key_pem]
    for name in names:
        cert, key = issue_certificate(ca, ca_key, name, hosts, days=days)
        cert_path, key_path = root / f"{name}.pem", root / f"{name}-key.pem"
        _write(key_path, _key_pem(key), private=True)
        _write(cert_path, cert.public_bytes(serialization.Encoding.PEM))
        written += [cert_path, key_path]
    secret = root / "secret"
    if not secret.exists():
        _write(secret, secrets.token_hex(32).encode() + b"\n", private=True)
        written.append(secret)
    return written


def make_ca(*, days: int = 365, name: str = "namewire development CA") -> tuple[Any, Any]:
    """A self-signed CA certificate and its EC P-256 key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                          content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False, encipher_only=False,
                          decipher_only=False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def issue_certificate(
    ca: Any,
    ca_key: Any,
    name: str,
    hosts: Sequence[str] = _DEFAULT_HOSTS,
    *,
    days: int = 365,
    not_before: datetime.datetime | None = None,
) -> tuple[Any, Any]:
    """A certificate for ``name`` (common name) valid for ``hosts``, signed by the CA, and its key.

    ``not_before`` (default: five minutes ago) and ``days`` set the validity; tests pass a past
    ``not_before`` to make an expired certificate.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    start = not_before or datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)
    alt_names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            alt_names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            alt_names.append(x509.DNSName(host))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def _key_pem(key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return bytes(key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ))


def _write(path: Path, data: bytes, *, private: bool = False) -> None:
    """Write ``data``; a private file is created 0600, never readable by others even briefly."""
    if private:
        with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as file:
            file.write(data)
        os.chmod(path, 0o600)  # an existing file keeps its mode through O_CREAT
        return
    path.write_bytes(data)
