"""The images: CIFAR-100, Fashion-MNIST and the synthetic stand-in as numpy arrays, their
augmentation, and the GPU-resident data path. Imports the files layer only.
"""
