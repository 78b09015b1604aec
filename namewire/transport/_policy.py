"""`Policy`: which names an identity may register and which functions it may call.

Read from a TOML file (`Security(policy=PATH)`, ``--policy``, ``$NAMEWIRE_POLICY_FILE``); each
top-level table is an identity (a TLS certificate's name), ``"*"`` the default for every identity
without a table of its own and for connections without a certificate::

    [PlusServer]
    register = ["Plus*"]            # fnmatch patterns of service names
    call = ["Store.*"]              # "Service.function" patterns

    ["*"]
    call = ["PlusServer.plus"]

An identity's own table replaces the default; what no pattern allows is refused. The name service
checks ``register``, every node checks ``call`` on the calls it receives. A malformed file is a
`ValueError` naming the file and the problem.
"""

from __future__ import annotations

import fnmatch
import logging
import time
import tomllib
from dataclasses import dataclass

__all__ = ["Policy", "Rules"]

log = logging.getLogger("namewire.transport")

_KEYS = ("register", "call")
_CACHE_LIMIT = 4096  # verdicts remembered per policy: (identity, target) pairs seen
_LOG_PERIOD = 10.0  # seconds between refusal records of one policy (the rest are counted)


@dataclass(frozen=True, slots=True)
class Rules:
    """What one identity may do: fnmatch patterns."""

    register: tuple[str, ...] = ()
    call: tuple[str, ...] = ()


class Policy:
    """The rules of a policy file, by identity (``"*"``: everyone else)."""

    def __init__(self, rules: dict[str, Rules], *, source: str = "") -> None:
        self.rules = rules
        self.source = source
        self._verdicts: dict[tuple[str, str, str], bool] = {}
        self._logged_at = -_LOG_PERIOD
        self._unlogged = 0

    @classmethod
    def from_file(cls, path: str) -> Policy:
        """The policy in the TOML file at ``path``; ValueError naming the file and the problem."""
        try:
            with open(path, "rb") as file:
                data = tomllib.load(file)
        except OSError as exc:
            raise ValueError(f"cannot read the policy file {path!r}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"policy file {path!r} is not TOML: {exc}") from None
        rules: dict[str, Rules] = {}
        for identity, table in data.items():
            if not isinstance(table, dict):  # a bad file is a ValueError, like every bad option
                raise ValueError(  # noqa: TRY004
                    f"policy file {path!r}: {identity!r} must be a table "
                    f"([{identity}] with register = [...] and call = [...])")
            unknown = sorted(set(table) - set(_KEYS))
            if unknown:
                raise ValueError(f"policy file {path!r}: [{identity}] has unknown key "
                                 f"{unknown[0]!r} (only register and call)")
            patterns = {key: _patterns(path, identity, key, table.get(key, [])) for key in _KEYS}
            for pattern in patterns["call"]:
                if "." not in pattern:
                    raise ValueError(f"policy file {path!r}: [{identity}] call pattern "
                                     f"{pattern!r} must be Service.function (e.g. 'PlusServer.*')")
            rules[identity] = Rules(**patterns)
        return cls(rules, source=path)

    def rules_of(self, identity: str | None) -> Rules:
        """The rules that apply to ``identity`` (None: a connection without a certificate)."""
        found = self.rules.get(identity) if identity is not None else None
        return found or self.rules.get("*") or Rules()

    def may_register(self, identity: str | None, name: str) -> bool:
        return self._allowed("register", identity, name)

    def may_call(self, identity: str | None, service: str, func: str) -> bool:
        return self._allowed("call", identity, f"{service}.{func}")

    def _allowed(self, kind: str, identity: str | None, target: str) -> bool:
        key = (kind, identity or "", target)
        verdict = self._verdicts.get(key)
        if verdict is None:
            patterns = getattr(self.rules_of(identity), kind)
            verdict = any(fnmatch.fnmatchcase(target, pattern) for pattern in patterns)
            if len(self._verdicts) >= _CACHE_LIMIT:
                self._verdicts.clear()
            self._verdicts[key] = verdict
        return verdict

    def describe(self, identity: str | None) -> str:
        """Who ``identity`` is, for messages."""
        return f"identity {identity!r}" if identity else "a peer without a certificate"

    def log_refused_call(self, service: str, func: str, identity: str | None,
                         peer: str | None, origin: str) -> None:
        """A WARNING for a refused call, at most one per `_LOG_PERIOD` (the rest are counted)."""
        now = time.monotonic()
        if now - self._logged_at < _LOG_PERIOD:
            self._unlogged += 1
            return
        more = (f" ({self._unlogged} more refused calls were not logged in the "
                f"{_LOG_PERIOD:g}s before)") if self._unlogged else ""
        self._logged_at, self._unlogged = now, 0
        log.warning("%s: refused %s() to %s (%r at %s): not allowed by the policy file %s%s",
                    service, func, self.describe(identity), peer, origin, self.source, more)


def _patterns(path: str, identity: str, key: str, value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
        raise ValueError(f"policy file {path!r}: [{identity}] {key} must be a list of "
                         f"non-empty strings, not {value!r}")
    return tuple(value)
