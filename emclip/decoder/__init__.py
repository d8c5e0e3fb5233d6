"""The text-guided pixel decoder (EM-CLIP's second idea) and its building blocks.

``pixel_decoder.TextGuidedDecoder`` fuses multi-level CLIP features top-down under the guidance of
the class text embeddings; ``blocks`` holds its parts (text guidance by cross-attention + FiLM,
the cosine pixel-text classifier, the conv stem, the matching of class embeddings to EM centres).
"""

from emclip.decoder.blocks import CentreTextMatching, ConvNormAct, ConvStem, CosineClassifier, TextGuidance
from emclip.decoder.pixel_decoder import TEXT_PROJECTIONS, TextGuidedDecoder, make_text_projection

__all__ = ["TEXT_PROJECTIONS", "CentreTextMatching", "ConvNormAct", "ConvStem", "CosineClassifier", "TextGuidance",
           "TextGuidedDecoder", "make_text_projection"]
