"""AV-Digits: the embedded real-data benchmark (FSDD spoken digits + sklearn handwritten digits)."""
from avfusion.data.avdigits.canvas import LAYOUTS
from avfusion.data.avdigits.dataset import (MIXTURE_SIZES, SCENE_SIZES, AVDigits, AVDigitsGlyphs, AVDigitsMixtures,
                                            AVDigitsSounds, render_mixtures, render_split)
from avfusion.data.avdigits.scene import (DEFAULT_IMAGE_SIZE, DEFAULT_LAYOUT, MAX_DIGITS, render_glyph,
                                          render_mixture, render_scene, render_sound)
from avfusion.data.avdigits.sources import CLASS_NAMES, NUM_SAMPLES, SAMPLE_RATE, SPLITS

__all__ = [
    "AVDigits", "AVDigitsMixtures", "AVDigitsGlyphs", "AVDigitsSounds", "render_scene", "render_mixture",
    "render_glyph", "render_sound", "render_split", "render_mixtures", "LAYOUTS", "DEFAULT_LAYOUT", "SCENE_SIZES", "MIXTURE_SIZES", "DEFAULT_IMAGE_SIZE", "MAX_DIGITS", "SAMPLE_RATE", "NUM_SAMPLES", "SPLITS",
    "CLASS_NAMES",
]
