"""The built-in name service, itself a namewire service."""

from ._service import Lease, NameService, serve_forever

__all__ = ["Lease", "NameService", "serve_forever"]
