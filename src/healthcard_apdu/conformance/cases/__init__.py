"""The conformance cases, one module per group; importing this package registers them all."""

from healthcard_apdu.conformance.cases import (  # noqa: F401 - imported to register the cases
    access,
    atr,
    auth,
    block,
    cyclic,
    encoding,
    files,
    issuance,
    signatures,
    sizes,
    sm,
    tearing,
    timing,
)
