"""Where the server's bearer token comes from, and which tokens it refuses to use."""

from __future__ import annotations

from pathlib import Path

import pytest

from kfgpu.errors import ConfigError
from kfgpu.serving.guard import GuardSettings
from kfgpu.serving.server import AUTH_TOKEN_ENV, read_auth_token


def test_the_file_wins_over_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(AUTH_TOKEN_ENV, "from-env")
    token = tmp_path / "token"
    token.write_text("from-file\r\n")
    assert read_auth_token(str(token)) == "from-file"
    assert read_auth_token("") == "from-env"
    monkeypatch.delenv(AUTH_TOKEN_ENV)
    assert read_auth_token("") == ""  # no auth


@pytest.mark.parametrize(
    ("content", "words"),
    [("", "holds nothing"), ("\n  \n", "holds nothing"), ("a\nb\n", "several lines")],
)
def test_a_token_file_must_hold_one_line(tmp_path: Path, content: str, words: str) -> None:
    token = tmp_path / "token"
    token.write_text(content)
    with pytest.raises(ConfigError, match=words):
        read_auth_token(str(token))


def test_a_missing_token_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot be read"):
        read_auth_token(str(tmp_path / "nope"))


@pytest.mark.parametrize("token", ["two words", "tab\there", "naïve", "ctl\x01"])
def test_tokens_an_http_header_cannot_carry_are_refused(token: str) -> None:
    with pytest.raises(ConfigError, match="printable ASCII"):
        GuardSettings(token=token)
