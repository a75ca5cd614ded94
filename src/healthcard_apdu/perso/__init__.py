"""Personalization layer: issuance profiles, pure plans, execution with read-back, verification.

See docs/profiles.md. ``perso.batch_issuer`` (the batch runner's adapter) is imported on use;
the README demo lives in ``healthcard_apdu.app.demo``.
"""

from healthcard_apdu.perso.errors import (
    AuthenticationRefused,
    CardNotBlank,
    EraseRefused,
    PersoError,
    Problem,
    ProfileError,
    ReadBackMismatch,
    SecurityModuleUnsuitable,
    StepFailed,
)
from healthcard_apdu.perso.execute import (
    PersoResult,
    Progress,
    card_factor_of,
    erase_card,
    personalize,
)
from healthcard_apdu.perso.minimum import Cost, minimum_cost
from healthcard_apdu.perso.plan import Plan, Step, build_plan
from healthcard_apdu.perso.profile import (
    BUILTIN_PROFILES,
    DEFAULT_PROFILE,
    Profile,
    check_record,
    load_profile,
    parse_profile,
)
from healthcard_apdu.perso.verify import (
    AccessProbe,
    DataDifference,
    KeyCheck,
    VerifyReport,
    verify_card,
)

__all__ = [
    "BUILTIN_PROFILES",
    "DEFAULT_PROFILE",
    "AccessProbe",
    "AuthenticationRefused",
    "CardNotBlank",
    "Cost",
    "DataDifference",
    "EraseRefused",
    "KeyCheck",
    "PersoError",
    "PersoResult",
    "Plan",
    "Problem",
    "Profile",
    "ProfileError",
    "Progress",
    "ReadBackMismatch",
    "SecurityModuleUnsuitable",
    "Step",
    "StepFailed",
    "VerifyReport",
    "build_plan",
    "card_factor_of",
    "check_record",
    "erase_card",
    "load_profile",
    "minimum_cost",
    "parse_profile",
    "personalize",
    "verify_card",
]
