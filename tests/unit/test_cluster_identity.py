"""Node identity (kubespan.md §2): jxskiss base62 vectors of §9.6, the persisted file."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cluster.identity import (
    ALPHABET,
    NODE_IDENTITY_FILE,
    IdentityError,
    b62decode,
    b62encode,
    generate_node_id,
    load_or_create_node_identity,
    machine_id,
)

VECTORS = [
    (
        "be871ac0d0dd31fa4caca753b0f3f1b2970f5c19dfbde7dd7932e37cb2eeea2c",
        "sou7yy34ykX3n373Zw1DXKb8zD7UnyKT6HT3QDsGH6L",
    ),
    (bytes(range(32)).hex(), "fwjO4YDNyAjLsoCKmQiIg4BHaghFUIBEOwgCIYABCAA"),
    ("ff" * 32, "fffffffffffffffffffffffffffffffffffffffffffffffffffB"),
    ("80" + "00" * 30 + "01", "BAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAI"),
]


@pytest.mark.parametrize(("hex_", "text"), VECTORS)
def test_base62_vectors(hex_: str, text: str) -> None:
    assert b62encode(bytes.fromhex(hex_)) == text
    assert b62decode(text).hex() == hex_


def test_machine_id_vector() -> None:
    assert machine_id("sou7yy34ykX3n373Zw1DXKb8zD7UnyKT6HT3QDsGH6L") == "be871ac0d0dd31fa4caca753b0f3f1b2"


@given(st.binary(min_size=32, max_size=32).filter(lambda b: b[0] != 0))
def test_base62_round_trip_of_node_ids(data: bytes) -> None:
    text = b62encode(data)
    assert set(text) <= set(ALPHABET) and len(text) <= 52
    assert b62decode(text) == data


def test_decode_rejects_foreign_characters() -> None:
    with pytest.raises(ValueError, match=r"invalid character '\+' at 2"):
        b62decode("ab+c")


def test_generated_ids_look_like_the_reference() -> None:
    for _ in range(50):
        nid = generate_node_id()
        assert 40 <= len(nid) <= 52 and set(nid) <= set(ALPHABET)


def test_identity_file_created_once_0600(tmp_path: Path) -> None:
    ident, created = load_or_create_node_identity(str(tmp_path))
    assert created
    path = tmp_path / NODE_IDENTITY_FILE
    assert path.read_text() == f"nodeId: {ident.node_id}\n"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    again, created = load_or_create_node_identity(str(tmp_path))
    assert again == ident and not created
    assert [p.name for p in tmp_path.iterdir()] == [NODE_IDENTITY_FILE]  # no temporary left behind


def test_existing_reference_file_is_used(tmp_path: Path) -> None:
    (tmp_path / NODE_IDENTITY_FILE).write_text("nodeId: Utoh3O0ZneV0kT2IUBrh7TgdouRcUW2yzaaMl4VXnCd\n")
    ident, created = load_or_create_node_identity(str(tmp_path))
    assert ident.node_id == "Utoh3O0ZneV0kT2IUBrh7TgdouRcUW2yzaaMl4VXnCd" and not created


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nodeId: ''\n", "nodeId: empty (refusing to make up a new node identity)"),
        ("", "want a map with nodeId"),
        ("other: x\n", "nodeId: empty"),
        ("nodeId: a+b\n", "nodeId: 'a+b' is not base62"),
        ("nodeId: [\n", "not YAML"),
    ],
)
def test_unusable_file_is_an_error_not_a_new_identity(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / NODE_IDENTITY_FILE
    path.write_text(text)
    with pytest.raises(IdentityError) as e:
        load_or_create_node_identity(str(tmp_path))
    assert str(e.value).startswith(str(path)) and message in str(e.value)
    assert path.read_text() == text  # untouched
