"""The paste comment markers of each language family, as the original's host modules set them."""

from __future__ import annotations

from pbotvm.langspec.spec import PasteMarkers

DEFAULT = PasteMarkers(
    "/************* CMDLINE *************\n", "************** CMDLINE *************/\n",
    "/************* OUTPUT *************\n", "************** OUTPUT *************/\n",
)
SHELL = PasteMarkers(
    ": <<'____CMDLINE____'\n", "____CMDLINE____\n", ": << '____OUTPUT____'\n", "____OUTPUT____\n",
)
_BAR = "==============="


def _fenced(opening: str, closing: str) -> PasteMarkers:
    """Markers that are a comment line, a banner, ..., a banner, the closing comment line."""
    return PasteMarkers(
        f"{opening}\n{_BAR} CMDLINE {_BAR}\n", f"{_BAR} CMDLINE {_BAR}\n{closing}\n",
        f"{opening}\n{_BAR} OUTPUT {_BAR}\n", f"{_BAR} OUTPUT {_BAR}\n{closing}\n",
    )


PYTHON = _fenced("'''", "'''")
BASIC = _fenced("/'", "'/")
HASKELL = _fenced("{-|", "-}")
LISP = PasteMarkers(
    f"#|{_BAR} CMDLINE {_BAR}\n", f"=={_BAR} CMDLINE {_BAR}|#\n",
    f"#|{_BAR} OUTPUT {_BAR}\n", f"=={_BAR} OUTPUT {_BAR}|#\n",
)
LUA = PasteMarkers(
    "--[[--------------- CMDLINE ---------------\n",
    "------------------- CMDLINE ---------------]]\n",
    "--[[--------------- OUTPUT ---------------\n",
    "------------------- OUTPUT ---------------]]\n",
)
PERL = PasteMarkers(
    f"=cut {_BAR} CMDLINE {_BAR}\n", "=cut\n", f"=cut {_BAR} OUTPUT {_BAR}\n", "=cut\n",
)
TCL = PasteMarkers("set CMDLINE {\n", "}\n", "set OUTPUT {\n", "}\n")
