"""DF03 record signatures: each valid EE/ED record carries an SM2 signature of its data bytes.

Record layout (docs/reference/healthcard-layout.md §1.2): EE = data 0..1638, signature
1639..1702, SAM
certificate 1703..1892; ED = data 0..3012, signature 3013..3076, certificate 3077..3266. The
signature and certificate formats are our documented choice (docs/keys.md §5,
docs/reference/healthcard-layout.md §3.9).
"""

from __future__ import annotations

from healthcard_apdu.conformance.case import Group, case
from healthcard_apdu.conformance.context import CaseContext
from healthcard_apdu.conformance.ops import record_capacity
from healthcard_apdu.model import ef, files_of_layout
from healthcard_apdu.security import CertificateError, verify_record

G = Group.SIGNATURES
SIGNATURE_LENGTH = 64


def _check_signatures(ctx: CaseContext, layout: str, index_path: str) -> None:
    index = ef(index_path)
    ctx.enter(index.df, index.read_key)
    ctx.select_ef(index, from_mf=False)
    flags = ctx.read_records(record_capacity(index))
    files = files_of_layout(layout)
    valid = [f for f, flag in zip(files, flags, strict=False)
             if flag == b"\x00" and (ctx.profile is None or ctx.profile.has_file(f.path))]
    if not valid:
        ctx.not_applicable(f"no {layout} slot is marked valid in {index_path}")
    for target in valid:
        assert target.size is not None and target.data_length is not None
        size = ctx.file_size(target)
        if size < target.size:
            ctx.not_applicable(f"the profile makes {target.path} {size} bytes: no room for the "
                               "signature and the certificate")
        ctx.select_ef(target, from_mf=False)
        raw = ctx.read_binary(0, size)
        data = raw[: target.data_length]
        signature = raw[target.data_length : target.data_length + SIGNATURE_LENGTH]
        certificate = raw[target.data_length + SIGNATURE_LENGTH :]
        try:
            ok = verify_record(data, signature, certificate)
        except CertificateError as exc:
            ctx.check(f"{target.path}: SAM certificate", "our 190-byte format", str(exc), False)
            continue
        ctx.check(f"{target.path}: SM2 signature over bytes 0..{target.data_length - 1}",
                  "valid", "valid" if ok else "invalid", ok)


@case(id="HC-SIG-001", title="Every valid inpatient record (EE01-EE03) has a valid SM2 signature",
      group=G, reference="docs/reference/healthcard-layout.md §3.9", severity="major")
def inpatient_signatures(ctx: CaseContext) -> None:
    _check_signatures(ctx, "DF03/EE", "DF03/EF05")


@case(id="HC-SIG-002", title="Every valid outpatient record (ED01-ED05) has a valid SM2 signature",
      group=G, reference="docs/reference/healthcard-layout.md §3.9", severity="major")
def outpatient_signatures(ctx: CaseContext) -> None:
    _check_signatures(ctx, "DF03/ED", "DF03/EF06")
