"""harness: a plugin-based evaluation harness for vision and vision-language representations.

Importing this package is cheap: it pulls in neither torch nor any plugin.
"""

from __future__ import annotations

import pluggy

__version__ = "0.1.0"

#: Marker for hook implementations; third-party plugins may also build their own
#: ``pluggy.HookimplMarker("harness")`` and never import harness at all.
hookimpl = pluggy.HookimplMarker("harness")

__all__ = ["__version__", "hookimpl"]
