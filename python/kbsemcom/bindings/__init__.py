"""The compiled (C++) blocks of gr-kbsemcom, built by CMake (scripts/setup.sh does it) into
this folder as kbsemcom_python*.so. ``cpp()`` returns that module, or None when it was not
built; callers then fall back to numpy (see phy.ofdm_rx)."""


def cpp():
    """The compiled module, or None if it is absent or does not load."""
    try:
        from . import kbsemcom_python
    except ImportError:
        return None
    return kbsemcom_python
