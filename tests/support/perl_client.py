"""A vm-client written the way the original Perl one is (its argv joined into one line,
the reply printed as it comes), for checking that our vm-server serves PBot's own client."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

SCRIPT = (
    "use IO::Socket::INET;\n"
    "my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $ENV{PORT},"
    " Proto => 'tcp') or die;\n"
    "print $s join(' ', @ARGV) . \"\\n\";\n"
    "while (my $line = <$s>) { print $line }\n")


def perl_ask(directory: Path, port: int, code: str, nick: str = "perl") -> str:
    """What the Perl client prints for ``code``, sent as PBot sends it."""
    script = directory / "client.pl"
    if not script.exists():
        script.write_text(SCRIPT)
    line = json.dumps({"nick": nick, "channel": "#c", "code": code})
    return subprocess.run(["perl", str(script), line], env={"PORT": str(port)},
                          capture_output=True, text=True, timeout=60, check=True).stdout
