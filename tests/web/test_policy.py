"""The gateway's rules on their own: exposure forms, origins, the token hook, the rate bucket."""

from __future__ import annotations

import time

import pytest

from namewire.gateway import (
    CODES,
    BrowserError,
    Exposure,
    Limits,
    Policy,
    mint_token,
    read_token,
    secret_tokens,
)
from namewire.gateway._policy import RateLimiter


def test_exposure_forms() -> None:
    assert Exposure.parse("Chat") == Exposure("Chat") == Exposure.parse("Chat:*")
    assert Exposure.parse("Plus:plus,minus").functions == frozenset({"plus", "minus"})
    with pytest.raises(ValueError, match="expected NAME"):
        Exposure.parse(":plus")


def test_allow_list_decides_calls_sends_and_visible_providers() -> None:
    policy = Policy.of(["Plus:plus", "Chat"])
    policy.check_call("Plus", "plus")
    policy.check_call("Chat", "anything")
    policy.check_send("Plus")
    with pytest.raises(BrowserError) as refused:
        policy.check_call("Plus", "secret")
    assert refused.value.code == "not_exposed"
    assert refused.value.to_browser(4) == {
        "op": "error", "id": 4, "code": "not_exposed",
        "message": "'Plus' does not expose 'secret' to browsers"}
    assert policy.visible("plus", ["Chat", "Other", "Plus"]) == ["Chat", "Plus"]
    assert policy.visible("secret", ["Plus"]) == []


def test_origins_default_to_the_gateways_own_host() -> None:
    own = Policy()
    assert own.origin_allowed(None, "gw:8080")  # not a browser
    assert own.origin_allowed("http://gw:8080", "gw:8080")
    assert not own.origin_allowed("http://evil:8080", "gw:8080")
    listed = Policy(origins=frozenset({"https://app"}))
    assert listed.origin_allowed("https://app", "gw:8080")
    assert not listed.origin_allowed("http://app", "gw:8080")
    assert Policy(origins=frozenset({"*"})).origin_allowed("http://any", None)


async def test_the_token_hook_may_be_sync_or_async() -> None:
    async def async_check(token: str | None, origin: str | None) -> bool:
        return token == "a"

    assert await Policy(authenticate=lambda t, o: t == "s").token_accepted("s", None)
    assert not await Policy(authenticate=lambda t, o: t == "s").token_accepted(None, None)
    assert await Policy(authenticate=async_check).token_accepted("a", "http://x")
    assert await Policy().token_accepted(None, None)


def test_rate_bucket_refuses_past_the_burst_and_refills() -> None:
    bucket = RateLimiter(rate=100, burst=3)
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    time.sleep(0.05)  # 100/s refills about 5 tokens, capped at the burst
    assert bucket.take()


def test_limits_and_codes() -> None:
    with pytest.raises(ValueError, match="must be positive"):
        Limits(max_in_flight=0)
    assert {"too_many_calls", "too_large", "rate_limited", "not_exposed"} <= set(CODES)


def test_tokens_signed_with_the_cluster_secret() -> None:
    secret, other = b"s" * 32, b"o" * 32
    token = mint_token(secret, "alice", ttl=60, now=1000.0)
    assert read_token(secret, token, now=1059.0) == "alice"
    with pytest.raises(ValueError, match="'alice' expired at"):
        read_token(secret, token, now=1060.0)
    with pytest.raises(ValueError, match="bad signature"):
        read_token(other, token, now=1000.0)
    body, _, mac = token.partition(".")
    forged = mint_token(secret, "mallory", ttl=60, now=1000.0).partition(".")[0] + "." + mac
    with pytest.raises(ValueError, match="'mallory': bad signature"):
        read_token(secret, forged, now=1000.0)
    for junk in ("", "abc", "a.b", s32 := secret.hex()):
        with pytest.raises(ValueError, match="not a namewire token"):
            read_token(secret, junk)
    assert s32 not in token  # the secret itself never travels
    check = secret_tokens(secret)
    assert check(mint_token(secret, "bob"), "http://app.test") is True
    assert check(None, None) is False and check(token, None) is False  # expired long ago
    with pytest.raises(ValueError, match="ttl must be positive"):
        mint_token(secret, "x", ttl=0)
