"""t2ilib: the library that the t2i-course notebooks build, one piece per notebook.

Text-to-image synthesis with SSA-GAN (Liao et al., CVPR 2022) and text-guided image
manipulation with SISGAN (Dong et al., ICCV 2017). Import what you need from the
submodules, e.g. ``from t2ilib.ssagan.ssacn import SSACNBlock``.
"""

__version__ = "0.1.0"
