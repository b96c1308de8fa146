"""The codec recipes by name: the default, and what each one is in one line.

No torch here: GNU Radio Companion (bundles) and the command line's help read these names
without loading a model. The recipes themselves are classes in ``codec.py``.
"""

# The recipe every app, block and bundle uses unless told otherwise: the paper's.
DEFAULT_RECIPE = "kbsc"

DESCRIPTIONS = {
    "kbsc": "the paper's recipe: MLP encoder and decoder trained on MSE (384 hidden, Adam "
            "1e-4, batch 128, one SNR per batch from {-7,-4,0,4,7,10} dB)",
    "kbsc-kb": "ours: linear encoder (principal axes plus a class codeword), no decoder: the "
               "receiver decodes against the KB in symbol space",
    "kbsc-ret": "ours: MLP encoder and decoder trained for retrieval (contrastive loss on the "
                "decoded feature, one SNR per image), unit-norm output",
}
NAMES = tuple(DESCRIPTIONS)
