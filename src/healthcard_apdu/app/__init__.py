"""Composition root: wires the layers together for the command line and the demo.

``app.connect`` turns connection options into objects: the user-card link (PC/SC reader or
simulated card image), the security module (key file, PKCS#11 token, PSAM, simulated SAM) and
a :class:`~healthcard_apdu.card.HealthCard`; every command uses it. ``app.batch`` builds the
batch issuer and reader slots from the same options; ``app.demo`` is the README's main job.
This is the only package besides ``cli`` that may import every layer, the simulator included;
no library layer imports it.
"""
