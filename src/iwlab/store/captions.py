"""Figure captions saved next to the figures, in ``captions.json``: written by the plots, read by the report.

The file lives in the store layer because both :mod:`iwlab.plots` (which writes it) and
:mod:`iwlab.report` (which reads it) sit above the store and may not import each other.

Example:
    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> write_caption(d, "fig.png", "what to look for")
    >>> read_captions(d)
    {'fig.png': 'what to look for'}
"""

from __future__ import annotations

import json
from pathlib import Path

CAPTIONS_FILE = "captions.json"


def read_captions(folder: str | Path) -> dict[str, str]:
    """``{file name: caption}`` recorded in ``folder`` (empty when there are none).

    Raises:
        ValueError: ``captions.json`` exists but is not a JSON object of strings.
    """
    f = Path(folder) / CAPTIONS_FILE
    if not f.exists():
        return {}
    try:
        caps = json.loads(f.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{f}: not valid JSON ({e})") from None
    if not isinstance(caps, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in caps.items()):
        raise ValueError(f"{f}: expected a JSON object of file name -> caption strings")
    return caps


def write_caption(folder: str | Path, name: str, caption: str) -> None:
    """Record ``caption`` for the figure file ``name`` in ``folder/captions.json`` (other entries are kept).

    Raises:
        ValueError: an existing ``captions.json`` is not a JSON object of strings.
    """
    caps = read_captions(folder)
    caps[name] = caption
    (Path(folder) / CAPTIONS_FILE).write_text(json.dumps(caps, indent=1, sort_keys=True))
