"""What vm-exec's pipeline asks of the edit package for one request.

``EditSession.edit`` runs the edit step on a snapshot of the store and saves its change if
nobody changed that history meanwhile (else it runs again on the new one); ``shown_code`` is how
``copy`` and ``undo`` print code; ``EditSession.answer`` applies the "Same output." rule to the
final answer text. A store that cannot be used costs one log line: the request goes on as if
the channel had no history (plain code runs; edit commands answer that there is nothing to
edit), and nothing is remembered.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

from pbotvm.host.request.edit.grammar import Edit, interactive_edit
from pbotvm.host.request.edit.store import HistoryStore, StoreError
from pbotvm.tokenizer import split_line

log = logging.getLogger("pbotvm.edit")

SAME_OUTPUT = "Same output."
SAME_OUTPUT_WINDOW = 240.0  # seconds since the last printed answer
SAME_OUTPUT_LONGER_THAN = 50  # characters, the final newline included
EDIT_TRIES = 3  # runs of one edit while other requests keep changing its history
HISTORY_BUSY = "The code history changed while the edit ran; try again."


def shown_code(code: str) -> str:
    """Code as ``copy`` and ``undo`` show it: the original's display form, its words (2023
    SplitLine) joined by single spaces. Options are already gone."""
    return " ".join(split_line(code))


def repeats(previous: tuple[float, str] | None, output: str, now: float) -> bool:
    """Whether ``output`` is the answer printed last, less than the window ago."""
    if previous is None or len(output) <= SAME_OUTPUT_LONGER_THAN:
        return False
    at, text = previous
    return now - at <= SAME_OUTPUT_WINDOW and text == output


def _no_history(_name: str) -> Sequence[str]:
    return ()


class EditSession:
    """The history of one channel (or nick, in a private message) in one language."""

    def __init__(self, store: HistoryStore | None, channel: str, lang: str) -> None:
        self.store = store
        self.channel = channel
        self.lang = lang

    @classmethod
    def open(cls, state_dir: Path, channel: str, lang: str) -> EditSession:
        try:
            store: HistoryStore | None = HistoryStore.open(state_dir)
        except StoreError as e:
            log.warning("history store unusable, going on without history: %s", e)
            store = None
        return cls(store, channel, lang)

    def close(self) -> None:
        if self.store is not None:
            self.store.close()

    def _lost(self, error: StoreError) -> None:
        log.warning("history store unusable, going on without history: %s", error)
        self.close()
        self.store = None

    def edit(self, code: str) -> Edit:
        """The edit step (the original's InteractiveEdit) on ``code``, saved as it saved it."""
        store = self.store
        if store is not None:
            try:
                return self._edit(store, code)
            except StoreError as e:
                self._lost(e)
        return interactive_edit(code, self.channel, _no_history)

    def _edit(self, store: HistoryStore, code: str) -> Edit:
        for _ in range(EDIT_TRIES):
            # The edit runs on a snapshot, holding no lock: a slow one delays nobody.
            with store.transaction(write=False):
                edit = interactive_edit(code, self.channel,
                                        lambda name: store.history(name, self.lang))
                if edit.change is None:
                    return edit
                seen = store.generation(edit.change.channel, self.lang)
            with store.transaction():
                if not edit.read or store.generation(edit.change.channel, self.lang) == seen:
                    store.apply(self.lang, edit.change)
                    return edit
        return Edit(code, reply=HISTORY_BUSY)

    def answer(self, output: str, *, factoid: bool, paste: bool = False,
               now: float | None = None) -> str:
        """What to print for ``output``: ``Same output.`` when, in a ``#channel`` and not for
        a factoid, it repeats the last answer of this channel and language (the
        original's show_output); otherwise ``output``, which becomes the last answer. A pasted
        answer is neither."""
        if self.store is None or paste or not self.channel.startswith("#"):
            return output  # a private message never gets "Same output."
        now = time.time() if now is None else now
        try:
            if not factoid and repeats(self.store.last_output(self.channel, self.lang),
                                       output, now):
                return SAME_OUTPUT  # the window still counts from the printed answer
            self.store.set_last_output(self.channel, self.lang, now, output)
        except StoreError as e:
            self._lost(e)
        return output
