"""The text-guided pixel decoder (EM-CLIP's second idea) and its building blocks.

``pixel_decoder.TextGuidedDecoder`` fuses multi-level CLIP features top-down under the guidance of
the class text embeddings; ``blocks`` holds its parts (text guidance by cross-attention + FiLM,
the cosine pixel-text classifier, the conv stem).
"""

from emclip.decoder.blocks import ConvNormAct, ConvStem, CosineClassifier, TextGuidance
from emclip.decoder.pixel_decoder import TextGuidedDecoder

__all__ = ["ConvNormAct", "ConvStem", "CosineClassifier", "TextGuidance", "TextGuidedDecoder"]
