"""shipwarden: a production deployment control plane.

One policy file per team; shipwarden takes each change from "CI finished" to
"serving all production traffic" — or back to the last good version.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
