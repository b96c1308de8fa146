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
    "general": "ours, for any KB: principal axes of a pool of data sets with variance-weighted "
               "power, no labels, decoded against the KB with an SNR-aware (Wiener) search; "
               "trained once, used where a data set has no training split",
    "general-map": "ours, for any KB: general's encoder, class-level MAP retrieval at the "
                   "receiver (summed likelihood of each KB class's codewords at the known "
                   "SNR and fading, then that class's nearest entry)",
}
NAMES = tuple(DESCRIPTIONS)

# The recipe the demo, tx/rx, train-codec and bundles use unless told otherwise: the paper's
# on a data set with a training split of its own, the general codec (trained once on the pool
# of data sets, protocols.pool_protocol) on a plain image folder, whose images are all the
# user's KB and sent images.
AUTO = "auto"
GENERAL = "general"


def resolve_recipe(recipe, has_training_split):
    """The recipe ``auto`` stands for (see AUTO); any other name is returned as it is."""
    if recipe != AUTO:
        return recipe
    return DEFAULT_RECIPE if has_training_split else GENERAL
