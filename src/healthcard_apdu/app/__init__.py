"""Composition root: wires the layers together for the command line and the demo.

``app.connect`` opens a :class:`~healthcard_apdu.card.HealthCard` from user options (PC/SC
readers, key files, a PSAM, or the simulator); ``app.demo`` is the README's main job. This is
the only package besides ``cli`` that may import every layer, the simulator included; no
library layer imports it.
"""
