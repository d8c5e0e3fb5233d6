"""emclip: a teaching kit and working implementation of EM-CLIP.

EM-CLIP (Yu, Zhou et al., "Vision-Language Semantic Aggregation Leveraging Foundation Model for
Generalizable Medical Image Segmentation", arXiv 2509.08570) segments medical images with CLIP
features that an Expectation-Maximization (EM) aggregation step clusters into compact semantic
centres, and a pixel decoder guided by the text embeddings of the class names.

The package layers follow the data flow (a lower layer never imports a higher one)::

    tasks -> data -> clip -> em -> decoder -> models -> engine -> metrics / reports / viz / cli
"""

from emclip.runtime import (
    PROFILES,
    Profile,
    get_device,
    get_profile,
    print_config,
    seed_everything,
)

__version__ = "0.1.0"

__all__ = [
    "PROFILES",
    "Profile",
    "__version__",
    "get_device",
    "get_profile",
    "print_config",
    "seed_everything",
]
