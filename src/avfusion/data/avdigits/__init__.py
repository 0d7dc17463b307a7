"""AV-Digits: the embedded real-data benchmark (FSDD spoken digits + sklearn handwritten digits)."""
from avfusion.data.avdigits.dataset import (MIXTURE_SIZES, SCENE_SIZES, AVDigits, AVDigitsMixtures,
                                            render_mixtures, render_split)
from avfusion.data.avdigits.scene import DEFAULT_IMAGE_SIZE, MAX_DIGITS, render_mixture, render_scene
from avfusion.data.avdigits.sources import NUM_SAMPLES, SAMPLE_RATE, SPLITS

__all__ = [
    "AVDigits", "AVDigitsMixtures", "render_scene", "render_mixture", "render_split", "render_mixtures",
    "SCENE_SIZES", "MIXTURE_SIZES", "DEFAULT_IMAGE_SIZE", "MAX_DIGITS", "SAMPLE_RATE", "NUM_SAMPLES", "SPLITS",
]
