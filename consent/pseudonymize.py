"""Keyed pseudonymization of personal fields, IP truncation, and the explicit unkeyed mode.

A pseudonym is ``hmac-sha256:<key_id>:<64 hex>``: HMAC-SHA256 of the normalised value (see
:func:`normalize`) under a secret key held outside the data. Without the key, a pseudonym
cannot be turned back into an email by trying candidate emails. The key id in the tag says
which key wrote it, so keys can rotate: :class:`Pseudonymizer` writes with its first (current)
key and :meth:`Pseudonymizer.candidates` gives the pseudonym under every key, to find a subject
whose data was written under an older one.

``sha256:<64 hex>`` (:attr:`HashMode.SHA256`) is the plain hash of the normalised value, for
ad-platform match keys only. It is much weaker: anyone with a list of emails or phone numbers
can hash them and match (ENISA, "Pseudonymisation techniques and best practices", 2019; FTC,
"No, hashing still doesn't make your data anonymous", 2024).

Values already in either tagged form are recognised and never hashed twice.
"""

from __future__ import annotations

import logging
import os
import pickle
import re
import secrets
from collections.abc import Mapping, Sequence
from enum import StrEnum
from functools import cached_property, lru_cache
from hashlib import sha256
from typing import Any, Final, NamedTuple

from pydantic import BaseModel, ConfigDict, SecretStr, field_validator

from journeykit.consent._fieldpaths import (
    DELETE,
    EACH,
    MISSING,
    FieldPath,
    edit,
    lookup,
    parse_path,
    replace,
)
from journeykit.consent._keys import PseudonymKey, check_keys, keys_from_env, keys_from_file
from journeykit.consent._normalize import FieldKind, normalize, truncate_ip
from journeykit.consent.errors import InvalidFieldValue, PseudonymKeyError

__all__ = [
    "FieldKind",
    "FieldRule",
    "HashMode",
    "PseudonymKey",
    "PseudonymRules",
    "Pseudonymized",
    "Pseudonymizer",
    "Removal",
    "is_pseudonym",
    "normalize",
    "pseudonymize_message",
    "truncate_ip",
]

_log = logging.getLogger("journeykit.consent")

_TAGGED: Final = re.compile(r"hmac-sha256:[A-Za-z0-9_.\-]{1,32}:[0-9a-f]{64}|sha256:[0-9a-f]{64}")
_PREFIXES: Final = ("hmac-sha256:", "sha256:")


class HashMode(StrEnum):
    """How a field is hashed."""

    HMAC = "hmac-sha256"
    """Keyed; the default and the only mode fit for storing personal data."""
    SHA256 = "sha256"
    """Unkeyed and dictionary-reversible; only for ad-platform match keys."""


def is_pseudonym(value: object) -> bool:
    """Whether ``value`` is already a tagged pseudonym (``hmac-sha256:...`` or ``sha256:...``)."""
    return (
        isinstance(value, str)
        and value.startswith(_PREFIXES)
        and _TAGGED.fullmatch(value) is not None
    )


class Pseudonymizer:
    """Turns values into keyed pseudonyms; holds the keys and never shows them.

    Args:
        keys: current key first, then old keys still accepted by :meth:`candidates`.

    Raises:
        PseudonymKeyError: no key, a duplicate id, or a weak key.
    """

    __slots__ = ("_cached", "_current", "_demo", "_keys")

    CACHE_SIZE: Final = 8_192
    """Recent pseudonyms kept in memory: one visitor's email or id recurs in every event of a
    session, and a dictionary hit costs a tenth of an HMAC. The raw values it holds are the
    ones the process is handling anyway; it never leaves the process."""

    def __init__(self, keys: Sequence[PseudonymKey], *, _demo: bool = False) -> None:
        if not _demo:
            check_keys(keys)
        # Key material only as precomputed HMAC states (no secret text kept, none in repr).
        self._keys = tuple(
            _HmacSha256(f"hmac-sha256:{k.key_id}:", k.secret.get_secret_value().encode())
            for k in keys
        )
        self._current = self._keys[0]
        self._demo = _demo
        self._cached = lru_cache(maxsize=self.CACHE_SIZE)(self._pseudonymize)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Pseudonymizer:
        """Keys from ``JOURNEYKIT_PSEUDONYM_KEY`` (+ ``_KEY_ID``, ``_OLD_KEYS``) or ``_KEY_FILE``.

        Args:
            environ: the variables to read; defaults to ``os.environ``.
        """
        return cls(keys_from_env(environ))

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Pseudonymizer:
        """Keys from a JSON file ``{"current": "k2", "keys": {"k1": "...", "k2": "..."}}``."""
        return cls(keys_from_file(path))

    @classmethod
    def demo(cls) -> Pseudonymizer:
        """EMBEDDED DEMO ONLY: a random key, new at every start, under key id ``demo``.

        Pseudonyms made with it cannot be matched after a restart, which is what a demo wants
        and what production must never have. Logs a warning saying so.
        """
        _log.warning(
            "pseudonymizing with a random demo key (key id 'demo'): pseudonyms will not match "
            "across restarts; set %s for real use",
            "JOURNEYKIT_PSEUDONYM_KEY",
        )
        secret = SecretStr(secrets.token_urlsafe(32))
        return cls([PseudonymKey(key_id="demo", secret=secret)], _demo=True)

    @property
    def key_ids(self) -> tuple[str, ...]:
        """Ids of the keys, current first."""
        return tuple(k.prefix.split(":")[1] for k in self._keys)

    @property
    def is_demo(self) -> bool:
        """Whether this is the random-key embedded demo (:meth:`demo`)."""
        return self._demo

    def __repr__(self) -> str:
        demo = ", demo=True" if self._demo else ""
        return f"Pseudonymizer(key_ids={list(self.key_ids)!r}{demo})"

    __str__ = __repr__

    def __reduce__(self) -> Any:
        # Pickling would write the secrets wherever the pickle goes (a cache, a queue, a log).
        raise pickle.PicklingError("a Pseudonymizer cannot be pickled; keys stay where they are")

    def pseudonymize(self, value: str, kind: FieldKind) -> str:
        """The pseudonym of ``value`` under the current key; a tagged value is returned as is.

        Raises:
            InvalidFieldValue: ``value`` cannot be normalised for ``kind`` (e.g. a phone with
                letters), or ``kind`` is ``ip``, which is truncated rather than hashed.
        """
        if type(kind) is not FieldKind:
            # "ip" must be refused as FieldKind.IP is, and "email" normalised likewise: the
            # cache below takes them for the same key, so a miss must not poison it.
            kind = FieldKind(kind)
        result: str = self._cached(value, kind)
        return result

    def _pseudonymize(self, value: str, kind: FieldKind) -> str:
        if value.startswith(_PREFIXES) and _TAGGED.fullmatch(value):
            return value
        if kind is _IP:
            raise _not_hashed()
        current = self._current
        # current.hexdigest(...), inlined: a miss here is on every new visitor's first event.
        inner = current._inner.copy()
        inner.update(normalize(value, kind).encode())
        outer = current._outer.copy()
        outer.update(inner.digest())
        return current.prefix + outer.hexdigest()

    def candidates(self, value: str, kind: FieldKind) -> tuple[str, ...]:
        """The pseudonym of ``value`` under every key, current first, to look a subject up.

        A value that is already a pseudonym is its own only candidate.
        """
        if is_pseudonym(value):
            return (value,)
        data = _normalized_bytes(value, kind)
        return tuple(k.prefix + k.hexdigest(data) for k in self._keys)


class _HmacSha256:
    """HMAC-SHA256 (RFC 2104) under one key, with the padded-key states hashed once.

    Same output as ``hmac.digest(key, data, "sha256")``, which re-derives both states on every
    call: copying them instead halves the cost, and the gate's budget is a few microseconds.
    """

    __slots__ = ("_inner", "_outer", "prefix")

    def __init__(self, prefix: str, key: bytes) -> None:
        if len(key) > _BLOCK:
            key = sha256(key).digest()
        key = key.ljust(_BLOCK, b"\0")
        self.prefix = prefix
        self._inner = sha256(bytes(b ^ 0x36 for b in key))
        self._outer = sha256(bytes(b ^ 0x5C for b in key))

    def hexdigest(self, data: bytes) -> str:
        inner = self._inner.copy()
        inner.update(data)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.hexdigest()


_BLOCK: Final = 64  # SHA-256's block size in bytes


_IP: Final = FieldKind.IP  # module constant: enum lookups through the class are slow on 3.11


def _not_hashed() -> InvalidFieldValue:
    return InvalidFieldValue("ip", "not_hashed", "IP addresses are truncated, not hashed")


def _normalized_bytes(value: str, kind: FieldKind) -> bytes:
    if type(kind) is not FieldKind:
        kind = FieldKind(kind)
    if kind is _IP:
        raise _not_hashed()
    return normalize(value, kind).encode()


def _plain_sha256(value: str, kind: FieldKind) -> str:
    if value.startswith(_PREFIXES) and _TAGGED.fullmatch(value):
        return value
    return "sha256:" + sha256(_normalized_bytes(value, kind)).hexdigest()


class FieldRule(BaseModel):
    """One field to protect: where it is, what it holds, and how to hash it.

    Attributes:
        path: dotted path; ``[]`` means every item of a list (``properties.products[].sku``).
        kind: email, phone, id (hashed after normalising) or ip (truncated, never hashed).
        mode: ``hmac-sha256`` (default) or ``sha256`` (ad-platform match keys only). Ignored
            for ``ip``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str
    kind: FieldKind
    mode: HashMode = HashMode.HMAC

    @field_validator("path")
    @classmethod
    def _path_parses(cls, value: str) -> str:
        parse_path(value)
        return value.strip()

    @cached_property
    def _parsed(self) -> FieldPath:
        return parse_path(self.path)


class PseudonymRules(BaseModel):
    """Which fields of a message are pseudonymized, in order."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    fields: tuple[FieldRule, ...] = (
        FieldRule(path="traits.email", kind=FieldKind.EMAIL),
        FieldRule(path="traits.phone", kind=FieldKind.PHONE),
        FieldRule(path="context.traits.email", kind=FieldKind.EMAIL),
        FieldRule(path="context.traits.phone", kind=FieldKind.PHONE),
        FieldRule(path="properties.email", kind=FieldKind.EMAIL),
        FieldRule(path="properties.phone", kind=FieldKind.PHONE),
        FieldRule(path="context.ip", kind=FieldKind.IP),
    )

    @cached_property
    def _needs_key(self) -> bool:
        return any(r.kind is not FieldKind.IP and r.mode is HashMode.HMAC for r in self.fields)

    @cached_property
    def _compiled(self) -> tuple[tuple[str, FieldPath, FieldKind, int, bool], ...]:
        """Per rule: path text, parsed path, kind, and how to protect it, worked out once."""
        return tuple(
            (r.path, r._parsed, r.kind, _how(r), EACH not in r._parsed) for r in self.fields
        )

    @cached_property
    def _tree(self) -> tuple[_Tree, tuple[int, ...]] | None:
        """The rules without ``[]`` as one tree of keys, and the indexes of the other rules.

        One walk down the tree visits only the branches a message has, where a rule at a time
        would walk every path from the top (six of them by default, for a message that
        usually has one field to protect). ``None`` when a path equals or extends another:
        then the rules' order matters, and they are applied one by one.
        """
        paths = [r._parsed for r in self.fields]
        for i, a in enumerate(paths):
            for b in paths[i + 1 :]:
                if a[: len(b)] == b or b[: len(a)] == a:
                    return None
        root: dict[object, Any] = {}
        for index, (text, path, kind, how, simple) in enumerate(self._compiled):
            if not simple:
                continue
            node = root
            for key in path[:-1]:
                node = node.setdefault(key, {})
            node[path[-1]] = _Leaf(index, text, kind, how)
        others = tuple(i for i, rule in enumerate(self._compiled) if not rule[4])
        return _freeze(root), others


_IP_HOW, _SHA256_HOW, _HMAC_HOW = 0, 1, 2  # index into the hashers tuple built per message


def _how(rule: FieldRule) -> int:
    if rule.kind is FieldKind.IP:
        return _IP_HOW
    return _SHA256_HOW if rule.mode is HashMode.SHA256 else _HMAC_HOW


class _Leaf(NamedTuple):
    order: int  # the rule's position (not "index": that is tuple.index)
    text: str
    kind: FieldKind
    how: int


_Tree = tuple[tuple[str, "_Tree | _Leaf"], ...]
"""Keys to look for at one level, each with the subtree below it or the rule at its end."""


def _freeze(node: dict[object, Any]) -> _Tree:
    return tuple(
        (key, value if type(value) is _Leaf else _freeze(value))  # type: ignore[misc]
        for key, value in node.items()
    )


class Removal(NamedTuple):
    """A field removed because it could not be protected (e.g. ``invalid_ip``)."""

    path: str
    reason: str


class Pseudonymized(NamedTuple):
    """The result of :func:`pseudonymize_message`.

    Attributes:
        message: a new dict if anything changed (sharing every untouched branch with the input),
            else the input itself.
        removed: fields removed rather than protected, with a reason code: ``invalid_ip``,
            ``invalid_phone``, ``not_a_string``.
    """

    message: Mapping[str, Any]
    removed: tuple[Removal, ...] = ()


def pseudonymize_message(
    message: Mapping[str, Any],
    rules: PseudonymRules,
    pseudonymizer: Pseudonymizer | None = None,
) -> Pseudonymized:
    """Protect the fields ``rules`` name, without mutating ``message``.

    Strings and integers are normalised and hashed (or truncated, for ``ip``); ``None`` and
    values already pseudonymized are left alone; anything else, and values that cannot be
    normalised, are removed and reported in :attr:`Pseudonymized.removed`.

    Args:
        message: a message in Segment wire format.
        rules: the fields to protect.
        pseudonymizer: holds the keys; needed unless every rule is ``ip`` or ``sha256``.

    Raises:
        PseudonymKeyError: a rule needs a key and no ``pseudonymizer`` was given.
    """
    if pseudonymizer is None and rules._needs_key:
        raise PseudonymKeyError("these rules use hmac-sha256 and need a Pseudonymizer")
    # The cached function itself, not the method around it: one call less per field.
    hashers = (None, _plain_sha256, None if pseudonymizer is None else pseudonymizer._cached)
    removed: list[Removal] = []
    tree = rules._tree
    if tree is None:
        out = message
        for text, path, kind, how, simple in rules._compiled:
            out = _apply_rule(out, text, path, kind, hashers[how], simple, removed)
    else:
        out = _walk(message, tree[0], hashers, removed)
        for index in tree[1]:
            text, path, kind, how, simple = rules._compiled[index]
            out = _apply_rule(out, text, path, kind, hashers[how], simple, removed)
        if len(removed) > 1:  # back in the rules' order, as applying them one by one gives
            order = {rule[0]: i for i, rule in enumerate(rules._compiled)}
            removed.sort(key=lambda removal: order[removal.path])
    return Pseudonymized(out, tuple(removed) if removed else ())


def _walk(node: Mapping[str, Any], tree: _Tree, hashers: Any, removed: list[Removal]) -> Any:
    """``node`` with the tree's rules applied below it: itself if nothing changed, else a copy."""
    copy: dict[str, Any] | None = None
    for key, below in tree:
        value = node.get(key, MISSING)
        if value is MISSING:
            continue
        if type(below) is _Leaf:
            result = _protect(value, below.kind, hashers[below.how], below.text, removed)
        elif type(value) is dict or isinstance(value, Mapping):
            result = _walk(value, below, hashers, removed)  # type: ignore[arg-type]  # a _Tree
        else:  # not an object where the path goes on: nothing there to protect
            continue
        if result is not value:
            if copy is None:
                copy = dict(node)
            if result is DELETE:
                del copy[key]
            else:
                copy[key] = result
    return node if copy is None else copy


def _apply_rule(
    out: Mapping[str, Any],
    text: str,
    path: FieldPath,
    kind: FieldKind,
    hash_one: Any,
    simple: bool,
    removed: list[Removal],
) -> Mapping[str, Any]:
    if simple:
        found = lookup(out, path)
        if found is MISSING:
            return out
        result = _protect(found, kind, hash_one, text, removed)
        return out if result is found else replace(out, path, result)
    return edit(out, path, _protector(text, kind, hash_one, removed))


def _protector(text: str, kind: FieldKind, hash_one: Any, removed: list[Removal]) -> Any:
    """The edit function for one rule, for paths that go through lists."""
    return lambda value: _protect(value, kind, hash_one, text, removed)


def _protect(
    original: Any, kind: FieldKind, hash_one: Any, text: str, removed: list[Removal]
) -> Any:
    """The protected form of one value; ``hash_one`` is ``None`` for IP truncation."""
    value = original
    if value is None:
        return value
    if type(value) is int:
        value = str(value)
    elif type(value) is not str:
        removed.append(Removal(text, "not_a_string"))
        return DELETE
    try:
        result = truncate_ip(value) if hash_one is None else hash_one(value, kind)
    except InvalidFieldValue as exc:
        removed.append(Removal(text, exc.reason))
        return DELETE
    # An equal string (an IP already truncated) keeps the original, so nothing is copied.
    return original if result == original else result
