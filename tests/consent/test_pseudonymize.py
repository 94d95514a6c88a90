"""Keyed pseudonymization: keys, rotation, normalisation, IP truncation, message paths."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import logging
import pickle
import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from journeykit.consent import ConsentError
from journeykit.consent.errors import InvalidFieldValue, PseudonymKeyError
from journeykit.consent.pseudonymize import (
    FieldKind,
    FieldRule,
    HashMode,
    Pseudonymizer,
    PseudonymKey,
    PseudonymRules,
    Removal,
    is_pseudonym,
    normalize,
    pseudonymize_message,
    truncate_ip,
)

SECRET_1 = "k1-secret-0123456789-abcdef"
SECRET_2 = "k2-secret-9876543210-fedcba"
TAG = re.compile(r"^hmac-sha256:(?P<kid>[\w.-]+):(?P<hex>[0-9a-f]{64})$")


@pytest.fixture
def old() -> Pseudonymizer:
    return Pseudonymizer([PseudonymKey(key_id="k1", secret=SecretStr(SECRET_1))])


@pytest.fixture
def rotated() -> Pseudonymizer:
    return Pseudonymizer.from_env(
        {
            "JOURNEYKIT_PSEUDONYM_KEY": SECRET_2,
            "JOURNEYKIT_PSEUDONYM_KEY_ID": "k2",
            "JOURNEYKIT_PSEUDONYM_OLD_KEYS": f"k1:{SECRET_1}",
        }
    )


def expected_hmac(secret: str, value: str) -> str:
    return hmac.new(secret.encode(), value.encode(), hashlib.sha256).hexdigest()


# --- the pseudonym itself -----------------------------------------------------------------------


def test_pseudonym_is_tagged_hmac_sha256_of_the_normalised_value(old: Pseudonymizer) -> None:
    out = old.pseudonymize("  Ann.Lee@Example.COM ", FieldKind.EMAIL)
    match = TAG.match(out)
    assert match is not None
    assert match["kid"] == "k1"
    assert match["hex"] == expected_hmac(SECRET_1, "ann.lee@example.com")


def test_long_keys_give_standard_hmac() -> None:
    secret = "x" * 40 + "-long-key-longer-than-one-sha256-block-of-64-bytes"
    keyed = Pseudonymizer([PseudonymKey(key_id="big", secret=SecretStr(secret))])
    assert keyed.pseudonymize("u1", FieldKind.ID).endswith(expected_hmac(secret, "u1"))


def test_already_pseudonymized_values_are_never_hashed_twice(old: Pseudonymizer) -> None:
    once = old.pseudonymize("ann@example.com", FieldKind.EMAIL)
    assert old.pseudonymize(once, FieldKind.EMAIL) == once
    assert old.pseudonymize(once, FieldKind.ID) == once
    plain = "sha256:" + "ab" * 32
    assert old.pseudonymize(plain, FieldKind.EMAIL) == plain
    assert is_pseudonym(once)
    assert is_pseudonym(plain)
    # Look-alikes are not pseudonyms, and are hashed.
    assert not is_pseudonym("sha256:not-hex")
    assert old.pseudonymize("sha256:short", FieldKind.ID) != "sha256:short"


def test_different_keys_give_different_pseudonyms(old: Pseudonymizer) -> None:
    other = Pseudonymizer([PseudonymKey(key_id="k1", secret=SecretStr(SECRET_2))])
    assert old.pseudonymize("u1", FieldKind.ID) != other.pseudonymize("u1", FieldKind.ID)


# --- rotation -----------------------------------------------------------------------------------


def test_rotation_writes_with_the_current_key(rotated: Pseudonymizer) -> None:
    assert rotated.key_ids == ("k2", "k1")
    assert rotated.pseudonymize("u1", FieldKind.ID).startswith("hmac-sha256:k2:")


def test_old_key_candidates_find_a_value_written_under_the_old_key(
    old: Pseudonymizer, rotated: Pseudonymizer
) -> None:
    stored = old.pseudonymize("Ann@Example.com", FieldKind.EMAIL)
    candidates = rotated.candidates("ann@example.com ", FieldKind.EMAIL)
    assert candidates[0] == rotated.pseudonymize("ann@example.com", FieldKind.EMAIL)
    assert stored in candidates
    assert len(candidates) == 2
    assert rotated.candidates(stored, FieldKind.EMAIL) == (stored,)


def test_key_file_rotation(tmp_path: Path, old: Pseudonymizer) -> None:
    key_file = tmp_path / "keys.json"
    key_file.write_text(json.dumps({"current": "k2", "keys": {"k1": SECRET_1, "k2": SECRET_2}}))
    from_file = Pseudonymizer.from_file(key_file)
    assert from_file.key_ids == ("k2", "k1")
    assert old.pseudonymize("u1", FieldKind.ID) in from_file.candidates("u1", FieldKind.ID)
    via_env = Pseudonymizer.from_env({"JOURNEYKIT_PSEUDONYM_KEY_FILE": str(key_file)})
    assert via_env.key_ids == ("k2", "k1")


# --- refusing keys ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("secret", "expected"),
    [
        ("", "key 'k1' is empty"),
        ("short-key", "key 'k1' is 9 bytes, shorter than 16"),
        ("changemechangeme", "key 'k1' is a well-known placeholder"),
        ("Your-Secret-Key-Here", "key 'k1' is a well-known placeholder"),
        ("a" * 32, "key 'k1' is a well-known placeholder"),
    ],
)
def test_weak_keys_are_refused_without_showing_them(secret: str, expected: str) -> None:
    with pytest.raises(PseudonymKeyError) as info:
        Pseudonymizer.from_env({"JOURNEYKIT_PSEUDONYM_KEY": secret})
    assert str(info.value).startswith(expected)
    assert isinstance(info.value, ConsentError)
    if secret:
        assert secret not in str(info.value)


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, "no pseudonymization key: set JOURNEYKIT_PSEUDONYM_KEY"),
        (
            {"JOURNEYKIT_PSEUDONYM_KEY": SECRET_1, "JOURNEYKIT_PSEUDONYM_KEY_FILE": "/k.json"},
            "set JOURNEYKIT_PSEUDONYM_KEY or JOURNEYKIT_PSEUDONYM_KEY_FILE, not both",
        ),
        (
            {"JOURNEYKIT_PSEUDONYM_KEY": SECRET_1, "JOURNEYKIT_PSEUDONYM_OLD_KEYS": SECRET_2},
            "JOURNEYKIT_PSEUDONYM_OLD_KEYS: entry 1 is not 'id:secret'",
        ),
        (
            {"JOURNEYKIT_PSEUDONYM_KEY": SECRET_1, "JOURNEYKIT_PSEUDONYM_OLD_KEYS": "k0:tiny"},
            "key 'k0' is 4 bytes",
        ),
        (
            {
                "JOURNEYKIT_PSEUDONYM_KEY": SECRET_1,
                "JOURNEYKIT_PSEUDONYM_OLD_KEYS": f"k1:{SECRET_2}",
            },
            "key id 'k1' is given twice",
        ),
        (
            {"JOURNEYKIT_PSEUDONYM_KEY": SECRET_1, "JOURNEYKIT_PSEUDONYM_KEY_ID": "k:1"},
            "JOURNEYKIT_PSEUDONYM_KEY_ID: key id 'k:1' must be 1-32 letters",
        ),
    ],
)
def test_bad_environments_are_refused_clearly(environ: dict[str, str], expected: str) -> None:
    with pytest.raises(PseudonymKeyError) as info:
        Pseudonymizer.from_env(environ)
    assert str(info.value).startswith(expected)
    for secret in (SECRET_1, SECRET_2):
        assert secret not in str(info.value)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "cannot read key file"),
        ("{not json " + SECRET_1, "not a JSON key file"),
        ("[]", "expected an object with 'current' and 'keys'"),
        (json.dumps({"current": "k3", "keys": {"k1": SECRET_1}}), "'current' must name one"),
        (json.dumps({"current": "k1", "keys": {"k1": 5}}), "'keys' must map key ids"),
    ],
)
def test_bad_key_files_are_refused_naming_the_file_not_the_content(
    tmp_path: Path, content: str | None, expected: str
) -> None:
    key_file = tmp_path / "keys.json"
    if content is not None:
        key_file.write_text(content)
    with pytest.raises(PseudonymKeyError) as info:
        Pseudonymizer.from_file(key_file)
    assert str(info.value).startswith(f"{key_file}: {expected}")
    assert SECRET_1 not in str(info.value)


def test_demo_key_is_random_labelled_and_announced(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="journeykit.consent"):
        first, second = Pseudonymizer.demo(), Pseudonymizer.demo()
    assert first.is_demo
    assert first.key_ids == ("demo",)
    assert "demo=True" in repr(first)
    assert "random demo key" in caplog.text
    assert first.pseudonymize("u", FieldKind.ID) != second.pseudonymize("u", FieldKind.ID)


def test_secrets_never_appear_in_repr_or_str(rotated: Pseudonymizer) -> None:
    key = PseudonymKey(key_id="k1", secret=SecretStr(SECRET_1))
    rules = PseudonymRules()
    shown = [repr(rotated), str(rotated), repr(key), str(key), repr(rules), str(key.secret)]
    shown.append(repr(key.model_dump()))
    for text in shown:
        assert SECRET_1 not in text
        assert SECRET_2 not in text
    assert repr(rotated) == "Pseudonymizer(key_ids=['k2', 'k1'])"


def test_a_pseudonymizer_cannot_be_pickled(rotated: Pseudonymizer) -> None:
    with pytest.raises(pickle.PicklingError):
        pickle.dumps(rotated)


# --- normalisation and IP truncation ------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  Ann@Example.COM\t", "ann@example.com"),
        ("ann@example.com", "ann@example.com"),
    ],
)
def test_email_normalisation(raw: str, expected: str) -> None:
    assert normalize(raw, FieldKind.EMAIL) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("+1 (415) 555-0100", "+14155550100"),
        ("0044 20 7946 0958", "+442079460958"),
        ("+44.20.7946.0958", "+442079460958"),
        ("06 12 34 56 78", "0612345678"),  # no country code: kept as digits, never guessed
    ],
)
def test_phone_normalisation(raw: str, expected: str) -> None:
    assert normalize(raw, FieldKind.PHONE) == expected


def test_equivalent_phone_formats_give_one_pseudonym(old: Pseudonymizer) -> None:
    forms = ["+1 (415) 555-0100", "001-415-555-0100", "+1.415.555.0100"]
    assert len({old.pseudonymize(f, FieldKind.PHONE) for f in forms}) == 1


def test_invalid_phone_is_refused() -> None:
    with pytest.raises(InvalidFieldValue) as info:
        normalize("+1 415 CALL NOW", FieldKind.PHONE)
    assert info.value.reason == "invalid_phone"
    assert "CALL" not in str(info.value)


def test_ids_are_only_trimmed() -> None:
    assert normalize("  User-42 ", FieldKind.ID) == "User-42"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("203.0.113.97", "203.0.113.0"),
        (" 10.1.2.3 ", "10.1.2.0"),
        ("2001:db8:abcd:12:1:2:3:4", "2001:db8:abcd::"),
        ("2001:0db8:abcd:ffff::1", "2001:db8:abcd::"),
        ("fe80::1%eth0", "fe80::"),
        ("::1", "::"),
    ],
)
def test_ip_truncation(raw: str, expected: str) -> None:
    assert truncate_ip(raw) == expected


@pytest.mark.parametrize("raw", ["300.1.1.1", "1.2.3", "01.2.3.4", "example.com", ""])
def test_invalid_ips_are_refused(raw: str) -> None:
    with pytest.raises(InvalidFieldValue) as info:
        truncate_ip(raw)
    assert info.value.reason == "invalid_ip"


def test_ips_are_not_hashed(old: Pseudonymizer) -> None:
    with pytest.raises(InvalidFieldValue, match="truncated, not hashed"):
        old.pseudonymize("1.2.3.4", FieldKind.IP)


# --- messages -----------------------------------------------------------------------------------


def sample() -> dict[str, Any]:
    return {
        "type": "track",
        "userId": 42,
        "traits": {"email": " Ann@Example.com", "name": "Ann"},
        "properties": {
            "phone": "+1 (415) 555-0100",
            "products": [{"sku": "A-1", "price": 3}, {"sku": "B-2"}, {"price": 1}, "loose"],
        },
        "context": {"ip": "203.0.113.97", "library": {"name": "journeykit"}},
    }


RULES = PseudonymRules(
    fields=(
        FieldRule(path="userId", kind=FieldKind.ID),
        FieldRule(path="traits.email", kind=FieldKind.EMAIL),
        FieldRule(path="properties.phone", kind=FieldKind.PHONE),
        FieldRule(path="properties.products[].sku", kind=FieldKind.ID),
        FieldRule(path="context.ip", kind=FieldKind.IP),
    )
)


def test_message_fields_are_protected_by_path(old: Pseudonymizer) -> None:
    message = sample()
    before = copy.deepcopy(message)
    result = pseudonymize_message(message, RULES, old)
    out = result.message
    assert result.removed == ()
    assert out["userId"] == old.pseudonymize("42", FieldKind.ID)
    assert out["traits"]["email"] == old.pseudonymize("ann@example.com", FieldKind.EMAIL)
    assert out["traits"]["name"] == "Ann"
    assert out["properties"]["phone"] == old.pseudonymize("+14155550100", FieldKind.PHONE)
    skus = [p.get("sku") if isinstance(p, dict) else p for p in out["properties"]["products"]]
    assert skus[0] == old.pseudonymize("A-1", FieldKind.ID)
    assert skus[1] == old.pseudonymize("B-2", FieldKind.ID)
    assert skus[2:] == [None, "loose"]
    assert out["context"]["ip"] == "203.0.113.0"
    assert message == before
    assert out["context"]["library"] is message["context"]["library"]
    assert out["properties"]["products"][2] is message["properties"]["products"][2]


def test_pseudonymizing_twice_changes_nothing_and_copies_nothing(old: Pseudonymizer) -> None:
    once = pseudonymize_message(sample(), RULES, old).message
    twice = pseudonymize_message(once, RULES, old)
    assert twice.message is once
    assert twice.removed == ()


def test_missing_fields_leave_the_message_as_is(old: Pseudonymizer) -> None:
    message = {"type": "track", "properties": {"products": "not a list"}, "traits": None}
    assert pseudonymize_message(message, RULES, old).message is message


def test_fields_that_cannot_be_protected_are_removed_with_a_reason(old: Pseudonymizer) -> None:
    message = sample()
    message["context"]["ip"] = "not-an-ip"
    message["properties"]["phone"] = "call me"
    message["traits"]["email"] = {"work": "ann@example.com"}
    result = pseudonymize_message(message, RULES, old)
    assert "ip" not in result.message["context"]
    assert "phone" not in result.message["properties"]
    assert "email" not in result.message["traits"]
    assert set(result.removed) == {
        Removal("context.ip", "invalid_ip"),
        Removal("properties.phone", "invalid_phone"),
        Removal("traits.email", "not_a_string"),
    }
    assert message["context"]["ip"] == "not-an-ip"


def test_plain_sha256_mode_for_match_keys_needs_no_key() -> None:
    rules = PseudonymRules(
        fields=(
            FieldRule(path="traits.email", kind=FieldKind.EMAIL, mode=HashMode.SHA256),
            FieldRule(path="context.ip", kind=FieldKind.IP),
        )
    )
    out = pseudonymize_message(sample(), rules).message
    digest = hashlib.sha256(b"ann@example.com").hexdigest()
    assert out["traits"]["email"] == f"sha256:{digest}"
    assert out["context"]["ip"] == "203.0.113.0"


def test_keyed_rules_without_a_pseudonymizer_are_refused() -> None:
    with pytest.raises(PseudonymKeyError, match="need a Pseudonymizer"):
        pseudonymize_message(sample(), RULES)


def test_default_rules_protect_email_phone_and_ip(old: Pseudonymizer) -> None:
    out = pseudonymize_message(sample(), PseudonymRules(), old).message
    assert is_pseudonym(out["traits"]["email"])
    assert is_pseudonym(out["properties"]["phone"])
    assert out["context"]["ip"] == "203.0.113.0"
    assert out["userId"] == 42  # ids are not pseudonymized unless configured


@pytest.mark.parametrize("path", ["", "traits..email", "products[.sku", "a.[]"])
def test_malformed_rule_paths_are_refused(path: str) -> None:
    with pytest.raises(ValidationError, match="path"):
        FieldRule(path=path, kind=FieldKind.ID)


def test_a_kind_given_as_text_is_the_kind(old: Pseudonymizer) -> None:
    # "email" and FieldKind.EMAIL are one key of the cache: neither may poison the other.
    loose = old.pseudonymize(" Ann@Example.COM", "email")  # type: ignore[arg-type]
    assert loose == old.pseudonymize("ann@example.com", FieldKind.EMAIL)
    assert old.pseudonymize(" Ann@Example.COM", FieldKind.EMAIL) == loose
    with pytest.raises(InvalidFieldValue):
        old.pseudonymize("203.0.113.9", "ip")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "typed", ["+44 20 7946 0958", "+44 (0)20 7946 0958", "0044 (0) 20-7946-0958"]
)
def test_a_phone_number_is_one_however_it_is_typed(old: Pseudonymizer, typed: str) -> None:
    assert old.pseudonymize(typed, FieldKind.PHONE) == old.pseudonymize(
        "+442079460958", FieldKind.PHONE
    )


@pytest.mark.parametrize(
    ("address", "kept"),
    [
        ("::ffff:203.0.113.97", "203.0.113.0"),  # IPv4-mapped
        ("2002:cb00:7161::1", "203.0.113.0"),  # 6to4: the IPv4 address is in the prefix
        ("2001:db8:1:2::1", "2001:db8:1::"),
    ],
)
def test_an_ipv4_address_inside_ipv6_is_cut_like_ipv4(address: str, kept: str) -> None:
    assert truncate_ip(address) == kept


def test_a_phone_in_context_traits_is_pseudonymized_by_default(old: Pseudonymizer) -> None:
    message = {"type": "track", "context": {"traits": {"phone": "+33 6 12 34 56 78"}}}
    out = pseudonymize_message(message, PseudonymRules(), old).message
    assert out["context"]["traits"]["phone"] == old.pseudonymize("+33612345678", FieldKind.PHONE)
