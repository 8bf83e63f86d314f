"""The settings tables: the README's configuration tables, the settings objects and the
command-line options all come from them, and a bad value is one line naming its variable."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from pbotvm import config, settings
from pbotvm.guest import server as guest_server
from pbotvm.guest import settings as guest_settings
from pbotvm.host import client

README = Path(__file__).resolve().parents[1] / "README.md"
TABLES = [config.SETTINGS, guest_settings.SETTINGS]


@pytest.mark.parametrize("table", TABLES, ids=["host", "guest"])
def test_the_readme_shows_each_table_as_it_is(table: tuple[settings.Setting, ...]) -> None:
    expected = settings.markdown(table)
    assert expected in README.read_text(), (
        "README.md's configuration table differs from the settings table; paste this:\n"
        + expected)


@pytest.mark.parametrize("table", TABLES, ids=["host", "guest"])
def test_a_variable_is_listed_once_per_table(table: tuple[settings.Setting, ...]) -> None:
    variables = [row.variable for row in table]
    assert len(variables) == len(set(variables))
    assert all(re.fullmatch(r"PBOTVM_[A-Z_]+", name) for name in variables)


def test_every_host_settings_field_has_its_row() -> None:
    filled = {row.field for row in config.SERVER}
    assert filled == {f.name for f in fields(config.HostSettings)} - {"state_dir", "machines"}
    machine = {row.field for row in config.DEFAULT_MACHINE}
    assert machine <= {f.name for f in fields(config.Machine)}


def test_each_default_is_what_its_row_parses_its_shown_default_to() -> None:
    # The README's default is the one the code uses.
    for row in (*config.SETTINGS, *guest_settings.SETTINGS):
        if row.shown and row.default is not None:
            value = row.parse(row.shown)
            assert value == row.default, row.variable


def test_vm_client_uses_the_tables_address_and_port() -> None:
    # vm-client reads its two variables on its own (it starts per message: no imports).
    assert settings.find(config.SETTINGS, "PBOTVM_ADDR").shown == client.ADDR
    assert settings.find(config.SETTINGS, "PBOTVM_SERVER").shown == client.PORT


@pytest.mark.parametrize(("raw", "message"), [
    ("x", "PBOTVM_GUEST_CPU_SECONDS='x': expected a whole number from 1 to 86400"),
    ("0", "PBOTVM_GUEST_CPU_SECONDS='0': out of range 1..86400"),
])
def test_a_bad_value_names_its_variable_and_what_is_allowed(raw: str, message: str) -> None:
    with pytest.raises(settings.ConfigError) as e:
        guest_settings.GuestSettings.from_env({"PBOTVM_GUEST_CPU_SECONDS": raw})
    assert str(e.value) == message


def test_an_empty_variable_is_its_default_unless_empty_means_something(tmp_path: Path) -> None:
    host = config.HostSettings.from_env({"HOME": str(tmp_path), "PBOTVM_TIMEOUT": " ",
                                         "PBOTVM_STDIN_COMMAND": ""})
    assert host.timeout == config.DEFAULT_TIMEOUT
    assert host.stdin_command is None  # empty: no input


def test_an_option_wins_over_the_environment_and_is_parsed_as_its_variable() -> None:
    env = {"PBOTVM_GUEST_USER": "someone", "PBOTVM_VPORT": "1234"}
    guest = guest_settings.GuestSettings.from_env(env, given={"user": "other", "vport": None})
    assert (guest.user, guest.vport) == ("other", 1234)

    @click.command()
    @settings.options(guest_settings.SETTINGS)
    def show(**given: object) -> None:
        click.echo(repr(given["vport"]))

    runner = CliRunner()
    assert runner.invoke(show, ["--vport", "99"]).output == "99\n"
    refused = runner.invoke(show, ["--vport", "0"])
    assert refused.exit_code == 2 and "out of range 1..4294967295" in refused.output


def test_guest_server_help_names_each_options_variable() -> None:
    text = CliRunner().invoke(guest_server.main, ["--help"]).output
    for row in guest_settings.SETTINGS:
        if row.option:
            assert row.option in text and row.variable in text


def test_a_commands_own_option_reads_and_parses_its_variable_as_the_table_does() -> None:
    row = settings.find(config.DEFAULT_MACHINE, "PBOTVM_SERIAL")

    @click.command()
    @settings.option(row, "--serial", "serial_port")
    def show(serial_port: int) -> None:
        click.echo(repr(serial_port))

    runner = CliRunner()
    assert runner.invoke(show, []).output == "5555\n"
    assert runner.invoke(show, [], env={"PBOTVM_SERIAL": "7000"}).output == "7000\n"
    refused = runner.invoke(show, [], env={"PBOTVM_SERIAL": "70000"})
    assert refused.exit_code == 2 and "out of range 1..65535" in refused.output
