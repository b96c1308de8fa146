"""``kbsemcom channel``: a radio channel between ``kbsemcom tx`` and ``kbsemcom rx``.

tx (ZMQ PUSH, binds --address) -> channel (PULL connects --from; PUSH binds --to) -> rx
(PULL connects --address = the channel's --to). The flowgraph is phy.relay.channel_relay;
this module only parses options, runs it and reports.
"""
import json
import signal
import sys
import time

from .common import HelpFormatter, say

UNITS = """units: --snr is the per-sample SNR in dB of a unit-power signal (noise voltage
10^(-SNR/20), as everywhere in kbsemcom; the TX's default amplitude 1 on ZMQ has unit power);
--cfo is in cycles/sample, the unit of the receiver's `cfo` (one OFDM carrier spacing =
1/64 = 0.0156; the receiver corrects up to about +-2.5 spacings); --sro-ppm in parts per
million; --doppler-hz in Hz at --samp-rate (the fader's fD*Ts = doppler/samp_rate);
--rician-k is linear (specular/scattered power), not dB.
Exit status: 0 ok, 2 bad options, 3 cannot bind --to."""


def register(sub):
    p = sub.add_parser(
        "channel", help="channel between tx and rx over ZMQ: noise, CFO, SRO, multipath, "
        "Rayleigh/Rician fading (GNU Radio's channel models)", epilog=UNITS,
        formatter_class=lambda prog: HelpFormatter(prog, width=96))
    p.add_argument("--from", dest="from_address", default="tcp://127.0.0.1:5555",
                   help="the transmitter's ZMQ address (tx --address); the channel connects")
    p.add_argument("--to", dest="to_address", default="tcp://127.0.0.1:5556",
                   help="the channel's output ZMQ address; it binds, rx --address connects")
    p.add_argument("--snr", type=float, default=None,
                   help="per-sample SNR in dB (AWGN); unset = no noise")
    p.add_argument("--cfo", type=float, default=0.0,
                   help="carrier-frequency offset in cycles/sample (0.0156 = 1 carrier)")
    p.add_argument("--sro-ppm", type=float, default=0.0, help="sampling-rate offset in ppm")
    p.add_argument("--multipath", default="none", choices=("none", "3path"),
                   help="static multipath: 3path = taps 1, 0, 0.35j, 0, -0.15 (normalised)")
    p.add_argument("--fading", default="none", choices=("none", "rayleigh", "rician"),
                   help="correlated fading (channels.fading_model, 8 sinusoids)")
    p.add_argument("--doppler-hz", type=float, default=10.0,
                   help="maximum Doppler frequency of the fading in Hz")
    p.add_argument("--rician-k", type=float, default=4.0,
                   help="Rician factor K (linear) for --fading rician")
    p.add_argument("--samp-rate", type=float, default=1e6,
                   help="sample rate in Hz (sets the fading's fD*Ts only)")
    p.add_argument("--selective", action="store_true",
                   help="frequency-selective fading: each path of the 3path profile (delays "
                        "0, 2, 4 samples) fades on its own (channels.selective_fading_model); "
                        "needs --fading, excludes --multipath 3path")
    p.add_argument("--seed", type=int, default=0, help="seed of the fading (and noise: +1)")
    p.add_argument("--duration", type=float, default=0.0,
                   help="stop after this many seconds (0 = run until Ctrl-C / SIGTERM)")
    p.add_argument("--idle-timeout", type=float, default=0.0,
                   help="stop this many seconds after the last input sample, once samples "
                        "came (0 = never; a restarted tx then finds the channel still up)")
    p.add_argument("--flush", type=int, default=1024,
                   help="zeros appended after each burst once the input is idle for 0.2 s: "
                        "they push the samples the channel model withholds out to rx")
    p.add_argument("--json", action="store_true", help="print the summary as JSON only")
    p.set_defaults(func=run_channel)


def impairments(args):
    """The channel_impairments keyword arguments of the parsed options."""
    return {"snr_db": args.snr, "cfo": args.cfo, "sro_ppm": args.sro_ppm,
            "multipath": args.multipath, "fading": args.fading, "doppler_hz": args.doppler_hz,
            "rician_k": args.rician_k, "samp_rate": args.samp_rate,
            "selective": args.selective, "seed": args.seed}


def run_channel(args):
    from ..phy.radio import RadioError
    from ..phy.relay import channel_relay

    if args.duration < 0 or args.idle_timeout < 0 or args.flush < 0:
        raise ValueError("--duration, --idle-timeout and --flush must be >= 0")
    try:
        tb = channel_relay(args.from_address, args.to_address, flush_len=args.flush,
                           **impairments(args))
    except RadioError as err:
        print(f"kbsemcom channel: error: {err}", file=sys.stderr)
        return 3
    s = tb.chan.settings
    say(args, f"channel: {args.from_address} -> SNR {s['snr_db']} dB, CFO {s['cfo']} cyc/sample, "
              f"SRO {s['sro_ppm']} ppm, multipath {s['multipath']}, fading {s['fading']}"
              + (f" ({'selective, ' if s['selective'] else ''}Doppler {s['doppler_hz']} Hz"
                 + (f", K {s['rician_k']}" if s['fading'] == "rician" else "") + ")"
                 if s["fading"] != "none" else "") + f" -> {args.to_address}")

    def on_term(signum, frame):
        raise KeyboardInterrupt
    old = signal.signal(signal.SIGTERM, on_term)
    t0 = time.monotonic()
    reason = "interrupted"
    tb.start()
    try:
        while True:
            time.sleep(0.1)
            now = time.monotonic()
            if args.duration and now - t0 >= args.duration:
                reason = "duration"
                break
            if args.idle_timeout and tb.src.received and tb.src.idle_s() >= args.idle_timeout:
                reason = f"no input for {args.idle_timeout:g} s"
                break
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, old)
        tb.stop()
        tb.wait()
    summary = dict(tb.summary(), stop_reason=reason, seconds=round(time.monotonic() - t0, 2))
    print(json.dumps(summary) if args.json else
          f"channel: {reason}; {summary['samples_in']} samples in, {summary['samples_out']} out "
          f"({summary['flushes']} bursts flushed with {args.flush} zeros)")
    return 0
