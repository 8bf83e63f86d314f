import json
from pathlib import Path

import pytest

from pbotvm.config import ConfigError, HostSettings, UnknownMachine, load_machines
from pbotvm.protocol import Framing


def env(tmp_path: Path, **kw: str) -> dict[str, str]:
    return {"HOME": str(tmp_path), **kw}


def test_defaults_are_the_originals(tmp_path: Path) -> None:
    s = HostSettings.from_env(env(tmp_path))
    m = s.machines.resolve()
    assert (s.addr, s.port, s.timeout, s.norevert) == ("127.0.0.1", 9000, 10.0, False)
    assert (m.name, m.serial, m.heart, m.cid, m.vport, m.domain) == (
        "pbot-vm", 5555, 5556, 7, 5555, "pbot-vm")
    assert m.framing is Framing.V2023
    assert (s.libvirt_uri, s.snapshot, s.revert_command) == ("qemu:///system", "1", None)
    assert s.output_limit == 1024 * 1024 and s.stdin_command is not None
    assert Path(s.stdin_command[0]).name == "fortune" and s.stdin_command[1:] == ["-u", "-s"]


def test_environment_wins_over_the_machines_file(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    path.write_text(json.dumps({"machines": {"a": {"serial": 1111, "cid": 3, "vport": 9},
                                             "b": {"serial": 2222, "framing": "head"}},
                                "aliases": {"main": "a"}, "default-machine": "main"}))
    s = HostSettings.from_env(env(tmp_path, PBOTVM_MACHINES=str(path), PBOTVM_SERIAL="7777",
                                  PBOTVM_CID="0", PBOTVM_DOMAIN="dom", PBOTVM_NOREVERT="1",
                                  PBOTVM_REVERT_COMMAND="revert-it --now 'a b'"))
    a = s.machines.resolve()
    assert (a.serial, a.cid, a.vport, a.domain) == (7777, 0, 9, "dom")
    b = s.machines.resolve("b")  # picked by name: its entry as written
    assert (b.serial, b.framing, b.domain) == (2222, Framing.HEAD, "b")
    assert s.norevert and s.revert_command == ["revert-it", "--now", "a b"]


def test_unknown_machine_lists_aliases(tmp_path: Path) -> None:
    with pytest.raises(UnknownMachine) as e:
        load_machines(env(tmp_path)).resolve("nope")
    assert str(e.value) == "Unknown machine 'nope'; available machines are: fedora-amd64"


@pytest.mark.parametrize("name", ["test", "pbot-test-vm"])
def test_without_a_machines_file_only_the_default_machine_is_known(tmp_path: Path,
                                                                   name: str) -> None:
    # The original's built-in list also had a test machine: a name any chat user could pick
    # with -vm=, for a guest nobody runs, which vm-server then kept reverting.
    machines = load_machines(env(tmp_path))
    assert machines.resolve().name == machines.resolve("fedora-amd64").name == "pbot-vm"
    with pytest.raises(UnknownMachine):
        machines.resolve(name)


@pytest.mark.parametrize("var, value, message", [
    ("PBOTVM_SERVER", "abc", "PBOTVM_SERVER='abc': expected a whole number from 1 to 65535"),
    ("PBOTVM_SERIAL", "70000", "PBOTVM_SERIAL='70000': out of range 1..65535"),
    ("PBOTVM_TIMEOUT", "-1", "PBOTVM_TIMEOUT='-1': expected a number above 0"),
    ("PBOTVM_TIMEOUT", "nan", "PBOTVM_TIMEOUT='nan': expected a number above 0"),
    ("PBOTVM_MACHINES", "/nonexistent/x.json", "does not exist"),
    ("PBOTVM_FRAMING", "2024", "PBOTVM_FRAMING='2024': use 2023 or head"),
    ("PBOTVM_PASTE_URL", "ftp://x", "PBOTVM_PASTE_URL='ftp://x': expected an http(s) URL"),
    ("PBOTVM_REVERT_COMMAND", "a 'b", "PBOTVM_REVERT_COMMAND=\"a 'b\": No closing quotation"),
    ("PBOTVM_METRICS", "on", "PBOTVM_METRICS='on': expected PORT or ADDR:PORT"),
    ("PBOTVM_METRICS", "70000", "PBOTVM_METRICS='70000': expected PORT or ADDR:PORT"),
    ("PBOTVM_METRICS", "0", "PBOTVM_METRICS='0': expected"),
    ("PBOTVM_METRICS", ":9100", "PBOTVM_METRICS=':9100': expected"),
    ("PBOTVM_METRICS", "127.0.0.1:", "PBOTVM_METRICS='127.0.0.1:': expected"),
])
def test_bad_settings_are_one_clear_line(tmp_path: Path, var: str, value: str,
                                         message: str) -> None:
    with pytest.raises(ConfigError) as e:
        HostSettings.from_env(env(tmp_path, **{var: value}))
    assert message in str(e.value)


@pytest.mark.parametrize("value, where", [
    ("", None),
    ("9100", ("127.0.0.1", 9100)),
    (" 127.0.0.2:9100 ", ("127.0.0.2", 9100)),
    ("[::1]:9100", ("::1", 9100)),
    ("localhost:9100", ("localhost", 9100)),
])
def test_metrics_are_off_unless_told_where(tmp_path: Path, value: str,
                                           where: tuple[str, int] | None) -> None:
    assert HostSettings.from_env(env(tmp_path, PBOTVM_METRICS=value)).metrics == where
    assert HostSettings.from_env(env(tmp_path)).metrics is None


def test_bad_machines_file(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    path.write_text('{"machines": {"a": {"serial": "x"}}}')
    with pytest.raises(ConfigError, match="'serial' must be a port"):
        load_machines(env(tmp_path, PBOTVM_MACHINES=str(path)))
    path.write_text("{oops")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_machines(env(tmp_path, PBOTVM_MACHINES=str(path)))


def test_stdin_command_found_in_usr_games_when_not_on_path(tmp_path, monkeypatch) -> None:
    from pbotvm import config

    games = tmp_path / "games"
    games.mkdir()
    (games / "fortune").write_text("#!/bin/sh\necho a fortune\n")
    (games / "fortune").chmod(0o755)
    monkeypatch.setattr(config, "GAMES_DIR", str(games))
    nowhere = lambda _name: None  # noqa: E731
    assert config.with_games_dir(["fortune", "-s"], nowhere) == [str(games / "fortune"), "-s"]
    assert config.with_games_dir(["fortune"], lambda n: f"/usr/bin/{n}") == ["fortune"]
    assert config.with_games_dir(["/opt/f", "-s"], nowhere) == ["/opt/f", "-s"]
    assert config.with_games_dir(["nosuch"], nowhere) == ["nosuch"]
    assert config.with_games_dir(None, nowhere) is None


def test_a_machine_may_be_a_pool_of_guests(tmp_path: Path) -> None:
    path = tmp_path / "vm-exec.json"
    path.write_text(json.dumps({"machines": {"pbot-vm": {
        "addr": "127.0.0.1", "cid": 7,
        "guests": [{}, {"serial": 6000, "heart": 6001, "domain": "other"}, {"cid": 0}]}}}))
    machine = HostSettings.from_env(env(tmp_path, PBOTVM_MACHINES=str(path))).machines.resolve()
    assert [(g.name, g.serial, g.heart, g.cid, g.domain) for g in machine.members()] == [
        ("pbot-vm/0", 5555, 5556, 7, "pbot-vm"), ("pbot-vm/1", 6000, 6001, 8, "other"),
        ("pbot-vm/2", 5559, 5560, 0, "pbot-vm-2")]
    for guests, message in (([], "one guest or more"), ([1], "guest 0 must be an object"),
                            ([{}, {"serial": 5555}], "two guests on the same serial line")):
        path.write_text(json.dumps({"machines": {"pbot-vm": {"guests": guests}}}))
        with pytest.raises(ConfigError, match=message):
            HostSettings.from_env(env(tmp_path, PBOTVM_MACHINES=str(path)))


def test_the_revert_policy(tmp_path: Path) -> None:
    assert not HostSettings.from_env(env(tmp_path)).revert_after_every_run
    assert HostSettings.from_env(env(tmp_path, PBOTVM_REVERT="after-every-run")
                                 ).revert_after_every_run
    with pytest.raises(ConfigError, match="PBOTVM_REVERT='always': use one of on-failure, "
                                          "after-every-run"):
        HostSettings.from_env(env(tmp_path, PBOTVM_REVERT="always"))
