"""``genprop-app``: a Gradio page that propagates a first-frame edit through a video with a trained
GenProp model. Outside the libraries: it may import ``genprop``, ``contracts`` and
``evaluation``; no library imports it."""
