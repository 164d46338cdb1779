"""Sensitive outputs at rest: Fernet with ESTATE_SECRET_KEY, nothing without it, clear errors for bad keys."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet

from estate.errors import InputError, OperationFailed
from estate.runners.secrets import check_key, seal, unseal


def test_seal_round_trips_and_hides_values() -> None:
    key = Fernet.generate_key().decode()
    token = seal({"db.password": "s3cret"}, key)
    assert token is not None and "s3cret" not in token
    assert unseal(token, key) == {"db.password": "s3cret"}


def test_nothing_is_stored_without_a_key_or_without_secrets() -> None:
    assert seal({"db.password": "s3cret"}, None) is None
    assert seal({}, Fernet.generate_key().decode()) is None


def test_bad_or_wrong_keys_are_clear_errors_that_do_not_echo_the_key() -> None:
    with pytest.raises(InputError, match="not a valid Fernet key") as caught:
        check_key("not-a-key-1234")
    assert "not-a-key-1234" not in caught.value.message
    token = seal({"a": 1}, Fernet.generate_key().decode())
    assert token is not None
    with pytest.raises(OperationFailed, match="another ESTATE_SECRET_KEY"):
        unseal(token, Fernet.generate_key().decode())
    with pytest.raises(InputError, match="not set"):
        unseal(token, None)
