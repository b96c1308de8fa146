"""Baselines for the semantic system, in the ML core (no GNU Radio imports):

* hevc.py        HEVC-intra image coding (BPG's codec, via pillow-heif) without the HEIF boxes
* ldpc.py        LDPC code: gr-fec's shipped matrices + the 'ldpc' library's BP decoder
* modulation.py  QPSK / 16-QAM mapping and soft demapping (LLRs, coherent receiver)
* digital.py     the whole digital chain: budget, quality choice, coding, channel, decoding
* bound.py       the ideal capacity-achieving code (AWGN and ergodic Rayleigh capacity)
* deepjscc.py    deep joint source-channel coding: an image autoencoder with the channel in
                 the loop (the DeepJSCC / ADJSCC baseline)
* methods.py     the evaluation methods 'digital', 'digital-16qam', 'digital-bound', 'deepjscc'

Importing the package registers the methods in the registry of core.methods (core.evaluation
imports the package on its first method lookup; the baselines never import core.evaluation). The raw-feature baseline is core.evaluation's built-in 'raw' method.
"""
from .methods import register

register()
