"""Does a decoded image look like a chest radiograph? Reasons why not, for a warning or a 422.

A first, minimal check; the out-of-distribution work extends this module behind the same
signature.
"""

from cxr.imaging import DecodedImage

MAX_CHROMA = 0.08  # mean |colour - grey| of a radiograph saved as RGB is ~0; photos are far above


def out_of_distribution_reasons(image: DecodedImage) -> list[str]:
    """Empty when the image looks like a chest X-ray; else one short reason per failed check."""
    reasons = []
    if image.chroma > MAX_CHROMA:
        reasons.append(f"colour image (chroma {image.chroma:.2f} > {MAX_CHROMA})")
    return reasons
