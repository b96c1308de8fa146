"""The physical layer between the semantic blocks and a radio: an OFDM link for analog
(continuous-valued) symbols. framing (numpy frame layout, modulation, demodulation),
ofdm_tx / ofdm_rx (GNU Radio hierarchical blocks), manifest (what the transmitter sent, so
the receiver can score and count losses), radio (ZMQ, SigMF file and SDR sinks/sources)."""
