"""gr-kbsemcom: knowledge-base assisted semantic image transmission for GNU Radio.

The blocks below (``_BLOCKS``: name -> module) are imported on first use, so that
``gnuradio.kbsemcom.core``, the ML core, loads without GNU Radio.
"""
import importlib
import sys

from .core.errors import UserError

_BLOCKS = {
    "image_source": "sources.image_source",
    "feature_extractor": "semantic_tx.feature_extractor",
    "semantic_encoder": "semantic_tx.semantic_encoder",
    "semantic_channel": "channel.semantic_channel",
    "stream_awgn_channel": "channel.stream_channel",
    "semantic_decoder": "semantic_rx.semantic_decoder",
    "kb_lookup": "semantic_rx.kb_lookup",
    "result_sink": "sinks.result_sink",
    "live_display": "sinks.live_display",
    "kb_bundle": "core.bundles",
    "deepjscc_model": "core.bundles",
    "ofdm_tx": "phy.ofdm_tx",
    "ofdm_rx": "phy.ofdm_rx",
    "frame_annotator": "phy.manifest",
    "hevc_image_encoder": "digital.hevc_image_encoder",
    "digital_modulator": "digital.digital_modulator",
    "coherent_channel": "digital.coherent_channel",
    "digital_demodulator": "digital.digital_demodulator",
    "hevc_image_decoder": "digital.hevc_image_decoder",
    "deepjscc_encoder": "deepjscc.deepjscc_encoder",
    "deepjscc_decoder": "deepjscc.deepjscc_decoder",
}

__all__ = sorted(_BLOCKS)


def __getattr__(name):
    if name in _BLOCKS:
        return getattr(importlib.import_module(f".{_BLOCKS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _user_errors_in_one_line(previous):
    """An uncaught UserError (a missing KB, an empty image folder, a KB of another extractor)
    ends a flowgraph script with its one-line message, which is what GNU Radio Companion's
    console then shows; every other exception keeps its traceback."""
    def hook(kind, err, tb):
        if issubclass(kind, UserError):
            print(f"kbsemcom: error: {err}", file=sys.stderr, flush=True)
        else:
            previous(kind, err, tb)
    hook.kbsemcom = True
    return hook


if not getattr(sys.excepthook, "kbsemcom", False):
    sys.excepthook = _user_errors_in_one_line(sys.excepthook)
