"""Make the example importable from its source folder (CI runs these tests without installing it)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
