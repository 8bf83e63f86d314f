"""Interactive edits of a channel's recent code (``s/a/b/``, ``undo``, ``show``...) and its history.

``grammar`` is the edit language as pure functions over a history value; ``store`` is the only
user of SQLite; ``session`` is what vm-exec's pipeline calls. The original's InteractiveEdit.pm,
and show_output's "Same output." rule.
"""
