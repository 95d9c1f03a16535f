"""Unit tests of refundlens.security: API key format, secret hashing, scrypt passwords, the
PII cipher (rotation, tampering, context), buyer pseudonyms, key loading and webhook
signatures."""

from __future__ import annotations

import base64
import hashlib
import os
import stat

import pytest

from refundlens.errors import ConfigError
from refundlens.security import (KEY_PREFIX, ApiKeyParts, PiiCipher, PiiError, Pseudonymizer,
                                 generate_api_key, hash_password, hash_secret,
                                 load_or_create_key, parse_api_key, sign_webhook,
                                 verify_password, verify_webhook)

KEY_A = bytes(range(32))
KEY_B = bytes(range(100, 132))


# --- API keys ----------------------------------------------------------------------------

def test_generated_key_round_trips_through_its_token():
    parts = generate_api_key()
    assert parts.token.startswith(f"{KEY_PREFIX}_{parts.key_id}_")
    assert parse_api_key(parts.token) == parts
    assert parse_api_key(f"  {parts.token}\n") == parts
    # 256 random bits of secret: 32 bytes of url-safe base64 is 43 characters
    assert len(parts.secret) >= 43
    assert generate_api_key() != parts


def test_a_secret_may_contain_underscores():
    parts = ApiKeyParts("key0123456789ab", "sec_ret_with_underscores")
    assert parse_api_key(parts.token) == parts


@pytest.mark.parametrize("token", [
    "", "rl", "rl_", "rl__secret", "rl_keyid", "rl_keyid_", "xx_keyid_secret",
    "Bearer rl_keyid_secret", "keyid_secret", "RL_keyid_secret",
])
def test_malformed_keys_do_not_parse(token):
    assert parse_api_key(token) is None


def test_hash_secret_is_sha256_hex_and_deterministic():
    assert hash_secret("abc") == hashlib.sha256(b"abc").hexdigest()
    assert hash_secret("abc") == hash_secret("abc")
    assert hash_secret("abc") != hash_secret("abd")


# --- passwords ---------------------------------------------------------------------------

def test_password_verifies_only_with_the_right_password():
    stored = hash_password("correct horse battery")
    assert stored.startswith("scrypt$32768$8$1$")
    assert verify_password("correct horse battery", stored)
    assert not verify_password("correct horse batterY", stored)
    assert not verify_password("", stored)
    # a fresh salt each time
    assert hash_password("correct horse battery") != stored


@pytest.mark.parametrize("stored", [
    "", "garbage", "scrypt$", "scrypt$32768$8$1$AAAA", "bcrypt$32768$8$1$AAAA$AAAA",
    "scrypt$x$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAA", "scrypt$32768$8$1$!!!!$AAAA",
    "scrypt$32768$8$1$AAAAAAAAAAAAAAAAAAAAAA==$", "scrypt$3$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAA",
    "scrypt$32768$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAA$extra",
])
def test_a_garbage_stored_hash_verifies_nothing(stored):
    assert verify_password("anything", stored) is False
    assert verify_password("", stored) is False


# --- PII cipher --------------------------------------------------------------------------

def test_pii_seals_and_opens_in_its_context():
    cipher = PiiCipher(KEY_A)
    token = cipher.seal("张三 13800138000", context="ord_1")
    assert token.startswith(f"v1:{PiiCipher.key_id(KEY_A)}:")
    assert "13800138000" not in token
    assert cipher.open(token, context="ord_1") == "张三 13800138000"
    # a fresh nonce per value: the same plaintext seals differently
    assert cipher.seal("张三 13800138000", context="ord_1") != token


def test_pii_rotation_old_key_still_opens_new_key_seals():
    old = PiiCipher(KEY_A)
    sealed_old = old.seal("13800138000", context="ord_1")
    rotated = PiiCipher(KEY_B, KEY_A)
    assert rotated.open(sealed_old, context="ord_1") == "13800138000"
    sealed_new = rotated.seal("13800138000", context="ord_1")
    assert sealed_new.split(":")[1] == PiiCipher.key_id(KEY_B)
    assert rotated.open(sealed_new, context="ord_1") == "13800138000"
    # once the old key is dropped, its values no longer open, with a message naming the key
    dropped = PiiCipher(KEY_B)
    with pytest.raises(PiiError, match=PiiCipher.key_id(KEY_A)):
        dropped.open(sealed_old, context="ord_1")
    # and the old deployment cannot read values sealed with the new key
    with pytest.raises(PiiError, match="not configured"):
        old.open(sealed_new, context="ord_1")


def test_pii_tampering_is_detected():
    cipher = PiiCipher(KEY_A)
    token = cipher.seal("13800138000", context="ord_1")
    version, key_id, payload = token.split(":", 2)
    raw = bytearray(base64.b64decode(payload))
    for position in (0, 12, len(raw) - 1):  # nonce, ciphertext, tag
        tampered = bytearray(raw)
        tampered[position] ^= 0x01
        forged = f"{version}:{key_id}:{base64.b64encode(bytes(tampered)).decode()}"
        with pytest.raises(PiiError, match="authentication failed"):
            cipher.open(forged, context="ord_1")


def test_pii_wrong_context_does_not_open():
    cipher = PiiCipher(KEY_A)
    token = cipher.seal("13800138000", context="ord_1")
    with pytest.raises(PiiError, match="wrong context"):
        cipher.open(token, context="ord_2")
    with pytest.raises(PiiError):
        cipher.open(token)


@pytest.mark.parametrize("token", [
    "", "plain text", "v1:abc", "v2:{kid}:AAAA", "v1:{kid}:not base64!",
    "v1:{kid}:", "v1:{kid}:QUJD",  # a payload shorter than a nonce and a tag
    "v1:{kid}:" + base64.b64encode(b"\0" * 27).decode(),
])
def test_pii_garbage_raises_pii_error(token):
    cipher = PiiCipher(KEY_A)
    with pytest.raises(PiiError):
        cipher.open(token.format(kid=PiiCipher.key_id(KEY_A)))


def test_pii_cipher_needs_a_key():
    with pytest.raises(ConfigError, match="at least one key"):
        PiiCipher()


# --- pseudonyms --------------------------------------------------------------------------

def test_pseudonyms_are_stable_keyed_and_hide_the_id():
    first = Pseudonymizer(KEY_A)
    again = Pseudonymizer(KEY_A)
    other = Pseudonymizer(KEY_B)
    p = first("buyer-42")
    assert p.startswith("b_") and len(p) == 34 and int(p[2:], 16) >= 0
    assert "buyer-42" not in p
    assert again("buyer-42") == p
    assert first("buyer-43") != p
    assert other("buyer-42") != p
    # not a plain hash of the id
    assert hashlib.sha256(b"buyer-42").hexdigest()[:32] != p[2:]


# --- keys from the environment -----------------------------------------------------------

def test_key_from_a_value_base64_or_hex():
    assert load_or_create_key(base64.b64encode(KEY_A).decode(), name="K", file=None) == KEY_A
    assert load_or_create_key(KEY_A.hex(), name="K", file=None) == KEY_A
    assert load_or_create_key(f"  {KEY_A.hex()}\n", name="K", file=None) == KEY_A


def test_key_file_is_created_0600_once_and_reused(tmp_path):
    file = tmp_path / "keys" / "pii.key"
    key = load_or_create_key(None, name="K", file=file)
    assert len(key) == 32
    assert stat.S_IMODE(file.stat().st_mode) == 0o600
    assert load_or_create_key(None, name="K", file=file) == key
    assert load_or_create_key("", name="K", file=file) == key
    # a value wins over the file
    assert load_or_create_key(KEY_B.hex(), name="K", file=file) == KEY_B


def test_key_without_value_or_file_names_the_setting():
    with pytest.raises(ConfigError, match="REFUNDLENS_PII_KEYS.*32-byte key"):
        load_or_create_key(None, name="REFUNDLENS_PII_KEYS", file=None)


@pytest.mark.parametrize("value", [
    base64.b64encode(b"x" * 16).decode(),   # 16 bytes
    base64.b64encode(b"x" * 33).decode(),   # 33 bytes
    "ab" * 31,                              # 62 hex digits
    "zz" * 32,                              # 64 characters, not hex
    "not a key at all",
])
def test_bad_key_lengths_are_refused_with_a_clear_message(value):
    with pytest.raises(ConfigError) as info:
        load_or_create_key(value, name="REFUNDLENS_PSEUDONYM_KEY", file=None)
    message = str(info.value)
    assert "REFUNDLENS_PSEUDONYM_KEY" in message and "32 bytes" in message
    assert "base64" in message and "hex" in message


def test_a_bad_key_file_names_the_file(tmp_path):
    file = tmp_path / "pseudonym.key"
    file.write_text(base64.b64encode(os.urandom(16)).decode())
    with pytest.raises(ConfigError, match="pseudonym.key.*32 bytes"):
        load_or_create_key(None, name="K", file=file)


# --- webhook signatures ------------------------------------------------------------------

def test_webhook_signature_verifies_within_tolerance():
    body = b'{"event": "claim.decided"}'
    header = sign_webhook("whsec", body, timestamp=1_700_000_000)
    assert header.startswith("t=1700000000,v1=")
    assert verify_webhook("whsec", body, header, now=1_700_000_000)
    assert verify_webhook("whsec", body, header, now=1_700_000_000 + 300)
    assert verify_webhook("whsec", body, header, now=1_700_000_000 - 300)
    assert not verify_webhook("whsec", body, header, now=1_700_000_000 + 301)
    assert not verify_webhook("whsec", body, header, now=1_700_000_000 - 301)
    assert verify_webhook("whsec", body, header, now=1_700_000_000 + 3000, tolerance_s=3600)
    # the current time by default
    assert verify_webhook("whsec", body, sign_webhook("whsec", body))


def test_webhook_tampering_is_detected():
    body = b'{"event": "claim.decided", "outcome": "approved"}'
    t = 1_700_000_000
    header = sign_webhook("whsec", body, timestamp=t)
    assert not verify_webhook("whsec", body.replace(b"approved", b"rejected"), header, now=t)
    assert not verify_webhook("other", body, header, now=t)
    # a replayed signature with a fresh timestamp does not verify
    mac = header.split("v1=")[1]
    assert not verify_webhook("whsec", body, f"t={t + 100},v1={mac}", now=t + 100)


@pytest.mark.parametrize("header", [
    "", "garbage", "t=,v1=", "t=abc,v1=00", "v1=00", "t=1700000000", "t=1700000000,v1=",
    "t=1700000000,v1=é", "t=1700000000;v1=00", "t=1700000000,v1=00,junk",
])
def test_malformed_webhook_headers_do_not_verify(header):
    assert verify_webhook("whsec", b"{}", header, now=1_700_000_000) is False
