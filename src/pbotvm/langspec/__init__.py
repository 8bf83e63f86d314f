"""Every language's facts as data, in one table that host, guest and image build all read.

The table is the original's 33 host modules (host/lib/Languages/*.pm); lookup is an
allow-list: a ``-lang=`` value is a key of the table or a display name, never a path.
"""

from pbotvm.langspec.spec import (
    Behaviour,
    Diagnostics,
    LangSpec,
    PasteMarkers,
    RunMode,
    Toolchain,
)
from pbotvm.langspec.table import LANGUAGES, find, supported_names

__all__ = ["LANGUAGES", "Behaviour", "Diagnostics", "LangSpec", "PasteMarkers", "RunMode",
           "Toolchain", "find", "supported_names"]
