from __future__ import annotations

from pathlib import Path

import pytest

from cdp_settings.config_files import ConfigError, read_config_file


def test_a_configuration_file_is_read_as_utf8(tmp_path: Path) -> None:
    path = tmp_path / "routing.yaml"
    path.write_bytes("name: café\n".encode())
    assert read_config_file(path) == "name: café\n"


def test_a_file_that_cannot_be_read_is_a_config_error_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    with pytest.raises(ConfigError) as raised:
        read_config_file(missing)
    assert str(raised.value) == f"{missing}: cannot read the file: No such file or directory"
