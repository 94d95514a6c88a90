"""journeykit's privacy core: purposes, consent state and gate, pseudonymization, ledger.

Shared by the SDK and the collector; imports nothing else of journeykit.
"""

from journeykit.consent.checkpoints import LedgerPublicKey, LedgerSigner
from journeykit.consent.errors import (
    ConsentError,
    InvalidConsentSignal,
    InvalidFieldValue,
    PseudonymKeyError,
    UnknownPurpose,
)
from journeykit.consent.export import export_ledger
from journeykit.consent.gate import (
    DEFAULT_POLICY,
    REASON_CODES,
    Action,
    Decision,
    GatePolicy,
    decide,
    may_personalize,
)
from journeykit.consent.history import history, state_at
from journeykit.consent.ledger import ConsentChange, ConsentLedger
from journeykit.consent.pseudonymize import (
    FieldKind,
    FieldRule,
    HashMode,
    Pseudonymized,
    Pseudonymizer,
    PseudonymKey,
    PseudonymRules,
    Removal,
    is_pseudonym,
    normalize,
    pseudonymize_message,
    truncate_ip,
)
from journeykit.consent.purposes import ALL_PURPOSES, Purpose, parse_purpose
from journeykit.consent.records import LedgerError, LedgerRecord, RecordKind, TornLedgerError
from journeykit.consent.repair import repair_ledger
from journeykit.consent.report import write_report
from journeykit.consent.signals import (
    CONSENT_EVENT,
    DEFAULT_CATEGORIES,
    SignalMapping,
    is_consent_event,
    parse_consent_event,
    parse_gpc,
    parse_message,
    parse_rudderstack,
    parse_segment,
)
from journeykit.consent.state import (
    Choice,
    ConsentState,
    ConsentUpdate,
    PurposeConsent,
    Regime,
    Source,
)
from journeykit.consent.verify import VerificationReport, verify_ledger

__all__ = [
    "ALL_PURPOSES",
    "CONSENT_EVENT",
    "DEFAULT_CATEGORIES",
    "DEFAULT_POLICY",
    "REASON_CODES",
    "Action",
    "Choice",
    "ConsentChange",
    "ConsentError",
    "ConsentLedger",
    "ConsentState",
    "ConsentUpdate",
    "Decision",
    "FieldKind",
    "FieldRule",
    "GatePolicy",
    "HashMode",
    "InvalidConsentSignal",
    "InvalidFieldValue",
    "LedgerError",
    "LedgerPublicKey",
    "LedgerRecord",
    "LedgerSigner",
    "PseudonymKey",
    "PseudonymKeyError",
    "PseudonymRules",
    "Pseudonymized",
    "Pseudonymizer",
    "Purpose",
    "PurposeConsent",
    "RecordKind",
    "Regime",
    "Removal",
    "SignalMapping",
    "Source",
    "TornLedgerError",
    "UnknownPurpose",
    "VerificationReport",
    "decide",
    "export_ledger",
    "history",
    "is_consent_event",
    "is_pseudonym",
    "may_personalize",
    "normalize",
    "parse_consent_event",
    "parse_gpc",
    "parse_message",
    "parse_purpose",
    "parse_rudderstack",
    "parse_segment",
    "pseudonymize_message",
    "repair_ledger",
    "state_at",
    "truncate_ip",
    "verify_ledger",
    "write_report",
]
