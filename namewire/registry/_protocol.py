"""The built-in name service's remote functions and notices: shared by its client and its server."""

from __future__ import annotations

__all__ = [
    "EVENT_CHANGED",
    "FN_DEREGISTER",
    "FN_LOOKUP",
    "FN_MEMBERS",
    "FN_PROVIDERS",
    "FN_REGISTER",
    "FN_RENEW",
    "FN_SERVICES",
    "NAMESERVICE_NAME",
]

NAMESERVICE_NAME = "namewire.nameservice"

# register(registration: dict, ttl: float) -> {"lease": str, "ttl": float}; raises NameTaken
FN_REGISTER = "register"
# renew(lease: str) -> bool (False: the lease is unknown or expired; register again)
FN_RENEW = "renew"
# deregister(lease: str) -> None
FN_DEREGISTER = "deregister"
# lookup(name: str) -> registration dict or None; the caller is told when that name changes
FN_LOOKUP = "lookup"
# members(group: str) -> [registration dict, ...] sorted by name; the caller is told when a member
# of the group registers or leaves (the notice carries "group")
FN_MEMBERS = "members"
# providers(func: str) -> [name, ...]
FN_PROVIDERS = "providers"
# services() -> [{"registration": dict, "lease_age": float, "ttl": float}, ...]
FN_SERVICES = "services"

# Notice pushed to sessions that looked the name up or asked for providers of one of its functions:
# {"event": "changed", "name": NAME, "functions": [FUNC, ...], "left": bool} (old and new
# functions; "left" is true when the name is no longer registered at all; "group" is the name's
# group, or "").
EVENT_CHANGED = "changed"
