"""Every language of the table answers its hello-world through the local stack when its
toolchain is here, and one clear line naming what to install when it is not."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from pbotvm.guest.running import PATH
from pbotvm.langspec import LANGUAGES, LangSpec
from tests.conftest import make_stack
from tests.support.stack import LocalStack


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """The usual stack with room for a slow compile: a language's first request builds its
    precompiled prelude (clang++'s takes seconds), and javac or ghc can take more than the
    usual 5 s on a busy 2-core machine. Below the client's own 60 s."""
    with make_stack(tmp_path_factory.mktemp("stack"), PBOTVM_TIMEOUT="30",
                    PBOTVM_HEART_STALE="7") as s:
        yield s


def _installed(spec: LangSpec) -> bool:
    return shutil.which(spec.toolchain.program, path=PATH) is not None


@pytest.mark.root
@pytest.mark.parametrize("spec", [
    pytest.param(spec, id=spec.name, marks=[] if _installed(spec) else [pytest.mark.skip(
        f"{spec.toolchain.program} is not installed here "
        f"({spec.toolchain.package or 'Debian does not package it'})")])
    for spec in LANGUAGES])
def test_hello(stack: LocalStack, spec: LangSpec) -> None:
    reply = stack.ask(f"-lang={spec.display} {spec.hello}")
    # clang's C89/C99 warn that the generated main does not use argc and argv, as the
    # original's did; the program's own answer comes after that bracket.
    assert reply.rsplit("]\n", 1)[-1] == "hello"


@pytest.mark.root
@pytest.mark.parametrize("spec", [pytest.param(spec, id=spec.name)
                                  for spec in LANGUAGES if not _installed(spec)])
def test_a_missing_toolchain_is_one_line(stack: LocalStack, spec: LangSpec) -> None:
    reply = stack.ask(f"-lang={spec.display} {spec.hello}", channel="alice")
    where = (f"the Debian package {spec.toolchain.package} has it" if spec.toolchain.package
             else "Debian does not package it")
    assert reply == (f"[{spec.display} is not installed in this guest: no "
                     f"'{spec.toolchain.program}' ({where}"
                     + ("; setup-guest --profile full installs it" if spec.toolchain.package
                        else "") + ")]")
