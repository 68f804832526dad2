"""css: continual semantic segmentation for images and point clouds."""
__version__ = "0.1.0"
