"""The image file types the programs read, defined once and importing nothing: predict's
onnxruntime path reads them without loading the training code (or torch).

The order is the order of preference when a folder holds one id in several types.
"""

TIFF_TYPES = (".tif", ".tiff")  # read with tifffile: any band count, 8 to 32 bits
IMAGE_TYPES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", *TIFF_TYPES)
