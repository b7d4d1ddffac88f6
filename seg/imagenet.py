"""ImageNet's per-band mean and std on 0..1: what ImageNet-pretrained weights expect.

They are the default normalisation of the data pipeline and of a module built without a
datamodule; a dataset's own statistics (the doctor prints them) replace them in its config.
"""

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
