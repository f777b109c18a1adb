"""Building and checking images from the locked inputs: the service image (`recipe` decides what
goes in, `image` builds it and compares its digest with `image_lock`), the training toolchain, the
stack images and the second builder, and `ocidiff`, which names the file behind a differing digest.
"""
