"""Every benchmark of the project, outside the libraries (``make bench``, ``make bench-gpu``).

``data`` (the data pipeline), ``train`` (loader vs training step), ``model`` (model step and
sampling times), ``cache`` (latent cache), ``gpu`` (bf16 step, memory, MFU on CUDA) and ``mfu``
(the cards' peak throughput). They import the libraries; the libraries never import them.
"""
