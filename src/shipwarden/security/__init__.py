"""Security primitives: passwords, TOTP, API tokens, envelope encryption, signing, dossiers.

Each module is small and does one thing; the service layer combines them (e.g. a
TOTP secret is stored sealed by :class:`Envelope`, a dossier is signed with the
key from :mod:`signing`).  File access is limited to loading keys.
"""

from shipwarden.security.dossier import Dossier, DossierError, build_dossier, verify_dossier
from shipwarden.security.envelope import DecryptionError, Envelope, Keyring, generate_kek, load_kek_file
from shipwarden.security.passwords import hash_password, needs_rehash, verify_password
from shipwarden.security.signing import (
    fingerprint,
    generate_key,
    load_private_key,
    load_public_key,
    save_private_key,
    save_public_key,
)
from shipwarden.security.tokens import (
    ApiToken,
    TokenStatus,
    check_token,
    hash_token,
    issue_token,
    revoke_token,
)
from shipwarden.security.totp import (
    TotpCheck,
    TotpEnrollment,
    TotpResult,
    enroll,
    generate_recovery_codes,
    use_recovery_code,
    verify_totp,
)

__all__ = [
    "ApiToken",
    "DecryptionError",
    "Dossier",
    "DossierError",
    "Envelope",
    "Keyring",
    "TokenStatus",
    "TotpCheck",
    "TotpEnrollment",
    "TotpResult",
    "build_dossier",
    "check_token",
    "enroll",
    "fingerprint",
    "generate_kek",
    "generate_key",
    "generate_recovery_codes",
    "hash_password",
    "hash_token",
    "issue_token",
    "load_kek_file",
    "load_private_key",
    "load_public_key",
    "needs_rehash",
    "revoke_token",
    "save_private_key",
    "save_public_key",
    "use_recovery_code",
    "verify_dossier",
    "verify_password",
    "verify_totp",
]
