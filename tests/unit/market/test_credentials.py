"""Credentials come from the environment or $BOTQ_HOME/kraken.toml and never print themselves."""

from __future__ import annotations

import logging
import os
import pickle
from pathlib import Path

import pytest

from botq.errors import ConfigError
from botq.market.credentials import (
    ENV_KEY,
    ENV_SECRET,
    KrakenCredentials,
    Secret,
    credentials_path,
    load_credentials,
)

KEY = "KEYk3yK3YkeyKEYk3yK3YkeyKEYk3yK3YkeyKEYk3yK3YkeyKEYk3y0001"
SECRET = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldC1zZWNyZXQtMTIzNDU2Nzg5MA=="


def _assert_hidden(text: str) -> None:
    assert KEY not in text and SECRET not in text


def test_from_environment_and_repr_hides_both_values(tmp_path: Path) -> None:
    creds = load_credentials({ENV_KEY: KEY, ENV_SECRET: SECRET, "BOTQ_HOME": str(tmp_path)})
    assert creds.api_key.reveal() == KEY and creds.api_secret.reveal() == SECRET
    assert creds.source == "environment"
    for text in (repr(creds), str(creds), f"{creds}", f"{creds!r}", repr(creds.api_secret)):
        _assert_hidden(text)
    assert "***" in repr(creds)


def test_environment_wins_over_the_file(tmp_path: Path) -> None:
    (tmp_path / "kraken.toml").write_text('api_key = "file-key"\napi_secret = "ZmlsZQ=="\n')
    creds = load_credentials({ENV_KEY: KEY, ENV_SECRET: SECRET, "BOTQ_HOME": str(tmp_path)})
    assert creds.api_key.reveal() == KEY


def test_half_configured_environment_names_the_missing_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=ENV_SECRET) as info:
        load_credentials({ENV_KEY: KEY, "BOTQ_HOME": str(tmp_path)})
    _assert_hidden(str(info.value))
    with pytest.raises(ConfigError, match=ENV_KEY):
        load_credentials({ENV_SECRET: SECRET, "BOTQ_HOME": str(tmp_path)})


def test_from_file_in_botq_home(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "kraken.toml"
    path.write_text(f'api_key = "{KEY}"\napi_secret = "{SECRET}"\n')
    os.chmod(path, 0o600)
    with caplog.at_level(logging.DEBUG):
        creds = load_credentials({"BOTQ_HOME": str(tmp_path)})
    assert creds.api_secret.reveal() == SECRET and creds.source == str(path)
    assert credentials_path({"BOTQ_HOME": str(tmp_path)}) == path
    assert caplog.records == []
    _assert_hidden(repr(creds))


def test_world_readable_file_is_logged_without_the_secret(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "kraken.toml"
    path.write_text(f'api_key = "{KEY}"\napi_secret = "{SECRET}"\n')
    os.chmod(path, 0o644)
    with caplog.at_level(logging.DEBUG):
        load_credentials({"BOTQ_HOME": str(tmp_path)})
    assert "chmod 600" in caplog.text
    _assert_hidden(caplog.text)


def test_default_home_is_dot_botq() -> None:
    assert credentials_path({}) == Path("~/.botq/kraken.toml").expanduser()


def test_missing_file_says_how_to_configure(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_credentials({"BOTQ_HOME": str(tmp_path)})
    msg = str(info.value)
    assert ENV_KEY in msg and ENV_SECRET in msg and "kraken.toml" in msg


def test_broken_toml_does_not_echo_the_file(tmp_path: Path) -> None:
    (tmp_path / "kraken.toml").write_text(f'api_key = "{KEY}"\napi_secret = {SECRET}\n')
    with pytest.raises(ConfigError, match="not valid TOML") as info:
        load_credentials({"BOTQ_HOME": str(tmp_path)})
    _assert_hidden(str(info.value))
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_file_missing_a_field(tmp_path: Path) -> None:
    (tmp_path / "kraken.toml").write_text(f'api_key = "{KEY}"\n')
    with pytest.raises(ConfigError, match="api_secret"):
        load_credentials({"BOTQ_HOME": str(tmp_path)})


def test_secret_that_is_not_base64_is_refused_without_echo() -> None:
    bad = "this is not base64 at all!"
    with pytest.raises(ConfigError, match="not valid base64") as info:
        KrakenCredentials.from_strings(KEY, bad)
    assert bad not in str(info.value)
    with pytest.raises(ConfigError, match="empty"):
        KrakenCredentials.from_strings("  ", SECRET)


def test_secret_wrapper() -> None:
    s = Secret(SECRET)
    assert SECRET not in f"{s} {s!r} {[s]} {dict(x=s)}"
    assert s == Secret(SECRET) and s != Secret("other") and bool(s) and not Secret("")
    assert s.reveal() == SECRET
    # a plain pickle round-trip still works (multiprocessing), but the pickle is no log line
    assert pickle.loads(pickle.dumps(s)).reveal() == SECRET
