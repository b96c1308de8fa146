"""The radio side of the PHY without hardware: bursts reach the device sink as length-tagged
frames (UHD and Soapy sinks made with the burst tag; a tag-checking sink stands in for the
device), the HackRF rate chain (8 MS/s <-> 1 MS/s) is transparent to the PHY, and SigMF
metadata written with the sigmf package validates."""
import time

import numpy as np
import pmt
import pytest
from gnuradio import gr
from gnuradio.kbsemcom.pdus import make_pdu
from gnuradio.kbsemcom.phy import radio
from gnuradio.kbsemcom.phy.ofdm_tx import LEN_TAG, ofdm_tx
from gnuradio.kbsemcom.phy.simulate import phy_loopback


class tag_checking_sink(gr.sync_block):
    """Stands in for a UHD/Soapy sink: keeps every tag and counts samples; answers the
    device calls radio._sdr makes."""

    def __init__(self, *args, **kwargs):
        gr.sync_block.__init__(self, "tag_checking_sink", [np.complex64], None)
        self.made_with, self.calls, self.tags, self.power = (args, kwargs), [], [], []

    def work(self, input_items, output_items):
        n = len(input_items[0])
        start = self.nitems_read(0)
        for t in self.get_tags_in_window(0, 0, n):
            self.tags.append((t.offset, pmt.symbol_to_string(t.key), pmt.to_python(t.value)))
        self.power.append(np.abs(input_items[0]) ** 2)
        assert start >= 0
        return n



def _record(name):
    return lambda self, *a: self.calls.append((name, a))


for _name in ("set_samp_rate", "set_center_freq", "set_gain", "set_antenna",  # UHD
              "set_sample_rate", "set_frequency", "set_length_tag_name"):  # Soapy
    setattr(tag_checking_sink, _name, _record(_name))


def unit_symbols(rng, n):
    s = rng.normal(size=n) + 1j * rng.normal(size=n)
    return (s / np.sqrt(np.mean(np.abs(s) ** 2))).astype(np.complex64)


def send_frames(sink_block, lengths, factor, timeout=30):
    """ofdm_tx -> sink_block (the radio chain); returns the framer."""
    tb = gr.top_block()
    tb.tx = ofdm_tx(amplitude=0.3)
    tb.sink = sink_block
    tb.connect(tb.tx, tb.sink)
    rng = np.random.default_rng(3)
    tb.start()
    try:
        for seq, n in enumerate(lengths):
            tb.tx.framer._handle(make_pdu({"seq": seq}, unit_symbols(rng, n)))
        deadline = time.monotonic() + timeout
        want = tb.tx.framer.samples * factor
        while time.monotonic() < deadline and sink_block.nitems_read(0) * (
                1 if isinstance(sink_block, tag_checking_sink) else factor) < want:
            time.sleep(0.05)
        time.sleep(0.2)
    finally:
        tb.stop()
        tb.wait()
    return tb.tx.framer


def check_bursts(dev, framer, factor):
    """One length tag per frame on its first sample, with its length (at the device rate),
    and no sample outside a burst."""
    tags = [t for t in dev.tags if t[1] == LEN_TAG]
    assert len(tags) == framer.frames == len(framer.annotations)
    for (offset, _, value), (start, count, _) in zip(tags, framer.annotations):
        assert offset == start * factor and value == count * factor
    assert dev.nitems_read(0) == sum(v for _, _, v in tags)  # bursts back to back, nothing else


LENGTHS = [64, 512, 100, 2048, 1]


@pytest.mark.parametrize("kind", ["uhd", "soapy"])
def test_bursts_reach_the_device_sink(kind, monkeypatch):
    """make_sink's whole chain with the device block replaced by a tag-checking sink: a USRP
    at the PHY rate, a HackRF at 8 MS/s (interpolated x8; tags moved and rescaled)."""
    from gnuradio import soapy, uhd
    made = []

    def fake(*args, **kwargs):
        made.append(tag_checking_sink(*args, **kwargs))
        return made[-1]
    monkeypatch.setattr(uhd if kind == "uhd" else soapy, "usrp_sink" if kind == "uhd"
                        else "sink", fake)
    sink = radio.make_sink(kind, samp_rate=1e6)
    dev = made[0]
    factor = 1 if kind == "uhd" else 8
    assert sink.factor == factor
    if kind == "uhd":
        assert dev.made_with[0][2] == LEN_TAG  # tsb_tag_name
        assert ("set_samp_rate", (1e6,)) in dev.calls
    else:
        assert ("set_length_tag_name", (LEN_TAG,)) in dev.calls
        assert ("set_sample_rate", (0, 8e6)) in dev.calls
        assert ("set_gain", (0, "AMP", 0.0)) in dev.calls  # HackRF amp off by default
    framer = send_frames(sink, LENGTHS, factor)
    check_bursts(dev, framer, factor)
    assert sink.nitems_read(0) == framer.samples  # PHY samples, as run_tx counts them
    # the interpolated bursts keep the OFDM power (0.3^2 per sample on the frames' OFDM part)
    power = np.concatenate(dev.power)
    assert 0.05 < power.mean() < 0.12


def test_plain_tx_stream_is_tagged_per_frame():
    dev = tag_checking_sink()
    framer = send_frames(dev, LENGTHS, 1)
    check_bursts(dev, framer, 1)


def test_hackrf_rate_chain_is_transparent_to_the_phy():
    """ofdm_tx -> x8 burst interpolation -> decimation by 8 -> ofdm_rx: every frame, and the
    symbols as sent (what a HackRF at 8 MS/s adds besides noise is this chain)."""
    chain = gr.hier_block2("chain", gr.io_signature(1, 1, gr.sizeof_gr_complex),
                           gr.io_signature(1, 1, gr.sizeof_gr_complex))
    up, down = radio.burst_interpolator(8), radio.decimator(8)
    chain.connect(chain, up, down, chain)
    rng = np.random.default_rng(5)
    payloads = [unit_symbols(rng, 256) for _ in range(6)]
    got, stats = phy_loopback(payloads, 99, channel=chain, dc_block=False, timeout=30)
    assert sorted(m["seq"] for m, _ in got) == list(range(6)), stats
    for meta, sym in got:
        err = np.mean(np.abs(sym - payloads[meta["seq"]]) ** 2)
        assert 10 * np.log10(1 / err) > 30, meta  # the filters cost nothing measurable


def test_device_rate_must_be_a_multiple():
    assert radio.default_device_rate("soapy", 1e6) == 8e6
    assert radio.default_device_rate("soapy", 3e6) == 9e6
    assert radio.default_device_rate("uhd", 1e6) == 1e6
    with pytest.raises(radio.RadioError, match="integer multiple"):
        radio.rate_factor(1e6, 2.5e6)


def test_hackrf_gains():
    assert radio._hackrf_gains("sink", 30) == {"VGA": 30.0}
    assert radio._hackrf_gains("sink", 80) == {"VGA": 47.0}
    assert radio._hackrf_gains("source", 40) == {"LNA": 16.0, "VGA": 24.0}
    assert radio._hackrf_gains("source", 100) == {"LNA": 40.0, "VGA": 60.0}


def test_sigmf_meta_validates(tmp_path):
    import sigmf
    x = (np.arange(5000) % 7).astype(np.complex64)
    x.tofile(tmp_path / "rec.sigmf-data")
    t0 = 1.7e9 + 0.25
    radio.write_sigmf_meta(tmp_path / "rec", 1e6, 915e6, "test",
                           [(1000, 200, "seq 1"), (10, 100, "seq 0")], {"a": 1}, start_time=t0)
    data_path, meta = radio.read_sigmf_meta(tmp_path / "rec.sigmf-meta")
    assert data_path == tmp_path / "rec.sigmf-data"
    meta.validate()
    assert meta.get_global_field("core:datatype") == "cf32_le"
    assert meta.get_global_field("core:sample_rate") == 1e6
    cap = meta.get_captures()[0]
    assert cap["core:sample_start"] == 0 and cap["core:frequency"] == 915e6
    assert sigmf.utils.parse_iso8601_datetime(cap["core:datetime"]).timestamp() == \
        pytest.approx(t0, abs=1e-5)
    assert [(a["core:sample_start"], a["core:sample_count"], a["core:label"])
            for a in meta.get_annotations()] == [(10, 100, "seq 0"), (1000, 200, "seq 1")]
    np.testing.assert_array_equal(meta.read_samples(), x)
    # a changed data file fails the checksum: a clear RadioError, not a replay of garbage
    np.zeros(5000, np.complex64).tofile(tmp_path / "rec.sigmf-data")
    with pytest.raises(radio.RadioError, match="not a valid SigMF"):
        radio.read_sigmf_meta(tmp_path / "rec")
