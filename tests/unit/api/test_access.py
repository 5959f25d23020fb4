"""Tokens, scopes and the per-token request rate of the query API."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from segstream.api.access import NO_SHOP, Access, new_token, token_hash
from segstream.settings import Settings
from segstream.stream.worker import StartupError, run_worker
from segstream.tools import token as token_tool


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def access(clock: Clock, rate: float = 2.0, burst: int = 3) -> Access:
    grants = {token_hash("tea"): "shop:tea-1", token_hash("all"): "platform"}
    return Access(grants, rate_per_s=rate, burst=burst, clock=clock)


def test_a_shop_token_reads_its_shop_only_and_a_platform_token_every_shop() -> None:
    guard = access(Clock(), rate=1e9, burst=10**9)
    assert guard.check("Bearer tea", "tea-1") is None
    assert guard.check("bearer  tea ", "tea-1") is None  # the scheme is case-insensitive
    assert guard.check("Bearer all", "coffee-2") is None
    assert guard.check("Bearer tea", None) is None  # routes of no shop: any valid token
    refused = guard.check("Bearer tea", "coffee-2")
    assert refused is not None and (refused.status, refused.error) == (403, "forbidden")


@pytest.mark.parametrize("header", [None, "", "Bearer", "Basic dGVhOg==", "Bearer nope"])
def test_a_missing_malformed_or_unknown_token_is_401_with_a_challenge(header: str | None) -> None:
    refused = access(Clock()).check(header, "tea-1")
    assert refused is not None and refused.status == 401
    assert refused.headers() == {"WWW-Authenticate": 'Bearer realm="segstream"'}


def test_each_token_has_a_bucket_that_refills_at_its_rate() -> None:
    clock = Clock()
    guard = access(clock, rate=2.0, burst=3)
    assert [guard.check("Bearer tea", "tea-1") for _ in range(3)] == [None] * 3
    refused = guard.check("Bearer tea", "tea-1")
    assert refused is not None and refused.status == 429
    assert refused.headers() == {"Retry-After": "1"}  # half a second, rounded up
    assert guard.check("Bearer all", "tea-1") is None  # another token, another bucket
    clock.now += 0.5
    assert guard.check("Bearer tea", "tea-1") is None
    assert guard.check("Bearer tea", "tea-1") is not None
    clock.now += 60
    assert [guard.check("Bearer tea", "tea-1") for _ in range(4)][:3] == [None] * 3  # burst cap


def test_a_refused_scope_still_spends_the_rate() -> None:
    """Probing other shops is not free: a 403 counts like any request."""
    guard = access(Clock(), rate=1.0, burst=2)
    assert guard.check("Bearer tea", "coffee-2") is not None
    assert guard.check("Bearer tea", "coffee-2") is not None
    refused = guard.check("Bearer tea", "tea-1")
    assert refused is not None and refused.status == 429


def test_an_open_api_asks_nothing() -> None:
    assert Access({}, 1.0, 1, open_api=True).check(None, "tea-1") is None


def test_settings_keep_hashes_with_scopes_and_refuse_raw_tokens() -> None:
    digest = token_hash(new_token())
    assert Settings(api_tokens={digest: "shop:tea-1"}).api_tokens == {digest: "shop:tea-1"}
    with pytest.raises(ValidationError, match="never tokens"):
        Settings(api_tokens={"sst_raw-token": "platform"})
    with pytest.raises(ValidationError, match="scope"):
        Settings(api_tokens={digest: "admin"})


def test_a_worker_without_tokens_refuses_to_start_with_what_to_do() -> None:
    with pytest.raises(StartupError, match="SEGSTREAM_API_TOKENS"):
        run_worker(Settings(kafka_bootstrap="127.0.0.1:1"))


def test_the_token_tool_prints_a_token_and_its_settings_entry(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert token_tool.main(["shop:tea-1", "--json"]) == 0
    made = json.loads(capsys.readouterr().out)
    assert made["api_tokens_entry"] == {token_hash(made["token"]): "shop:tea-1"}
    assert token_tool.main(["everything"]) == 2
    assert "scope must be" in capsys.readouterr().err


def test_tokens_in_a_file_are_added_and_revoked_without_a_restart(tmp_path: Path) -> None:
    """A mounted secret changes under a running worker: within a second of the change the
    new token works and the removed one does not; a broken edit keeps what was read."""
    clock = Clock()
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({token_hash("old"): "platform"}))
    guard = Access({}, rate_per_s=100.0, burst=100, clock=clock, token_file=tokens)
    assert guard.check("Bearer old", "tea-1") is None
    tokens.write_text(json.dumps({token_hash("new"): "shop:tea-1"}))
    assert guard.check("Bearer old", "tea-1") is None, "not looked at again within a second"
    clock.now += 1.5
    assert guard.check("Bearer new", "tea-1") is None
    revoked = guard.check("Bearer old", "tea-1")
    assert revoked is not None and revoked.status == 401
    tokens.write_text('{"half written')
    clock.now += 1.5
    assert guard.check("Bearer new", "tea-1") is None, "a broken edit keeps the tokens read"


def test_a_tokens_file_that_cannot_be_used_stops_the_worker_at_start(tmp_path: Path) -> None:
    broken = tmp_path / "tokens.json"
    broken.write_text(json.dumps({"not-a-hash": "platform"}))
    with pytest.raises(ValidationError, match="SHA-256"):
        Settings(api_tokens_file=broken)
    with pytest.raises(ValidationError, match="cannot be read"):
        Settings(api_tokens_file=tmp_path / "missing.json")


def test_only_shop_names_a_shop_tokens_shop_and_none_for_the_platform() -> None:
    grants = {token_hash("shop-t"): "shop:tea-1", token_hash("all-t"): "platform"}
    access = Access(grants, rate_per_s=1.0, burst=10)
    assert access.only_shop("Bearer shop-t") == "tea-1"
    assert access.only_shop("Bearer all-t") is None
    assert Access({}, 1.0, 10, open_api=True).only_shop(None) is None
    assert access.only_shop("Bearer revoked-since") == NO_SHOP  # fails closed
